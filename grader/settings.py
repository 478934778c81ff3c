"""The grader's settings, read from the environment in one place.

Entry points (the CLI, Gradescope's run_autograder) read them once with
:func:`load_settings` and pass what a function needs as an argument; library
functions given nothing fall back to :func:`load_settings`.  Nothing writes
``os.environ``.

``GRADER_ROOT``: the project folder holding ``assignments/`` and
``solutions/`` (default: found from the current folder).
``GRADER_CACHE_DIR``: the reference cache (default ``~/.cache/grader``).
``GRADER_LTI_TOKEN``: the OAuth2 bearer token for ``grader publish``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from grader.errors import GraderError


def _default_cache() -> Path:
    return Path.home() / ".cache" / "grader"


class Settings(BaseSettings):
    # Other GRADER_* variables (GRADER_PYTHON, read by run_autograder) are not ours to refuse.
    model_config = SettingsConfigDict(env_prefix="GRADER_", env_ignore_empty=True, extra="ignore", frozen=True)

    root: Path | None = None
    cache_dir: Path = Field(default_factory=_default_cache)
    lti_token: SecretStr | None = None


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"GRADER_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise GraderError(f"invalid settings in the environment: {problems}") from None


def cache_root() -> Path:
    """The reference cache this process uses unless told otherwise."""
    return load_settings().cache_dir
