"""macOS and Windows, simulated: no os.fork (Windows), no os.pidfd_open, no
Linux namespaces, cgroups or uid switching, no `resource` module nor a C
library to load, no Unix sockets, no folder descriptors (Windows: no
`dir_fd`, no `O_DIRECTORY`, `O_NOFOLLOW` or `O_NONBLOCK`, a folder cannot be
`os.open`ed).  There the grader still imports, `grade` and `check` run the
kernel executor without the sandbox, the answers are read by path, and every
result's `isolation` says so."""

import dataclasses
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, ROOT

from grader import cli
from grader.checking.answers import BadAnswerFile, load_answers, load_npy
from grader.errors import CourseEnvironmentError
from grader.execution import host, kernel, sandbox, untrusted
from grader.execution.base import FINAL_POINT, ExecutionRecord, Workdir, student_environment
from grader.execution.capture import capture
from grader.execution.factory import make_executor
from grader.execution.kernel import KernelExecutor
from grader.execution.plan import ExecutionPlan
from grader.execution.sandbox import Policy
from grader.model import versions

DARWIN_ISOLATION = (
    "none: this platform (darwin) has no Linux namespaces, cgroups or uid switching; "
    "students' code runs as this user, without resource limits (the cell and notebook timeouts apply)"
)

# Every module of the package is imported once as it is here (which loads the
# standard library and third-party modules they need, as on any platform),
# then again with the Linux-only pieces taken away: what fails then is the
# grader's own doing.  Then the degraded path's calls are made.
SIMULATION = r"""
import ctypes, importlib, json, os, pkgutil, socket, sys, tempfile
import grader

names = sorted(m.name for m in pkgutil.walk_packages(grader.__path__, "grader.") if not m.name.endswith("__main__"))
for name in names:
    importlib.import_module(name)
for name in [n for n in sys.modules if n == "grader" or n.startswith("grader.")]:
    del sys.modules[name]

system = sys.argv[1]
sys.platform = system
absent = ["pidfd_open"]
if system == "win32":
    absent += ["fork", "geteuid", "getuid", "killpg", "O_NOFOLLOW", "O_DIRECTORY", "O_CLOEXEC", "O_NONBLOCK"]
    del socket.AF_UNIX
    os.supports_dir_fd = set()  # as on Windows: no function takes dir_fd
    sys.modules["resource"] = None  # `import resource` raises ImportError, as on Windows

    def no_libc(*args, **kwargs):
        raise TypeError("no C library to load by None here")

    ctypes.CDLL = no_libc
for name in absent:
    delattr(os, name)

for name in names:
    importlib.import_module(name)

from grader.execution import host, sandbox
from grader.execution.factory import make_executor

policy = sandbox.Policy()
executor = make_executor("warm", policy)
with sandbox.scratch_folder(policy) as folder:
    scratch = folder.is_dir()
    sandbox.release(folder)
print(json.dumps({
    "host": host.detect().__dict__,
    "level": sandbox.probe().level,
    "isolation": sandbox.describe(policy),
    "executor": type(executor).__name__,
    "launcher": sandbox.launcher(policy, tempfile.gettempdir(), 61000, ["python", "-m", "ipykernel_launcher"]),
    "preflight": list(sandbox.preflight(policy)),
    "scratch": scratch,
}))
"""


