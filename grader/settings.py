"""The grader's settings, read from the environment in one place.

Entry points (the CLI, Gradescope's run_autograder) read them once with
:func:`load_settings` and pass what a function needs as an argument; library
functions given nothing fall back to :func:`load_settings`.  Nothing writes
``os.environ``.

``GRADER_ROOT``: the project folder holding ``assignments/`` and
``solutions/`` (default: found from the current folder).
``GRADER_CACHE_DIR``: the reference cache (default ``~/.cache/grader``).
``GRADER_LTI_TOKEN``: the OAuth2 bearer token for ``grader publish``.
``GRADER_SERVER_TOKEN``: the bearer token ``--server`` clients send.
``GRADER_SERVE__<FIELD>`` (``GRADER_SERVE__PORT=8000``), or ``GRADER_SERVE``
as one JSON object: ``grader serve``'s :class:`ServeSettings`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from grader.errors import GraderError


def _default_cache() -> Path:
    return Path.home() / ".cache" / "grader"


def _default_service_data() -> Path:
    return Path.home() / ".local" / "share" / "grader" / "service"


class ServeSettings(BaseModel):
    """``grader serve``; its command line options win over these."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # GRADER_SERVE__PROT=80 is an error, not ignored

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)  # 0: a free port, printed when the service starts
    data_dir: Path = Field(default_factory=_default_service_data)  # submissions, results and the SQLite queue
    assignments: tuple[str, ...] = ()  # the assignments served (names or folders); none: every one of the project
    tokens: tuple[SecretStr, ...] = ()  # bearer tokens that may submit (an LMS, a course page)
    instructor_tokens: tuple[SecretStr, ...] = ()  # may also submit, read hidden checks, open and close assignments
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=0)  # graded at a time; 0: only queue
    queue_limit: int = Field(default=500, ge=1)  # submissions waiting beyond which a new one gets 429
    max_upload_mb: float = Field(default=50, gt=0)  # a larger request gets 413
    # Days the feedback pages' pictures (the captured arrays, about 4 MB a submission of the lesson, and the
    # drawn pages) are kept after grading; None: for ever.  Results and notebooks are always kept.
    keep_answers_days: float | None = Field(default=None, gt=0)


class Settings(BaseSettings):
    # Other GRADER_* variables (GRADER_PYTHON, read by run_autograder) are not ours to refuse.
    model_config = SettingsConfigDict(
        env_prefix="GRADER_", env_ignore_empty=True, extra="ignore", frozen=True, env_nested_delimiter="__"
    )

    root: Path | None = None
    cache_dir: Path = Field(default_factory=_default_cache)
    lti_token: SecretStr | None = None
    server_token: SecretStr | None = None  # what `grader check/batch --server` send as their bearer token
    serve: ServeSettings = Field(default_factory=ServeSettings)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        # a nested field is named as it is set: GRADER_SERVE__PORT
        problems = "; ".join(f"GRADER_{'__'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise GraderError(f"invalid settings in the environment: {problems}") from None


def cache_root() -> Path:
    """The reference cache this process uses unless told otherwise."""
    return load_settings().cache_dir
