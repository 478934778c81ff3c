"""Human-readable output: the student's check report and the batch table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .result import Result


def print_check(result: Result, console: Console) -> None:
    """What passed, what failed and why, for a student at a terminal."""
    console.print(Text(f"{result.assignment.title}", style="bold"))
    console.print(f"{result.submission.file}: ", Text(f"{result.score:g} / {result.max_score:g} points", style=_score_style(result)))
    console.print()
    for test in result.tests:
        mark, style = ("✓", "green") if test.status == "passed" else ("✗", "red")
        console.print(Text(f"{mark} {test.name}  [{test.score:g}/{test.max_score:g}]", style=f"bold {style}"))
        if test.status == "failed":
            for line in test.output.splitlines():
                label, _, rest = line.partition(": ")
                if label in ("FAILED", "PASSED"):
                    console.print("    " + rest, highlight=False)
                else:
                    console.print(Text("    " + label + ": ", style="yellow"), Text(rest), highlight=False)
    if result.errors:
        console.print()
        console.print(Text("Problems while running your notebook:", style="bold yellow"))
        for error in result.errors:
            console.print("  - " + error, highlight=False, markup=False)


def batch_table(results: dict, max_score: float, seconds: float) -> Table:
    table = Table(title=f"Graded {len(results)} submission(s) in {seconds:.1f} s")
    table.add_column("submission")
    table.add_column("score", justify="right")
    table.add_column("status")
    table.add_column("first problem (see the JSON for all feedback)", overflow="ellipsis", no_wrap=True)
    for name, r in results.items():
        if r is None:
            table.add_row(name, "-", "missing", "result file unreadable")
            continue
        failed = next((t for t in r.tests if t.status == "failed"), None)
        problem = ""
        if r.errors and r.status != "graded":
            problem = r.errors[0]
        elif failed is not None:
            problem = f"{failed.answer}: {failed.diagnosis or failed.output.splitlines()[0].removeprefix('FAILED: ')}"
        table.add_row(name, Text(f"{r.score:g}/{r.max_score:g}", style=_score_style(r)), r.status, problem)
    return table


def _score_style(result: Result) -> str:
    if result.max_score and result.score == result.max_score:
        return "bold green"
    return "bold yellow" if result.score > 0 else "bold red"
