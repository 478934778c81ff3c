"""Extracting the answers the student's process wrote.

Everything under the answers folder was written by untrusted code, so each
manifest is size-limited and validated, and each ``.npy`` header is read and
checked (numeric dtype, size consistent with the file) before any data is
loaded, always with ``allow_pickle=False``.  The folder is read through
:mod:`grader.execution.untrusted` (a :class:`~grader.execution.untrusted.Folder`:
a descriptor where the platform has them, else its path).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from grader.execution.base import FINAL_POINT, ExecutionRecord, point_name
from grader.execution.capture import MAX_MODELS as MAX_CANDIDATES  # no more than the capture module writes
from grader.execution.capture import NUMERIC_KINDS
from grader.execution.plan import ExecutionPlan
from grader.execution.untrusted import Folder, Parent, UnsafeFile, entry_stat, held_folder, open_regular

AnswerStatus = Literal["ok", "missing", "unsupported", "too_large", "invalid", "not_run"]
MANIFEST_LIMIT = 1 << 20


class _ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ok", "missing", "unsupported", "too_large"]
    detail: str = ""
    type: str | None = None
    file: str | None = None
    candidates: dict[str, str] = {}  # model variable -> file (answers that are a model's weight)


@dataclass(frozen=True)
class CapturedAnswer:
    name: str
    status: AnswerStatus
    value: np.ndarray | None = None
    detail: str = ""
    where: str = ""  # "after cell 4" or "at the end of the notebook"
    type_name: str | None = None
    # The same weight of every Keras model found in the namespace at that
    # point, by variable name (see Answer.model_weight).
    candidates: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.value is not None


BadAnswerFile = UnsafeFile  # a file in the answers folder that cannot be trusted (the message says why)


def load_npy(path: Path | str, max_bytes: int, parent: Parent = None) -> np.ndarray:
    """Load a numeric array written by untrusted code (``path``: one name
    under the folder ``parent``, if given), or raise BadAnswerFile."""
    with open_regular(str(path), max_bytes + 4096, parent) as f:
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
        # Read straight into the array's own memory: one copy of the data, not three.
        data = np.empty(expected, dtype=np.uint8)
        view, got = data.data, 0
        while got < expected:
            n = f.readinto(view[got:])
            if not n:
                raise BadAnswerFile("the array data ends before its header says")
            got += n
        try:
            array = data.view(dtype).reshape(shape, order="F" if fortran else "C")
        except ValueError as exc:
            raise BadAnswerFile(f"unreadable array data: {exc}") from None
        # C order, as np.load gives: only a Fortran-order file is copied
        return array if array.flags.c_contiguous else array.copy(order="C")


def _read_manifest(answers: Folder, point: str) -> dict[str, _ManifestEntry] | str:
    name = f"{point}.json"
    try:
        entry_stat(name, answers)
    except FileNotFoundError:
        return "no capture was written"
    except OSError as exc:
        return f"the capture manifest is unusable: {exc.strerror}"
    try:
        with open_regular(name, MANIFEST_LIMIT, answers) as f:
            raw = json.loads(f.read().decode("utf-8"))
        if not isinstance(raw, dict):
            return "the capture manifest is not an object"
        return {str(k): _ManifestEntry.model_validate(v) for k, v in raw.items()}
    except BadAnswerFile as exc:
        return f"the capture manifest is unusable: {exc}"
    except (ValueError, ValidationError, RecursionError) as exc:
        return f"the capture manifest is unreadable: {type(exc).__name__}"


def _answer_at(answers: Folder, point: str, name: str, where: str, max_bytes: int, manifests: dict) -> CapturedAnswer:
    if point not in manifests:
        manifests[point] = _read_manifest(answers, point)
    manifest = manifests[point]
    if isinstance(manifest, str):
        return CapturedAnswer(name, "not_run", detail=manifest, where=where)
    entry = manifest.get(name)
    if entry is None:
        return CapturedAnswer(name, "invalid", detail="missing from the capture manifest", where=where)
    candidates = _candidates(answers, point, name, entry, max_bytes)
    if entry.status != "ok":
        return CapturedAnswer(
            name, entry.status, detail=entry.detail, where=where, type_name=entry.type, candidates=candidates
        )
    expected_file = f"{point}--{name}.npy"
    if entry.file != expected_file:
        return CapturedAnswer(name, "invalid", detail="unexpected file name in the capture manifest", where=where)
    try:
        value = load_npy(expected_file, max_bytes, answers)
    except (OSError, BadAnswerFile) as exc:
        return CapturedAnswer(
            name, "invalid", detail=str(exc), where=where, type_name=entry.type, candidates=candidates
        )
    return CapturedAnswer(name, "ok", value=value, where=where, type_name=entry.type, candidates=candidates)


def _candidates(answers: Folder, point: str, name: str, entry: _ManifestEntry, max_bytes: int) -> dict[str, np.ndarray]:
    """The model weights captured beside an answer; any that is not exactly
    as the capture module writes it is left out."""
    found = {}
    for variable, file in sorted(entry.candidates.items())[:MAX_CANDIDATES]:
        if not variable.isidentifier() or file != f"{point}--{name}@{variable}.npy":
            continue
        try:
            found[variable] = load_npy(file, max_bytes, answers)
        except (OSError, BadAnswerFile):
            continue
    return found


@contextmanager
def answers_folder(answers: Path | Folder) -> Iterator[Folder]:
    """The answers folder held for reading: the one given, or the path held
    now (:func:`~grader.execution.untrusted.held_folder`)."""
    if isinstance(answers, Folder):
        yield answers
        return
    with held_folder(answers) as folder:
        yield folder


def load_answers(plan: ExecutionPlan, record: ExecutionRecord, answers: Path | Folder) -> dict[str, CapturedAnswer]:
    """One answer per name: the value captured after its (last) tagged cell,
    else the value at the end of the notebook, else the most telling failure.
    ``answers``: the folder, or better the folder held (:func:`answers_folder`)
    before the student's code ran (so a folder swapped for a link is not
    followed, where the platform has folder descriptors)."""
    with answers_folder(answers) as folder:
        return _load_answers(plan, record, folder)


def _load_answers(plan: ExecutionPlan, record: ExecutionRecord, answers_dir: Folder) -> dict[str, CapturedAnswer]:
    manifests: dict = {}
    cell_status = {c.cell_index: c for c in record.cells}
    result: dict[str, CapturedAnswer] = {}
    for name in plan.answer_names:
        tagged: list[CapturedAnswer] = []
        for step in plan.steps:
            if name in step.captures or name in step.weights:
                where = f"after cell {step.cell_index + 1}"
                run = cell_status.get(step.cell_index)
                if run is not None and run.status == "not_run":
                    tagged.append(
                        CapturedAnswer(
                            name,
                            "not_run",
                            detail=f"cell {step.cell_index + 1} never ran ({record.stopped or 'execution stopped'})",
                            where=where,
                        )
                    )
                    continue
                tagged.append(
                    _answer_at(answers_dir, point_name(step.cell_index), name, where, plan.max_answer_bytes, manifests)
                )
        good = [a for a in tagged if a.ok]
        if good:
            result[name] = good[-1]
            continue
        if name not in plan.final_captures and name not in plan.final_weights:
            result[name] = tagged[-1] if tagged else CapturedAnswer(name, "missing", detail="its cell was not found")
            continue
        final = _answer_at(
            answers_dir, FINAL_POINT, name, "at the end of the notebook", plan.max_answer_bytes, manifests
        )
        if name not in plan.final_captures and tagged:  # the models left at the end are for untagged notebooks only
            result[name] = tagged[-1]
        elif final.ok or not tagged:
            result[name] = final
        else:
            result[name] = tagged[-1]
    return result
