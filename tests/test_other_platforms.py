"""macOS and Windows, simulated: no os.fork (Windows), no os.pidfd_open, no
Linux namespaces, cgroups or uid switching, no `resource` module nor a C
library to load (Windows).  There the grader still imports, `grade` and
`check` run the kernel executor without the sandbox, and every result's
`isolation` says so."""

import json
import logging
import os
import subprocess
import sys

import pytest
from conftest import FIXTURES, ROOT

from grader import cli
from grader.errors import CourseEnvironmentError
from grader.execution import host, sandbox
from grader.execution.factory import make_executor
from grader.execution.kernel import KernelExecutor
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
sandbox.clear_keyrings(sandbox.student_uid(0))
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
