"""Human-readable output: the student's check report and the batch table."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from grader.checking import feedback
from grader.grading.stats import band, class_stats
from grader.model.result import Result

if TYPE_CHECKING:
    from grader.grading.batch import BatchSummary


def print_check(result: Result, console: Console) -> None:
    """What passed, what failed and why, for a student at a terminal."""
    console.print(Text(f"{result.assignment.title}", style="bold"))
    console.print(
        f"{result.submission.file}: ",
        Text(f"{result.score:g} / {result.max_score:g} points", style=_score_style(result)),
    )
    console.print()
    for test in result.tests:
        mark, style = ("✓", "green") if test.status == "passed" else ("✗", "red")
        console.print(Text(f"{mark} {test.name}  [{test.score:g}/{test.max_score:g}]", style=f"bold {style}"))
        if test.status == "failed":
            for part in feedback.parts(test):
                if part.kind == "verdict":
                    console.print("    " + part.text, highlight=False)
                else:
                    console.print(Text("    " + part.label + ": ", style="yellow"), Text(part.text), highlight=False)
    if result.errors:
        console.print()
        console.print(Text("Problems while running your notebook:", style="bold yellow"))
        for error in result.errors:
            console.print("  - " + error, highlight=False, markup=False)


def batch_table(results: dict, max_score: float, seconds: float) -> Table:
    table = Table(title=f"Graded {len(results)} submission(s) in {seconds:.1f} s")
    table.add_column("submission", overflow="fold")
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("first problem (the JSON has all feedback)", overflow="ellipsis", no_wrap=True, max_width=60)
    for name, r in results.items():
        if r is None:
            table.add_row(name, "-", "missing", "result file unreadable")
            continue
        failed = next((t for t in r.tests if t.status == "failed"), None)
        problem = ""
        if r.errors and r.status != "graded":
            problem = r.errors[0]
        elif failed is not None:
            problem = f"{failed.answer}: {feedback.first_problem(failed)}"
        table.add_row(name, Text(f"{r.score:g}/{r.max_score:g}", style=_score_style(r)), r.status, problem)
    return table


def _score_style(result: Result) -> str:
    return {"full": "bold green", "partial": "bold yellow", "zero": "bold red"}[band(result.score, result.max_score)]


@contextmanager
def batch_progress(console: Console, total: int) -> Iterator[Callable[[Path, Result], None]]:
    """A progress bar with an ETA on a terminal, one plain line per submission
    otherwise (logs, CI).  Yields the callback the batch calls per result."""
    if not console.is_terminal:
        start = time.monotonic()
        done = [0]

        def log(path: Path, result: Result) -> None:
            done[0] += 1
            console.print(
                f"[{done[0]}/{total} {time.monotonic() - start:.1f}s] {path.name}: "
                f"{result.score:g}/{result.max_score:g} ({result.status})",
                highlight=False,
                markup=False,
            )

        yield log
        return
    columns = [
        TextColumn("grading"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
    ]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=total)

        def advance(path: Path, result: Result) -> None:
            progress.update(task, advance=1, description=f"{path.name}: {result.score:g}/{result.max_score:g}")

        yield advance


def batch_totals(summary: BatchSummary, max_score: float) -> str:
    stats = class_stats([r for r in summary.results.values() if r is not None], max_score)
    rate = summary.graded_now / summary.seconds if summary.seconds and summary.graded_now else 0.0
    return (
        f"{stats.results} results: {stats.full_marks} full marks, {stats.partial} partial, {stats.zero} zero, "
        f"{stats.not_gradable} not gradable. "
        f"Graded {summary.graded_now} now ({summary.skipped} already up to date) in {summary.seconds:.1f} s, "
        f"{rate:.2f} notebooks/s."
    )
