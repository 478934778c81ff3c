"""Extracting the answers the student's process wrote.

Everything under the answers folder was written by untrusted code, so each
manifest is size-limited and validated, and each ``.npy`` header is read and
checked (numeric dtype, size consistent with the file) before any data is
loaded, always with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from .execute import FINAL_POINT, ExecutionRecord, point_name
from .notebook import ExecutionPlan

AnswerStatus = Literal["ok", "missing", "unsupported", "too_large", "invalid", "not_run"]
MANIFEST_LIMIT = 1 << 20
NUMERIC_KINDS = "biuf"


class _ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ok", "missing", "unsupported", "too_large"]
    detail: str = ""
    type: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class CapturedAnswer:
    name: str
    status: AnswerStatus
    value: np.ndarray | None = None
    detail: str = ""
    where: str = ""  # "after cell 4" or "at the end of the notebook"
    type_name: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.value is not None


class BadAnswerFile(ValueError):
    pass


def open_regular(path: Path, limit: int):
    """Open a file the student's code may have replaced: never follow a link,
    never block on a FIFO or device, refuse anything but a regular file of at
    most ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise BadAnswerFile(f"cannot open {path.name}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise BadAnswerFile(f"{path.name} is not a regular file")
    if info.st_size > limit:
        os.close(fd)
        raise BadAnswerFile(f"{path.name} is {info.st_size} bytes, more than the {limit} allowed")
    return os.fdopen(fd, "rb")


def load_npy(path: Path, max_bytes: int) -> np.ndarray:
    """Load a numeric array written by untrusted code, or raise BadAnswerFile."""
    with open_regular(path, max_bytes + 4096) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise BadAnswerFile(f"unsupported .npy version {version}")
        except ValueError as exc:
            raise BadAnswerFile(f"not a valid .npy file: {exc}") from None
        if dtype.hasobject or dtype.kind not in NUMERIC_KINDS:
            raise BadAnswerFile(f"not a numeric array (dtype {dtype})")
        if any(not isinstance(n, int) or n < 0 for n in shape):
            raise BadAnswerFile(f"invalid array shape {shape}")
        expected = dtype.itemsize
        for n in shape:  # Python integers: no overflow
            expected *= n
        if expected > max_bytes or size - f.tell() != expected:
            raise BadAnswerFile(f"array header (shape {shape}, dtype {dtype}) does not match the file size")
        data = f.read(expected)
        try:
            array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
        except ValueError as exc:
            raise BadAnswerFile(f"unreadable array data: {exc}") from None
        return array.copy()


def _read_manifest(answers_dir: Path, point: str) -> dict[str, _ManifestEntry] | str:
    path = answers_dir / f"{point}.json"
    if not os.path.lexists(path):
        return "no capture was written"
    try:
        with open_regular(path, MANIFEST_LIMIT) as f:
            raw = json.loads(f.read().decode("utf-8"))
        if not isinstance(raw, dict):
            return "the capture manifest is not an object"
        return {str(k): _ManifestEntry.model_validate(v) for k, v in raw.items()}
    except BadAnswerFile as exc:
        return f"the capture manifest is unusable: {exc}"
    except (ValueError, ValidationError, RecursionError) as exc:
        return f"the capture manifest is unreadable: {type(exc).__name__}"


def _answer_at(answers_dir: Path, point: str, name: str, where: str, max_bytes: int, manifests: dict) -> CapturedAnswer:
    if point not in manifests:
        manifests[point] = _read_manifest(answers_dir, point)
    manifest = manifests[point]
    if isinstance(manifest, str):
        return CapturedAnswer(name, "not_run", detail=manifest, where=where)
    entry = manifest.get(name)
    if entry is None:
        return CapturedAnswer(name, "invalid", detail="missing from the capture manifest", where=where)
    if entry.status != "ok":
        return CapturedAnswer(name, entry.status, detail=entry.detail, where=where, type_name=entry.type)
    expected_file = f"{point}--{name}.npy"
    if entry.file != expected_file:
        return CapturedAnswer(name, "invalid", detail="unexpected file name in the capture manifest", where=where)
    try:
        value = load_npy(answers_dir / expected_file, max_bytes)
    except (OSError, BadAnswerFile) as exc:
        return CapturedAnswer(name, "invalid", detail=str(exc), where=where, type_name=entry.type)
    return CapturedAnswer(name, "ok", value=value, where=where, type_name=entry.type)


def load_answers(plan: ExecutionPlan, record: ExecutionRecord, answers_dir: Path) -> dict[str, CapturedAnswer]:
    """One answer per name: the value captured after its (last) tagged cell,
    else the value at the end of the notebook, else the most telling failure."""
    manifests: dict = {}
    cell_status = {c.cell_index: c for c in record.cells}
    result: dict[str, CapturedAnswer] = {}
    for name in plan.answer_names:
        tagged: list[CapturedAnswer] = []
        for step in plan.steps:
            if name in step.captures:
                where = f"after cell {step.cell_index + 1}"
                run = cell_status.get(step.cell_index)
                if run is not None and run.status == "not_run":
                    tagged.append(CapturedAnswer(name, "not_run", detail=f"cell {step.cell_index + 1} never ran ({record.stopped or 'execution stopped'})", where=where))
                    continue
                tagged.append(_answer_at(answers_dir, point_name(step.cell_index), name, where, plan.max_answer_bytes, manifests))
        good = [a for a in tagged if a.ok]
        if good:
            result[name] = good[-1]
            continue
        if name not in plan.final_captures:
            result[name] = tagged[-1] if tagged else CapturedAnswer(name, "missing", detail="its cell was not found")
            continue
        final = _answer_at(answers_dir, FINAL_POINT, name, "at the end of the notebook", plan.max_answer_bytes, manifests)
        if final.ok or not tagged:
            result[name] = final
        else:
            result[name] = tagged[-1]
    return result


def save_answers(path: Path, answers: dict[str, CapturedAnswer]) -> None:
    """Keep the captured arrays (for reports) as one compressed ``.npz``,
    written to a temporary file and renamed into place."""
    arrays = {name: a.value for name, a in answers.items() if a.ok}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
