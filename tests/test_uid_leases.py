"""Student uids are leased machine-wide: two graders on one machine (two
batches, a service and a check, Dask workers) never run submissions under the
same uid at the same time, which would let one submission's processes count
against the other's process limit and share its keyrings."""

import os
import subprocess
import sys
import textwrap
import threading

import pytest
from test_warm_executor import notebook_with_extra_cell

from grader.errors import ExecutorError
from grader.execution import uids
from grader.execution.factory import make_executor
from grader.execution.sandbox import FULL, probe
from grader.grading.grade import grade

pytestmark = pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="uids are switched only as root")

HOLDER = textwrap.dedent(
    """
    import sys
    from grader.execution.uids import lease_uid
    lease = lease_uid()
    print(lease.uid, flush=True)
    sys.stdin.read()  # hold it until told
    """
)


def start_holder():
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def lease_starting_at(uid, monkeypatch):
    """The lease this process gets when it looks at ``uid`` first."""
    monkeypatch.setattr(uids, "_next", iter([uid - uids.STUDENT_UID_BASE]))
    return uids.lease_uid()


def test_a_uid_another_process_holds_is_not_handed_out_until_it_is_gone(monkeypatch):
    proc, held = start_holder()
    try:
        with lease_starting_at(held, monkeypatch) as lease:
            assert lease.uid != held and uids.STUDENT_UID_BASE <= lease.uid < uids.STUDENT_UID_BASE + uids.STUDENT_UIDS
    finally:
        proc.kill()  # a grader killed with -9 leaks no lease: the kernel drops its lock
        proc.wait()
    with lease_starting_at(held, monkeypatch) as lease:
        assert lease.uid == held


def test_a_released_lease_is_free_again_and_leases_in_one_process_differ(monkeypatch):
    first = lease_starting_at(uids.STUDENT_UID_BASE + 7, monkeypatch)
    second = lease_starting_at(uids.STUDENT_UID_BASE + 7, monkeypatch)
    assert (first.uid, second.uid) == (uids.STUDENT_UID_BASE + 7, uids.STUDENT_UID_BASE + 8)
    first.release()
    with lease_starting_at(uids.STUDENT_UID_BASE + 7, monkeypatch) as again:
        assert again.uid == uids.STUDENT_UID_BASE + 7
    second.release()


@pytest.mark.parametrize("planted", ["link", "someone_elses", "writable_by_all"])
def test_a_lease_folder_root_did_not_make_its_own_is_not_used(tmp_path, monkeypatch, planted):
    folder, good = tmp_path / "planted", tmp_path / "ours"
    if planted == "link":
        (tmp_path / "elsewhere").mkdir()
        folder.symlink_to(tmp_path / "elsewhere")
    else:
        folder.mkdir()
        if planted == "someone_elses":
            os.chown(folder, 61999, 61999)
        else:
            folder.chmod(0o777)
    monkeypatch.setattr(uids, "LEASE_FOLDERS", (folder, good))
    uids._lease_folder.cache_clear()
    try:
        with uids.lease_uid() as lease:
            assert (good / str(lease.uid)).is_file() and not list(folder.iterdir())
            assert oct(good.stat().st_mode & 0o777) == "0o700"
        monkeypatch.setattr(uids, "LEASE_FOLDERS", (folder,))
        uids._lease_folder.cache_clear()
        with pytest.raises(ExecutorError, match="cannot keep student uid leases"):
            uids.lease_uid()
    finally:
        uids._lease_folder.cache_clear()


def test_two_executors_grading_at_once_run_students_as_different_uids(assignment, references, tmp_path):
    if probe().level != FULL:
        pytest.skip("full isolation is not available here (see `grader doctor`)")
    source = "import os, time\ntime.sleep(3)\nraise RuntimeError(str(os.getuid()))\n"
    notebook = notebook_with_extra_cell(tmp_path, source)
    seen = {}

    def run(name):
        with make_executor(name) as executor:
            [cell] = grade(notebook, assignment, executor=executor, references=references).cells
            seen[name] = int(cell.evalue)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("warm", "kernel")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen.values())) == 2 and all(uid >= uids.STUDENT_UID_BASE for uid in seen.values())
