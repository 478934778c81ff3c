"""The warm executor (children forked from a preloaded zygote) grades like the
kernel executor: same scores, same per-check statuses, same timeout, crash and
clean-up semantics, on the real assignment and the fixture notebooks."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from grader.errors import ExecutorError
from grader.execute import KernelExecutor
from grader.grade import grade
from grader.warm import WarmExecutor

from .conftest import FIXTURES, ROOT

UNREADABLE = {"truncated_json", "not_a_notebook"}
OPTIONS = {"infinite_loop_in_extra_cell": {"cell_timeout": 3}}
READABLE = sorted(p.stem for p in FIXTURES.glob("*.ipynb") if p.stem not in UNREADABLE)


@pytest.fixture(scope="module")
def warm():
    executor = WarmExecutor()
    yield executor
    executor.close()


@pytest.fixture
def grade_warm(warm, assignment, references):
    def run(path, **options):
        return grade(path, assignment, executor=warm, references=references, **options)

    return run


def notebook_with_extra_cell(tmp_path: Path, source: str) -> Path:
    """correct.ipynb with one more code cell after exercise 2 (it becomes cell 7)."""
    nb = nbformat.read(FIXTURES / "correct.ipynb", as_version=4)
    nb.cells.insert(6, nbformat.v4.new_code_cell(source))
    path = tmp_path / "extra_cell.ipynb"
    nbformat.write(nb, path)
    return path


def cell_statuses(result):
    return [(c.cell, c.status) for c in result.cells]


def running(pid: int) -> bool:
    """Is ``pid`` a live (not zombie) process?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def live_processes(cmdline: list[str]) -> list[int]:
    wanted = "\0".join(cmdline).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/cmdline").read_bytes() == wanted and running(int(entry)):
                    found.append(int(entry))
            except OSError:
                pass
    return found


def test_correct_notebook_scores_full_marks(grade_warm):
    result = grade_warm(FIXTURES / "correct.ipynb")
    assert result.status == "graded" and result.executor == "warm"
    assert result.score == 10, result.output
    assert result.cells == [] and result.errors == []


def test_magics_shell_escapes_and_inline_plots_work(grade_warm):
    result = grade_warm(FIXTURES / "magics_and_plots.ipynb")
    assert result.score == 10, result.output
    assert result.cells == []


def test_error_in_unrelated_cell_is_recorded_and_later_cells_run(grade_warm):
    result = grade_warm(FIXTURES / "error_in_unrelated_cell.ipynb")
    assert result.score == 10
    assert [(c.cell, c.status, c.ename) for c in result.cells] == [(7, "error", "NameError")]
    assert "name 'changed_pixels' is not defined" in result.cells[0].evalue


def test_dead_child_keeps_answers_captured_before(grade_warm):
    result = grade_warm(FIXTURES / "kernel_dies_midway.ipynb")
    assert result.score == 4
    assert cell_statuses(result) == [(7, "died"), (9, "not_run"), (11, "not_run")]
    assert result.cells[0].ename == "DeadKernelError"
    assert any("execution stopped: the kernel died" in e for e in result.errors)


def test_cell_timeout_interrupts_and_later_cells_run(grade_warm):
    result = grade_warm(FIXTURES / "infinite_loop_in_extra_cell.ipynb", cell_timeout=3)
    assert result.score == 10
    assert cell_statuses(result) == [(7, "timeout")]
    assert result.timings.execute_s < 15


def test_notebook_timeout_fails_closed_on_what_did_not_run(grade_warm):
    result = grade_warm(FIXTURES / "infinite_loop_in_extra_cell.ipynb", cell_timeout=60, notebook_timeout=5)
    assert result.score == 4
    assert cell_statuses(result) == [(7, "timeout"), (9, "not_run"), (11, "not_run")]
    assert "the notebook ran out of time (5 s for the whole notebook)" in result.output


def test_loop_ignoring_sigint_is_killed_and_earlier_answers_kept(grade_warm, tmp_path):
    source = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n"
    start = time.monotonic()
    result = grade_warm(notebook_with_extra_cell(tmp_path, source), cell_timeout=3)
    assert time.monotonic() - start < 30
    assert result.score == 4
    assert cell_statuses(result) == [(7, "timeout"), (9, "not_run"), (11, "not_run")]
    assert [t.status for t in result.tests[:4]] == ["passed"] * 4
    assert any("the kernel stopped responding after a cell timed out" in e for e in result.errors)


@pytest.mark.parametrize("new_session", [False, True], ids=["same-group", "own-session"])
def test_background_processes_do_not_survive_the_run(grade_warm, tmp_path, new_session):
    pid_file = tmp_path / "sleep.pid"
    source = (
        "import subprocess\n"
        f"p = subprocess.Popen(['sleep', '600'], start_new_session={new_session})\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
    )
    result = grade_warm(notebook_with_extra_cell(tmp_path, source))
    assert result.score == 10 and result.cells == []
    pid = int(pid_file.read_text())
    assert not running(pid)
    assert live_processes(["sleep", "600"]) == []


def test_zygote_is_reused_and_restarted_when_killed(warm, grade_warm):
    assert grade_warm(FIXTURES / "correct.ipynb").score == 10
    first = warm.zygote_pid
    assert grade_warm(FIXTURES / "correct.ipynb").score == 10
    assert warm.zygote_pid == first  # one zygote, many children

    os.kill(first, signal.SIGKILL)
    result = grade_warm(FIXTURES / "correct.ipynb")
    assert result.score == 10 and result.cells == [], result.output
    assert warm.zygote_pid not in (None, first)
    assert not running(first)


def test_zygote_that_cannot_import_raises_executor_error(tmp_path, monkeypatch, assignment, references):
    broken = tmp_path / "tensorflow"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('this TensorFlow is broken')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with WarmExecutor() as executor:
        with pytest.raises(ExecutorError, match="did not start: ImportError: this TensorFlow is broken"):
            grade(FIXTURES / "correct.ipynb", assignment, executor=executor, references=references)


def test_grader_process_never_imports_tensorflow():
    script = (
        "import sys\n"
        "from grader.grade import grade\n"
        "from grader.warm import WarmExecutor\n"
        "with WarmExecutor() as executor:\n"
        f"    result = grade({str(FIXTURES / 'correct.ipynb')!r}, 'conv2d', executor=executor)\n"
        "assert result.score == 10, result.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", READABLE)
def test_same_grades_as_the_kernel_executor(graded, grade_warm, name):
    options = OPTIONS.get(name, {})
    kernel = graded(name, **options)
    warm = grade_warm(FIXTURES / f"{name}.ipynb", **options)
    assert (warm.status, warm.score) == (kernel.status, kernel.score), warm.output
    assert [(t.name, t.status) for t in warm.tests] == [(t.name, t.status) for t in kernel.tests]
    assert [(c.cell, c.status, c.ename) for c in warm.cells] == [(c.cell, c.status, c.ename) for c in kernel.cells]
    assert isinstance(KernelExecutor(), object)  # the reference executor is the one in grader.execute
