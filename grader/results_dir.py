"""Writing into a results folder: every file lands whole or not at all.

A result, a summary, kept answers: each is written to a temporary file in
the same folder, flushed to disk and renamed into place, so a batch killed at
any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to a temporary file in the same folder,
    flush it to disk and rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


SUMMARY_FILE = "summary.json"
RESERVED = frozenset({SUMMARY_FILE})


def natural_result_name(submission_name: str) -> str:
    """``<stem>.json`` for ``<stem>.ipynb``: what a result is called unless
    that name is reserved or taken (see :func:`result_names`)."""
    stem = submission_name[: -len(".ipynb")] if submission_name.endswith(".ipynb") else submission_name
    return f"{stem}.json"


def result_names(submission_names: list[str]) -> dict[str, str]:
    """A result file name for each submission, never the same for two, nor a
    reserved one (``summary.json``): ``<stem>.json`` where that is free,
    else ``<file>.json``, else ``<file>~2.json``, ``~3``... (decided in name
    order, so a re-run of the same folder gives the same names)."""
    natural = {name: natural_result_name(name) for name in submission_names}
    wanted = set(natural.values())
    names, used = {}, set()
    for name in sorted(submission_names):
        candidate = natural[name]
        if candidate not in RESERVED and candidate != ".json" and list(natural.values()).count(candidate) == 1:
            names[name] = candidate
            used.add(candidate)
    for name in sorted(set(submission_names) - set(names)):
        candidate, n = f"{name}.json", 2
        while candidate in used or candidate in wanted or candidate in RESERVED:
            candidate, n = f"{name}~{n}.json", n + 1
        names[name] = candidate
        used.add(candidate)
    return names
