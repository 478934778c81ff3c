"""Reading a submission and planning its execution.

Reading never trusts the file: size, encoding, JSON, nesting and notebook
structure are checked, and every problem becomes an :class:`InvalidSubmission`
with a message a student can act on.  Planning finds the answer cells by tag
(``answer:<name>``), not by position, so inserted, deleted and reordered cells
still grade; with a tag deleted, by where the name is computed (bindings.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grader.errors import InvalidSubmission
from grader.execution.bindings import answer_cell
from grader.model.spec import Spec

ANSWER_TAG = "answer:"


@dataclass(frozen=True)
class Submission:
    path: Path
    sha256: str
    size: int
    notebook: nbformat.NotebookNode

    @property
    def assignment_hint(self) -> str | None:
        """The assignment named in the notebook's metadata by the template."""
        meta = self.notebook.metadata.get("grader")
        if isinstance(meta, dict) and isinstance(meta.get("assignment"), str):
            return meta["assignment"]
        return None


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, read in chunks (the file may be large)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def read_submission(path: Path | str, max_bytes: int) -> Submission:
    path = Path(path)
    if path.is_symlink():
        raise InvalidSubmission(f"{path.name}: is a symbolic link, not a notebook file; upload the notebook itself")
    if not path.exists():
        raise InvalidSubmission(f"{path.name}: file not found")
    if not path.is_file():
        raise InvalidSubmission(f"{path.name}: not a regular file")
    size = path.stat().st_size
    if size > max_bytes:
        raise InvalidSubmission(
            f"{path.name}: the file is {size / 2**20:.1f} MiB, more than the {max_bytes / 2**20:.0f} MiB allowed; "
            "clear the outputs (Kernel > Restart & Clear Output) and save again"
        )
    raw = path.read_bytes()
    sha256 = hashlib.sha256(raw).hexdigest()
    if not raw.strip():
        raise InvalidSubmission(f"{path.name}: the file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSubmission(
            f"{path.name}: not a notebook: byte 0x{raw[exc.start]:02x} at offset {exc.start} is not UTF-8 text "
            "(a notebook is a JSON text file; did you upload a PDF, a zip or an exported HTML?)"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        truncated = not text.rstrip().endswith("}") or exc.pos >= len(text.rstrip()) - 1
        cut = " (the file looks truncated: was it saved or uploaded completely?)" if truncated else ""
        raise InvalidSubmission(
            f"{path.name}: not a notebook: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{cut}"
        ) from None
    except RecursionError:
        raise InvalidSubmission(f"{path.name}: not a notebook: the JSON is nested too deeply") from None
    if not isinstance(data, dict) or not ("cells" in data or "worksheets" in data):
        raise InvalidSubmission(f"{path.name}: valid JSON but not a Jupyter notebook (no 'cells')")
    try:
        # Not nbformat.reads: it also validates against nbformat's schema only
        # to log what it finds, and compiling that schema delays the first
        # notebook of every process; the structure we need is checked below.
        notebook = nbformat.convert(nbformat.reader.reads(text), 4)
    except RecursionError:
        raise InvalidSubmission(f"{path.name}: not a notebook: the JSON is nested too deeply") from None
    except Exception as exc:  # nbformat raises many types for broken structure
        raise InvalidSubmission(f"{path.name}: not a readable notebook: {type(exc).__name__}: {exc}") from None
    _check_structure(path.name, notebook)
    return Submission(path=path, sha256=sha256, size=size, notebook=notebook)


def _check_structure(name: str, notebook: nbformat.NotebookNode) -> None:
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        raise InvalidSubmission(f"{name}: not a readable notebook: 'cells' is not a list")
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise InvalidSubmission(f"{name}: not a readable notebook: cell {i} has no valid cell_type")
        if not isinstance(cell.get("source"), str):
            raise InvalidSubmission(f"{name}: not a readable notebook: cell {i} has no text source")


def cell_tags(cell: dict) -> list[str]:
    metadata = cell.get("metadata")
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


@dataclass(frozen=True)
class Step:
    """One student code cell, and the answers captured right after it."""

    cell_index: int
    source: str
    captures: dict[str, str] = field(default_factory=dict)  # answer -> expression
    weights: dict[str, int] = field(default_factory=dict)  # answer -> index in every model's get_weights()


@dataclass(frozen=True)
class ExecutionPlan:
    """What an executor runs: the student's code cells in order, capture
    points after tagged cells, and a final capture of every answer."""

    answer_names: list[str]
    steps: list[Step]
    final_captures: dict[str, str]
    notices: dict[str, list[str]]  # answer -> things the student should know
    data_files: list[Path]
    cell_timeout: float
    notebook_timeout: float
    max_answer_bytes: int
    final_weights: dict[str, int] = field(default_factory=dict)  # model weights looked for at the end (Step.weights)


def plan_execution(
    submission: Submission,
    spec: Spec,
    data_files: list[Path],
    cell_timeout: float | None = None,
    notebook_timeout: float | None = None,
) -> ExecutionPlan:
    by_cell: dict[str, list[str]] = {}
    for name in spec.answers:
        by_cell.setdefault(spec.capture_cell(name), []).append(name)
    cells = submission.notebook.cells
    present = {t[len(ANSWER_TAG) :] for c in cells for t in cell_tags(c) if t.startswith(ANSWER_TAG)}
    inferred: dict[int, list[str]] = {}  # cell index -> tags it stands in for
    notices: dict[str, list[str]] = {}
    sources = [c.source if c.cell_type == "code" else None for c in cells]
    for tag in by_cell:
        if tag in present or not tag.isidentifier():
            continue
        found = answer_cell(sources, tag)
        if found.index is not None:
            inferred.setdefault(found.index, []).append(tag)
            rule = f"the last cell that assigns {tag}"
            if found.skipped:
                rule = f"the last cell that computes {tag} (cell {found.skipped[0] + 1} only {found.skipped[1]})"
            for name in by_cell[tag]:
                notices[name] = [
                    f"no cell is tagged '{ANSWER_TAG}{tag}'; its value was taken after cell {found.index + 1}, {rule}"
                ]
        elif found.unparsed:
            cell, reason = found.unparsed
            for name in by_cell[tag]:
                notices[name] = [
                    f"no code cell is tagged '{ANSWER_TAG}{tag}', and cell {cell + 1}, which mentions {tag}, could not "
                    f"be parsed ({reason}), so {_untagged(spec, name)}: fix that cell, or tag the cell that computes "
                    f"{tag} '{ANSWER_TAG}{tag}'"
                ]
    steps: list[Step] = []
    tagged: set[str] = set()
    for index, cell in enumerate(cells):
        names = [n for t in cell_tags(cell) if t.startswith(ANSWER_TAG) for n in by_cell.get(t[len(ANSWER_TAG) :], [])]
        names += [n for tag in inferred.get(index, []) for n in by_cell[tag]]
        if cell.cell_type != "code":
            for name in names:
                notices.setdefault(name, []).append(
                    f"the cell tagged '{ANSWER_TAG}{spec.capture_cell(name)}' (cell {index + 1}) is a {cell.cell_type} cell, "
                    "so it never ran: change it back to a code cell"
                )
            continue
        if not cell.source.strip() and not names:
            continue
        tagged.update(names)
        steps.append(Step(index, cell.source, {n: spec.expression(n) for n in names}, _weights(spec, names)))
    for name in spec.answers:
        if name not in tagged and name not in notices:
            notices[name] = [
                f"no code cell is tagged '{ANSWER_TAG}{spec.capture_cell(name)}', so {_untagged(spec, name)}"
            ]
    limits = spec.limits
    return ExecutionPlan(
        answer_names=list(spec.answers),
        steps=steps,
        # An expression (``model.get_weights()[0]``) names objects the notebook
        # reuses, so it is only meaningful right after its own cell.
        final_captures={n: spec.expression(n) for n, a in spec.answers.items() if a.expression is None},
        # Untagged weight answers: whatever models are left at the end, under any name.
        final_weights=_weights(spec, [n for n in spec.answers if n not in tagged]),
        notices=notices,
        data_files=data_files,
        cell_timeout=cell_timeout or limits.cell_timeout,
        notebook_timeout=notebook_timeout or limits.notebook_timeout,
        max_answer_bytes=int(limits.max_answer_mb * 2**20),
    )


def _weights(spec: Spec, names: list[str]) -> dict[str, int]:
    return {n: w for n in names if (w := spec.answers[n].model_weight) is not None}


def _untagged(spec: Spec, name: str) -> str:
    """What happens to an answer whose capture cell is not known."""
    return (
        "it could not be captured"
        if spec.answers[name].expression
        else "its value was taken at the end of the notebook"
    )
