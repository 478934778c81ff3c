"""Feedback, worded in one place from a check's fields.

A check's result keeps its parts as fields (the verdict ``message``, the
likely cause ``diagnosis``, ``notes`` about the answer's cell, the spec's
``hint``); every medium renders them from here: the ``output`` text of the
result JSON (Gradescope shows it), the terminal and the HTML pages.  Nothing
parses feedback text back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from grader.model.result import CheckResult

PartKind = Literal["verdict", "cause", "note", "hint"]
LABELS: dict[PartKind, str] = {"verdict": "", "cause": "Likely cause", "note": "Note", "hint": "Hint"}


@dataclass(frozen=True)
class Part:
    kind: PartKind
    text: str

    @property
    def label(self) -> str:
        return LABELS[self.kind]


def compose(passed: bool, message: str, diagnosis: str | None, notes: list[str], hint: str | None) -> list[Part]:
    """The parts shown for a check: the verdict, and for a failed check its
    likely cause, notes and hint."""
    parts = [Part("verdict", message)]
    if not passed:
        if diagnosis:
            parts.append(Part("cause", diagnosis))
        parts += [Part("note", note) for note in notes]
        if hint:
            parts.append(Part("hint", hint))
    return parts


def parts(test: CheckResult) -> list[Part]:
    """A check result's parts; a result written before they were fields
    (no ``message``) is its ``output``, as one verdict."""
    if test.message is None:
        return [Part("verdict", test.output)]
    return compose(test.status == "passed", test.message, test.diagnosis, test.notes, test.hint)


def as_text(passed: bool, parts: list[Part]) -> str:
    """The ``output`` text: ``PASSED:``/``FAILED:`` and the verdict, then one
    labelled line per part (``Likely cause:``, ``Note:``, ``Hint:``)."""
    lines = [("PASSED: " if passed else "FAILED: ") + parts[0].text]
    lines += [f"{part.label}: {part.text}" for part in parts[1:]]
    return "\n".join(lines)


def first_problem(test: CheckResult) -> str:
    """One line for a table: the likely cause, else the verdict."""
    return test.diagnosis or parts(test)[0].text
