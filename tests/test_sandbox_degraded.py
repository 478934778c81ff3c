"""Where root may switch to an unprivileged uid but not make namespaces (root
in a default Docker container: no CAP_SYS_ADMIN), nothing can bind the
Python back in nor hide files: the grader checks, before any student's code
runs, that the uid can start Python, and says which hidden paths it could
read.  The real thing, under `capsh --drop=cap_sys_admin`, is in
test_gradescope_literal.py; these are the rules, fast."""

import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from grader.errors import ExecutorError
from grader.execution import sandbox
from grader.execution.sandbox import Capabilities, Policy

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching to the students' uid needs root")

DOCKER_ROOT = Capabilities(root=True, namespaces=False, cgroup_memory=True, cgroup_pids=True)


@pytest.fixture
def shared(tmp_path):
    """A folder others may enter (pytest's tmp_path is 0700), with a
    readable file, a 0600 file and a 0700 folder in it."""
    folder = Path(tempfile.mkdtemp(prefix="grader-degraded-"))
    folder.chmod(0o755)
    (folder / "public.txt").write_text("x")
    (folder / "public.txt").chmod(0o644)
    (folder / "secret.txt").write_text("x")
    (folder / "secret.txt").chmod(0o600)
    (folder / "private").mkdir(mode=0o700)
    (folder / "private" / "references.npy").write_text("x")
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=True)


@pytest.fixture
def docker_root(monkeypatch):
    monkeypatch.setattr(sandbox, "probe", lambda: DOCKER_ROOT)
    monkeypatch.setattr(sandbox, "_exposed", {})


def test_readable_as_answers_for_the_students_uid(shared):
    paths = [shared / "public.txt", shared / "secret.txt", shared / "private", shared / "private" / "references.npy"]
    assert sandbox.readable_as(sandbox.STUDENT_UID_BASE, [str(p) for p in paths]) == [True, False, False, False]


def test_a_python_the_uid_cannot_start_is_refused_naming_it(docker_root, monkeypatch, shared):
    interpreter = shared / "private" / "references.npy"  # stands in for a Python under a 0700 home
    monkeypatch.setattr(sandbox, "runtime_files", lambda: [str(shared / "public.txt"), str(interpreter)])
    with pytest.raises(ExecutorError, match=f"cannot read {interpreter}, so it cannot start this Python") as info:
        sandbox.preflight(Policy())
    assert "no CAP_SYS_ADMIN" in str(info.value) and str(shared / "public.txt") not in str(info.value)


def test_hidden_paths_the_uid_could_read_are_named_in_the_isolation(docker_root, monkeypatch, shared):
    monkeypatch.setattr(sandbox, "runtime_files", lambda: [str(shared / "public.txt")])
    policy = Policy(hide=(str(shared / "public.txt"), str(shared / "private"), str(shared / "absent")))
    assert sandbox.preflight(policy) == (str(shared / "public.txt"),)
    label = sandbox.describe(policy)
    assert label.startswith("partial: missing Linux namespaces")
    assert "unprivileged uid, cgroup memory, cgroup pids, rlimits applied" in label
    assert label.endswith(f"readable by the student's uid: {shared / 'public.txt'}")


def test_nothing_is_checked_where_namespaces_bind_what_is_needed(monkeypatch):
    monkeypatch.setattr(sandbox, "probe", lambda: Capabilities(True, True, True, True))
    monkeypatch.setattr(sandbox, "readable_as", lambda *a: pytest.fail("no check is needed with namespaces"))
    assert sandbox.preflight(Policy(hide=("/etc/passwd",))) == ()
    assert sandbox.describe(Policy()).startswith("full:")


def test_an_installed_package_does_not_hide_its_site_packages(monkeypatch):
    """Installed (not a source checkout), the package's parent is
    site-packages: its neighbours are the students' libraries, not a project."""
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    monkeypatch.setattr(sandbox, "PACKAGE_PARENT", site)
    hidden = sandbox.hidden_paths("/srv/bundle")
    assert "/srv/bundle" in hidden
    assert not [h for h in hidden if Path(h).is_relative_to(site)]


def test_the_launcher_imports_this_copy_of_the_package(tmp_path):
    """Started from a folder holding another `grader` (the bundle's source,
    say), the sandbox launcher still imports the grader that made it."""
    decoy = tmp_path / "grader"
    (decoy / "execution").mkdir(parents=True)
    (decoy / "__init__.py").write_text("")
    (decoy / "execution" / "__init__.py").write_text("")
    (decoy / "execution" / "sandbox.py").write_text("raise SystemExit('the decoy was imported')\n")
    argv = sandbox.launcher(Policy(isolate=False), tmp_path, os.getuid(), [sys.executable, "-c", "print('ran')"])
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ran"