@pytest.mark.parametrize("system", ["darwin", "win32"])
def test_the_package_imports_and_degrades_without_linux(system):
    proc = subprocess.run(
        [sys.executable, "-c", SIMULATION, system], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["host"]["system"] == system and not seen["host"]["pidfd"] and not seen["host"]["linux"]
    assert seen["host"]["unix_sockets"] is (system != "win32")
    assert seen["host"]["dir_fd"] is (system != "win32")
    assert seen["level"] == "none"
    assert seen["isolation"] == DARWIN_ISOLATION.replace("darwin", system)
    assert seen["executor"] == "KernelExecutor"
    # logging is not set up, as in the CLI: the notice is on stderr
    assert "grader: the warm executor needs" in proc.stderr and "using the kernel executor" in proc.stderr
    assert seen["launcher"] == ["python", "-m", "ipykernel_launcher"]  # no sandbox to enter: the kernel as it is
    assert seen["preflight"] == [] and seen["scratch"]


@pytest.fixture
def darwin(monkeypatch, tmp_path):
    """This process as a Mac sees it: no pidfds, no Linux."""
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.delattr(os, "pidfd_open")
    for variable in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR"):  # jupyter_core's macOS folders: not in ~/Library
        monkeypatch.setenv(variable, str(tmp_path / variable.lower()))


def test_detection_reads_what_the_os_module_offers(monkeypatch):
    assert host.detect().warm and host.detect().sandbox and host.warm_unavailable() is None
    monkeypatch.delattr(os, "fork")
    assert host.detect().warm_missing == ["os.fork"]
    assert not host.detect().sandbox
    assert "needs os.fork, which this platform (linux) lacks" in host.warm_unavailable()


def test_on_a_mac_warm_is_the_kernel_executor_with_a_notice(darwin, caplog):
    with caplog.at_level(logging.WARNING, logger="grader.execution.factory"):
        executor = make_executor("warm", Policy())
    assert isinstance(executor, KernelExecutor)
    assert "needs os.pidfd_open, Linux, which this platform (darwin) lacks: using the kernel executor" in caplog.text
    assert sandbox.probe().missing == ["Linux namespaces, cgroups and uid switching (this platform is darwin)"]
    assert sandbox.describe(Policy()) == sandbox.describe(Policy(isolate=False)) == DARWIN_ISOLATION


def test_on_a_mac_full_isolation_cannot_be_required(darwin, tmp_path, capsys):
    notebook = tmp_path / "x.ipynb"
    notebook.write_text("{}")
    assert cli.main(["grade", str(notebook), "--assignment", "conv2d", "--require-isolation"]) == 3
    assert "full isolation is required but not available: Linux namespaces" in capsys.readouterr().err


def test_the_doctor_names_the_executor_that_cannot_run(darwin, capsys):
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "isolation: none" in out
    assert "executors: kernel ok, warm unavailable: the warm executor needs os.pidfd_open, Linux" in out


@pytest.mark.parametrize(
    "found, expected",
    [
        ({}, "has no TensorFlow"),
        ({"tensorflow": ("tensorflow", "2.15.1"), "keras": ("keras", "2.15.0")}, "has tensorflow 2.15.1 with keras"),
        ({"tensorflow": ("tensorflow-cpu", "2.21.0")}, "has tensorflow-cpu 2.21.0 and no Keras"),
        ({"tensorflow": ("tensorflow", "2.16.1"), "keras": ("keras", "2.15.0")}, "with keras 2.15.0:"),
    ],
)
def test_missing_or_old_tensorflow_is_refused_saying_what_to_install(monkeypatch, found, expected):
    monkeypatch.setattr(versions, "installed", lambda name: found.get(name))
    problem = versions.framework_problem()
    assert expected in problem and "need TensorFlow 2.16 or later with Keras 3" in problem
    assert "pip install 'tensorflow>=2.16'" in problem and sys.executable in problem
    with pytest.raises(CourseEnvironmentError, match="need TensorFlow 2.16"):
        make_executor("kernel")


def test_tensorflow_2_16_with_keras_3_is_enough(monkeypatch):
    found = {"tensorflow": ("tensorflow", "2.16.1"), "keras": ("keras", "3.0.0")}
    monkeypatch.setattr(versions, "installed", lambda name: found.get(name))
    assert versions.framework_problem() is None


@pytest.mark.slow
def test_a_mac_grades_the_correct_notebook_in_full_with_the_kernel_executor(darwin, capsys, caplog):
    assert cli.main(["grade", str(FIXTURES / "correct.ipynb"), "--assignment", "conv2d"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["score"], result["max_score"]) == (10, 10)
    assert result["executor"] == "kernel"
    assert result["isolation"] == DARWIN_ISOLATION
    assert "using the kernel executor" in caplog.text  # on stderr where logging is not set up (the CLI)
    assert cli.main(["check", str(FIXTURES / "swapped_strides.ipynb"), "--assignment", "conv2d", "--no-html"]) == 1


# --- Windows' os module: no folder descriptors ----------------------------------------


@pytest.fixture
def no_folder_descriptors(monkeypatch):
    """The os module as Windows' Python has it, for what reads the student's
    files: ``os.supports_dir_fd`` empty, a ``dir_fd`` argument raising
    NotImplementedError, a folder that cannot be ``os.open``ed, no
    ``O_DIRECTORY``, ``O_NOFOLLOW`` or ``O_NONBLOCK`` (their values were taken
    when grader.execution.untrusted was imported: they are taken away there
    too), and shutil's path-based ``rmtree``.  Symbolic links and FIFOs stay
    what Linux makes them: the reader must refuse them by itself."""
    real_open, real_stat = os.open, os.stat

    def windows_open(path, flags, mode=0o777, *, dir_fd=None):
        if dir_fd is not None:
            raise NotImplementedError("dir_fd unavailable on this platform")
        if os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, mode)

    def windows_stat(path, *, dir_fd=None, follow_symlinks=True):
        if dir_fd is not None:
            raise NotImplementedError("dir_fd unavailable on this platform")
        return real_stat(path, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(os, "open", windows_open)
    monkeypatch.setattr(os, "stat", windows_stat)
    monkeypatch.setattr(os, "supports_dir_fd", set())
    monkeypatch.delattr(os, "O_DIRECTORY")
    monkeypatch.setattr(shutil, "_use_fd_functions", False)
    for flag in ("O_NOFOLLOW", "O_NONBLOCK", "O_DIRECTORY", "O_CLOEXEC"):
        monkeypatch.setattr(untrusted, flag, 0)
    monkeypatch.setattr(untrusted, "DIR_FLAGS", os.O_RDONLY)
    monkeypatch.setattr(untrusted, "READ_FLAGS", os.O_RDONLY)
    write_flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    monkeypatch.setattr(untrusted, "WRITE_FLAGS", write_flags)
    monkeypatch.setattr(kernel, "WRITE_FLAGS", write_flags)


def test_without_folder_descriptors_the_answers_folder_is_held_by_its_path(no_folder_descriptors, tmp_path):
    assert not host.has_dir_fd() and not host.detect().dir_fd
    with pytest.raises(PermissionError):
        untrusted.open_dir(tmp_path)  # what grading did here before: it crashed on Windows
    with untrusted.held_folder(tmp_path) as folder:
        assert folder == untrusted.Folder(tmp_path, None)


def test_the_host_has_folder_descriptors_here():
    assert host.has_dir_fd() and host.detect().dir_fd


def _plan(names: list[str]) -> ExecutionPlan:
    return ExecutionPlan(
        answer_names=names,
        steps=[],
        final_captures={n: n for n in names},
        notices={},
        data_files=[],
        cell_timeout=60,
        notebook_timeout=300,
        max_answer_bytes=1 << 20,
    )


def _within(seconds: float, call: Callable[[], object], fifo: Path) -> object:
    """``call()``'s result (or its exception, raised here), failing if it
    blocks (on a FIFO) for ``seconds``."""
    result: list[object] = []
    raised: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():  # release the blocked reader so no thread is left behind
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"reading blocked on {fifo.name}")
    if raised:
        raise raised[0]
    return result[0]


PLANTED = ["link", "fifo", "folder"]


def _plant(path: Path, kind: str, target: Path) -> None:
    path.unlink()
    if kind == "link":
        path.symlink_to(target)  # a well-formed file of the student's choice: following it would succeed
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()


@pytest.fixture(params=["descriptor", "path"])
def reader(request):
    """Both readers of the answers folder: through its descriptor (Linux,
    macOS) and by its path (Windows, simulated)."""
    if request.param == "path":
        request.getfixturevalue("no_folder_descriptors")
    return request.param


@pytest.mark.parametrize("kind", PLANTED)
def test_both_readers_refuse_a_planted_answer_file(reader, tmp_path, kind):
    answers, elsewhere = tmp_path / "answers", tmp_path / "elsewhere"
    answers.mkdir()
    elsewhere.mkdir()
    capture({"x": np.arange(3.0), "y": np.ones(2)}, {"x": "x", "y": "y"}, str(answers), FINAL_POINT, 1 << 20)
    capture({"x": np.full(3, 7.0)}, {"x": "x"}, str(elsewhere), FINAL_POINT, 1 << 20)
    planted = answers / "end--x.npy"
    _plant(planted, kind, elsewhere / "end--x.npy")
    with untrusted.held_folder(answers) as folder:
        assert (folder.fd is None) is (reader == "path")
        loaded = _within(5, lambda: load_answers(_plan(["x", "y"]), ExecutionRecord(executor="test"), folder), planted)
    assert isinstance(loaded, dict)
    assert loaded["x"].status == "invalid" and loaded["x"].value is None
    assert "end--x.npy" in loaded["x"].detail
    assert loaded["y"].ok and loaded["y"].value.tolist() == [1.0, 1.0]  # the rest is graded as usual


@pytest.mark.parametrize("kind", PLANTED)
def test_both_readers_refuse_a_planted_manifest(reader, tmp_path, kind):
    answers, elsewhere = tmp_path / "answers", tmp_path / "elsewhere"
    answers.mkdir()
    elsewhere.mkdir()
    capture({"x": np.arange(3.0)}, {"x": "x"}, str(answers), FINAL_POINT, 1 << 20)
    capture({"x": np.arange(3.0)}, {"x": "x"}, str(elsewhere), FINAL_POINT, 1 << 20)
    planted = answers / "end.json"
    _plant(planted, kind, elsewhere / "end.json")
    loaded = _within(5, lambda: load_answers(_plan(["x"]), ExecutionRecord(executor="test"), answers), planted)
    assert isinstance(loaded, dict)
    assert loaded["x"].status == "not_run" and "the capture manifest is unusable" in loaded["x"].detail


def test_without_o_nofollow_a_path_read_refuses_a_link(no_folder_descriptors, tmp_path):
    real = tmp_path / "real.npy"
    np.save(real, np.ones(2))
    (tmp_path / "link.npy").symlink_to(real)
    assert load_npy(real, 1 << 20).tolist() == [1.0, 1.0]
    with pytest.raises(BadAnswerFile, match="link.npy is not a regular file"):
        load_npy(tmp_path / "link.npy", 1 << 20)
    os.mkfifo(tmp_path / "fifo.npy")
    with pytest.raises(BadAnswerFile, match="fifo.npy is not a regular file"):
        _within(5, lambda: load_npy(tmp_path / "fifo.npy", 1 << 20), tmp_path / "fifo.npy")


def test_on_windows_the_student_process_gets_what_any_windows_process_needs(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "win32")
    for name, value in {"SYSTEMROOT": "C:\\Windows", "TEMP": "C:\\Temp", "GRADER_LTI_TOKEN": "secret"}.items():
        monkeypatch.setenv(name, value)
    env = student_environment(Workdir(tmp_path, tmp_path / "work", tmp_path / "answers"))
    assert env["SYSTEMROOT"] == "C:\\Windows" and env["TEMP"] == "C:\\Temp"  # without SYSTEMROOT, no socket
    assert env["USERPROFILE"] == env["HOME"] == str(tmp_path / "work") and "TMPDIR" not in env
    assert "GRADER_LTI_TOKEN" not in env


@pytest.fixture
def no_unix_sockets(monkeypatch):
    """The kernel executor as on Windows: no Unix sockets, so the kernel listens on loopback TCP."""
    monkeypatch.setattr(kernel, "detect", lambda: dataclasses.replace(host.detect(), unix_sockets=False))


@pytest.mark.slow
def test_without_folder_descriptors_grade_and_check_run_end_to_end(
    darwin, no_folder_descriptors, no_unix_sockets, capsys, tmp_path
):
    """Windows as far as the grader's own code can tell it apart: no warm
    executor, no sandbox, no Unix sockets, no folder descriptors.
    ``sys.platform`` stays "darwin": jupyter_client itself makes Win32
    interrupt events where it is "win32", which Linux cannot."""
    assert cli.main(["grade", str(FIXTURES / "correct.ipynb"), "--assignment", "conv2d"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["score"], result["max_score"]) == (10, 10)
    assert (result["executor"], result["isolation"]) == ("kernel", DARWIN_ISOLATION)
    assert cli.main(["grade", str(FIXTURES / "swapped_strides.ipynb"), "--assignment", "conv2d"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["score"] == 5  # as on Linux (tests/test_grading_fixtures.py)
    assert "The strides are swapped" in result["output"] or any(
        "The strides are swapped" in t["output"] for t in result["tests"]
    )
    report = tmp_path / "check.json"
    args = ["check", str(FIXTURES / "correct.ipynb"), "--assignment", "conv2d", "--no-html", "--json", str(report)]
    assert cli.main(args) == 0
    checked = json.loads(report.read_text())
    assert checked["score"] == checked["max_score"] > 0 and checked["status"] == "graded"
