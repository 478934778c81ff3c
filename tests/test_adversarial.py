"""Untrusted submissions: the adversarial corpus (tests/files/adversarial/,
named by attack) graded in one batch mixed with correct submissions.

For every attack: the batch finishes, the correct submissions keep full marks,
the attacker gets a result with a clear reason and only the credit of the
answers it really captured, nothing outside its scratch folder changes, no
process of it survives, and the grader's memory stays bounded.
"""

import ctypes
import errno
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
from conftest import FIXTURES, ROOT

from grader.execution.factory import make_executor
from grader.execution.sandbox import CGROUP_PARENT, CGROUP_V1, FULL, Policy, ResourceLimits, hidden_paths, probe
from grader.grading.batch import grade_batch
from grader.model.result import Result
from grader.settings import cache_root

CORPUS = ROOT / "tests" / "files" / "adversarial"
FULL_ISOLATION = probe().level == FULL
needs_isolation = pytest.mark.skipif(not FULL_ISOLATION, reason=f"needs full isolation: {probe().missing}")

# Half the default memory, still above what a correct submission needs: on a VM
# whose memory the host backs lazily, first touches can run at 150 MB/s, too
# slow for the bomb to reach 3 GB before the 10 s cell timeout says "timed out".
CORPUS_LIMITS = ResourceLimits(memory_mb=1536)

# attack -> (score, text that must appear in the result's errors or output; "" for none)
EXPECTED = {
    "infinite_loop": (10, "timed out"),
    "loop_ignoring_sigint": (4, "stopped responding"),
    "os_exit_midway": (4, "the kernel died"),
    "sys_exit_midway": (10, "SystemExit"),
    "segfault_midway": (4, "the kernel died"),
    "kill_parent": (10, ""),
    "kill_process_group": (10, ""),
    "kill_every_process": (10, ""),
    "fork_bomb_bounded": (10, "Resource temporarily unavailable"),
    "memory_bomb": (4, "more than its 1536 MB of memory"),  # CORPUS_LIMITS
    "fill_disk": (10, "File too large"),
    "output_flood": (10, ""),
    "read_solution_by_path": (10, "No such file or directory"),
    "search_filesystem": (10, ""),
    "network_connection": (10, ""),
    "background_processes": (10, ""),
    "monkeypatch_numpy_and_builtins": (8, ""),
    "object_that_equals_everything": (7, "cannot be converted to an array"),
    "tamper_with_capture": (10, ""),  # kernel: the final capture fails (answers came earlier); warm: no effect
    "non_utf8_bytes": (0, "is not UTF-8 text"),
    "deeply_nested_json": (0, "nested too deeply"),
    "nbformat_v3": (10, ""),
    # the root side must not follow what the student planted in its scratch folder
    "report_fifo": (10, ""),
    "log_fifo": (10, ""),
    "report_link_to_dev_zero": (10, ""),
    "report_link_to_next_scratch": (10, ""),
    "answers_folder_swapped": (10, ""),
    # channels and computations the student can make the grader's burden
    "channel_flood": {"warm": (10, "sent the grader a message longer than 1048576 bytes"), "kernel": (10, "")},
    "iopub_flood": (10, ""),
    "fake_model_huge_kernel": (9, "must have shape (3, 3, 1, filters), not (96, 96, 1, 1)"),
    "keep_answers_bloat": (0, "more than the 16 MB of arrays kept per submission"),
    # nothing to verify against is not a pass
    "zeros_without_model": (9, "values cannot be verified"),
    "zeros_via_globals_untagged": (9, "0 times the expected ones"),
    # nothing seen or kept across submissions
    "environment_secrets": (10, ""),
    "snoop_other_submissions": (10, ""),
    "keyring_writer": (10, ""),
    "keyring_reader": (10, ""),
    "pty_exhaustion": (10, ""),
    "inode_exhaustion": (10, ""),
    # made by the test (see make_dynamic_attacks)
    "huge_submission_file": (0, "more than the 50 MiB allowed"),
    "ten_thousand_cells": (0, "more than the 1000 allowed"),
    "symlink_to_a_secret": (0, "symbolic link"),
    "write_into_results": (10, "Permission denied|No such file or directory|Read-only"),
    "..": (10, ""),
    "name with spaces": (10, ""),
    "ünïcødé-名前": (10, ""),
    "report_link_to_host_file": (10, ""),
    "report_link_to_missing_path": (10, ""),
    "report_link_to_earlier_result": (10, ""),
    "log_link_to_solution": (10, ""),
    "summary": (10, ""),  # its result would be summary.json
    "summary.ipynb": (10, ""),  # and this one's summary.ipynb.json, the other's way out
}
OPERATOR_SECRETS = {
    "TF_TOKEN_app_terraform_io": "operator-secret-token",
    "TF_VAR_db_password": "operator-secret-password",
    "GRADER_LTI_TOKEN": "operator-secret-lti",
}
PLANT = (
    "import os\nroot = os.path.dirname(os.getcwd())\npath = os.path.join(root, {name!r})\ntry:\n"
    "    if os.path.lexists(path):\n        os.unlink(path)\n    os.symlink({target!r}, path)\n"
    "except OSError as exc:\n    print('could not plant', path, exc)\n"
)
CORRECT = ["correct_a", "correct_b", "correct_c"]


def make_dynamic_attacks(folder: Path, out: Path, secret: Path, canary: Path) -> None:
    import nbformat

    solution = nbformat.read(ROOT / "solutions/conv2d/conv2d.ipynb", as_version=4)
    huge = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "x = 1", outputs=[nbformat.v4.new_output("stream", name="stdout", text="y" * (100 * 2**20))]
            )
        ]
    )
    nbformat.write(huge, folder / "huge_submission_file.ipynb")
    many = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"x = {i}") for i in range(10_000)])
    nbformat.write(many, folder / "ten_thousand_cells.ipynb")
    (folder / "symlink_to_a_secret.ipynb").symlink_to(secret)
    attack = solution.copy()
    attack.cells = list(solution.cells) + [
        nbformat.v4.new_code_cell(
            f"import glob\nfor path in glob.glob({str(out)!r} + '/*.json') + [{str(out / 'correct_a.json')!r}]:\n"
            f"    with open(path, 'w') as f:\n        f.write('{{\"score\": 10}}')\n"
            f"    raise RuntimeError('LEAK: overwrote ' + path)"
        )
    ]
    nbformat.write(attack, folder / "write_into_results.ipynb")
    for name in ("..", "name with spaces", "ünïcødé-名前", "summary", "summary.ipynb"):
        shutil.copy(FIXTURES / "correct.ipynb", folder / f"{name}.ipynb")
    # links to host files where the root side writes or reads (the report) after the notebook
    for name, planted, target in [
        ("report_link_to_host_file", "sandbox.json", canary),
        ("report_link_to_missing_path", "sandbox.json", canary.parent / "created-by-root.json"),
        ("report_link_to_earlier_result", "sandbox.json", out / "correct_a.json"),
        ("log_link_to_solution", "kernel.log", ROOT / "solutions/conv2d/conv2d.ipynb"),
    ]:
        attack = solution.copy()
        attack.cells = list(solution.cells) + [
            nbformat.v4.new_code_cell(PLANT.format(name=planted, target=str(target)))
        ]
        nbformat.write(attack, folder / f"{name}.ipynb")


def tree_digest(*folders: Path) -> str:
    h = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                h.update(str(path).encode() + path.read_bytes())
    return h.hexdigest()


def leftovers() -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "sleep 600.25" in cmd or "sleep 600.75" in cmd:
            found.append(f"{proc.pid}: {cmd}")
    return found


def submission_cgroups() -> set[str]:
    """The cgroups made for submissions that still exist (each is removed when its submission ends)."""
    return {f"{c.parent.parent.name}/{c.name}" for c in CGROUP_V1.glob(f"*/{CGROUP_PARENT}/*") if c.is_dir()}


class PeakMemory:
    """The grader's largest resident size while it runs, sampled every 20 ms."""

    def __init__(self):
        self.rss = psutil.Process().memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()

    def poll(self):
        me = psutil.Process()
        while self.running:
            self.rss = max(self.rss, me.memory_info().rss)
            threading.Event().wait(0.02)

    def stop(self):
        self.running = False
        self.thread.join()


class Listener:
    """A TCP server on 127.0.0.1 that counts connections (none must arrive)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


@needs_isolation
@pytest.mark.parametrize("executor_name", ["warm", "kernel"])
def test_the_whole_corpus_in_one_batch(executor_name, tmp_path, assignment, references, capsys, monkeypatch):
    subs, out = tmp_path / "submissions", tmp_path / "results"
    subs.mkdir()
    out.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("the grader's secret")
    canary = tmp_path / "canary.txt"
    canary.write_text("a host file root must not overwrite")
    for path in CORPUS.glob("*.ipynb"):
        shutil.copy(path, subs / path.name)
    make_dynamic_attacks(subs, out, secret, canary)
    for name in CORRECT:
        shutil.copy(FIXTURES / "correct.ipynb", subs / f"{name}.ipynb")
    for key, value in OPERATOR_SECRETS.items():
        monkeypatch.setenv(key, value)
    protected = [ROOT / "solutions", ROOT / "assignments", ROOT / "grader", cache_root()]
    before = tree_digest(*protected)
    listener = Listener()
    cgroups_before = submission_cgroups()
    rss_before = psutil.Process().memory_info().rss
    peak = PeakMemory()
    policy = Policy(limits=CORPUS_LIMITS, hide=hidden_paths(cache_root(), subs, out))
    executor = make_executor(executor_name, policy)
    try:
        summary = grade_batch(subs, assignment, out, executor=executor, jobs=2, cell_timeout=10, keep_answers=True)
    finally:
        executor.close()
        listener.close()
        peak.stop()
    rss_growth_mb = (psutil.Process().memory_info().rss - rss_before) / 2**20
    peak_growth_mb = (peak.rss - rss_before) / 2**20

    results = {name[: -len(".ipynb")]: result for name, result in summary.results.items()}
    assert set(results) == set(EXPECTED) | set(CORRECT)
    lost = [name for name, result in results.items() if result is None]
    contained = []
    for name, expected in EXPECTED.items():
        score, reason = expected[executor_name] if isinstance(expected, dict) else expected
        result = results[name]
        text = "\n".join([result.output, *result.errors, *result.notices, *(t.output for t in result.tests)])
        assert "LEAK" not in text, f"{name}: {text}"
        assert result.score == score, f"{name}: {result.output}"
        if reason:
            assert any(r in text for r in reason.split("|")), f"{name}: {reason!r} not in {text}"
        if result.status == "graded":
            assert result.isolation.startswith("full"), result.isolation
        contained.append(name)
    for name in CORRECT:
        assert results[name].score == 10 and results[name].status == "graded"
    on_disk = {p.name: Result.model_validate_json(p.read_text()).score for p in out.glob("correct_*.json")}
    assert on_disk == {f"{n}.json": 10 for n in CORRECT}  # nobody overwrote another student's result
    assert tree_digest(*protected) == before  # solutions, specs, the grader's code and cached references unchanged
    assert secret.read_text() == "the grader's secret"
    assert canary.read_text() == "a host file root must not overwrite"
    assert not (tmp_path / "created-by-root.json").exists()
    # two submissions never share a result file: summary.ipynb's went elsewhere, and says so
    assert summary.result_files["summary.ipynb"] == "summary.ipynb~2.json"
    assert summary.result_files["summary.ipynb.ipynb"] == "summary.ipynb.json"
    renamed = json.loads((out / "summary.json").read_text())["renamed"]
    assert renamed == [{"submission": "summary.ipynb", "result": "summary.ipynb~2.json", "instead_of": "summary.json"}]
    assert any("summary.ipynb~2.json" in n for n in results["summary"].notices)
    kept = {p.name: p.stat().st_size for p in (out / "answers").glob("*.npz")}
    assert max(kept.values()) < 16 * 2**20, kept  # the bloat kept nothing beyond a submission's share
    assert any("not kept" in n for n in results["keep_answers_bloat"].notices)
    assert leftovers() == []
    assert submission_cgroups() == cgroups_before  # even those of submissions killed mid-way
    assert listener.connections == 0
    assert rss_growth_mb < 400, f"the grader grew by {rss_growth_mb:.0f} MB"
    assert peak_growth_mb < 700, f"the grader's memory peaked {peak_growth_mb:.0f} MB above its start"
    with capsys.disabled():
        print(
            f"\n[{executor_name}] attacks tried: {len(EXPECTED)}, contained: {len(contained)}, "
            f"results lost: {len(lost)}; correct submissions at full marks: {len(CORRECT)}/{len(CORRECT)}; "
            f"grader memory growth {rss_growth_mb:.0f} MB (peak {peak_growth_mb:.0f} MB); {summary.seconds:.0f} s"
        )
    assert lost == []


SAFE_WITHOUT_ISOLATION = [
    "output_flood",
    "monkeypatch_numpy_and_builtins",
    "object_that_equals_everything",
    "infinite_loop",
    "segfault_midway",
    "read_solution_by_path",
    "memory_bomb",
]


def test_degraded_mode_still_grades_and_says_so(tmp_path, assignment, references):
    """--no-isolation (or a machine without namespaces): what is left is the
    grading itself; results say no isolation was in force, and the solution is
    then readable (which is why the default isolates)."""
    subs, out = tmp_path / "submissions", tmp_path / "results"
    subs.mkdir()
    for name in SAFE_WITHOUT_ISOLATION:
        shutil.copy(CORPUS / f"{name}.ipynb", subs / f"{name}.ipynb")
    shutil.copy(FIXTURES / "correct.ipynb", subs / "correct.ipynb")
    executor = make_executor("warm", Policy(isolate=False))
    try:
        summary = grade_batch(subs, assignment, out, executor=executor, jobs=2, cell_timeout=10)
    finally:
        executor.close()
    results = {Path(n).stem: r for n, r in summary.results.items()}
    assert {n: r.score for n, r in results.items()} == {
        "output_flood": 10,
        "monkeypatch_numpy_and_builtins": 8,
        "object_that_equals_everything": 7,
        "infinite_loop": 10,
        "segfault_midway": 4,
        "read_solution_by_path": 10,
        "correct": 10,
        "memory_bomb": 10,
    }  # no cgroup: the address-space rlimit turns the bomb into a MemoryError
    assert any("MemoryError" in e for e in results["memory_bomb"].errors)
    assert all(r.isolation.startswith("none") for r in results.values())
    assert any("LEAK: read" in e for e in results["read_solution_by_path"].errors)


def test_require_isolation_refuses_without_it(capsys):
    from grader.cli import main

    code = main(["grade", str(FIXTURES / "correct.ipynb"), "--no-isolation", "--require-isolation"])
    assert code == 3
    assert "full isolation is required" in capsys.readouterr().err


def test_doctor_reports_the_isolation_level(capsys):
    from grader.cli import main

    code = main(["doctor"])
    out = capsys.readouterr().out
    assert f"isolation: {probe().level}" in out
    assert code == (0 if FULL_ISOLATION else 1)


@needs_isolation
def test_grader_killed_mid_batch_resumes_without_loss(tmp_path, references):
    """SIGKILL the grader (and everything it started) while it grades attacks
    and correct notebooks; the re-run ends with every result, none twice."""
    import signal
    import time

    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("background_processes", "fork_bomb_bounded", "output_flood"):
        shutil.copy(CORPUS / f"{name}.ipynb", subs / f"{name}.ipynb")
    for name in CORRECT:
        shutil.copy(FIXTURES / "correct.ipynb", subs / f"{name}.ipynb")
    out = tmp_path / "out"
    command = [
        str(ROOT / ".venv/bin/python"),
        "-m",
        "grader",
        "batch",
        str(subs),
        "--assignment",
        "conv2d",
        "--out",
        str(out),
        "--jobs",
        "2",
    ]
    cgroups_before = submission_cgroups()
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name for p in out.glob("*.json")}
    assert 1 <= len(done_before) < 6
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    results = sorted(p.name for p in out.glob("*.json") if p.name != "summary.json")
    assert results == sorted(
        f"{n}.json" for n in ["background_processes", "fork_bomb_bounded", "output_flood", *CORRECT]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["submissions"] == 6 and summary["missing_results"] == []
    assert leftovers() == []
    # the killed grader never released its in-flight sandboxes: the warm parent did, when it saw the grader go
    assert submission_cgroups() == cgroups_before


def test_output_flood_is_truncated_and_the_grader_stays_small(assignment, references, tmp_path):
    """A 120 MB print flood: the warm child's log is cut with a marker, and the
    kernel executor keeps at most 4 MB of outputs, so the grader's own memory
    barely moves (measured here: 76 MB peak growth capped, 184 MB uncapped)."""
    import time

    import nbclient  # noqa: F401  (imported before measuring: not part of the flood's cost)

    from grader.execution.base import prepare_workdir
    from grader.execution.plan import plan_execution, read_submission

    submission = read_submission(CORPUS / "output_flood.ipynb", 2**30)
    plan = plan_execution(submission, assignment.spec, assignment.data_files, cell_timeout=120)
    for name in ("warm", "kernel"):
        executor = make_executor(name, Policy(isolate=False))
        me, peak, running = psutil.Process(), [0], [True]
        base = me.memory_info().rss

        def poll():
            while running[0]:
                peak[0] = max(peak[0], me.memory_info().rss)
                time.sleep(0.02)

        watcher = threading.Thread(target=poll)
        watcher.start()
        try:
            root = tmp_path / name
            record = executor.run(plan, prepare_workdir(plan, root))
        finally:
            running[0] = False
            watcher.join()
            executor.close()
        assert all(c.status == "ok" for c in record.cells), name
        if name == "warm":  # Python output goes to the log: capped, then the marker
            log = (root / "kernel.log").read_text(errors="replace")
            assert "[grader: output truncated after" in log and len(log) < 5 * 2**20
        else:  # outputs come to the grader: only the capped part is kept
            assert (peak[0] - base) / 2**20 < 130, f"the grader grew by {(peak[0] - base) / 2**20:.0f} MB"


@needs_isolation
@pytest.mark.parametrize("executor_name", ["warm", "kernel"])
def test_no_key_survives_into_the_next_batch(executor_name, tmp_path, assignment, references, monkeypatch):
    """Keys are kept per uid, beyond the process, and uids are reused.  The
    writer stores a key and makes its uid's user keyring one that uid cannot
    clear; the reader, graded next under the same uid, finds nothing: the
    student's process may not use keyrings at all."""
    import itertools

    from grader.execution import uids
    from grader.grading.grade import grade

    monkeypatch.setattr(uids, "_next", itertools.repeat(0))  # both lease the first free uid: the same one
    for name in ("keyring_writer", "keyring_reader"):
        with make_executor(executor_name, Policy(hide=hidden_paths(cache_root()))) as executor:
            result = grade(CORPUS / f"{name}.ipynb", assignment, executor=executor, references=references)
        assert result.score == 10, result.output
        assert not any("LEAK" in e for e in result.errors), result.errors


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp is Linux's")
@pytest.mark.parametrize(
    "call, args",
    [
        ("keyctl", (0, ctypes.c_int(-4), 0)),  # KEYCTL_GET_KEYRING_ID of the user keyring
        ("add_key", (b"user", b"grader-test", b"x", 1, ctypes.c_int(-4))),
        ("request_key", (b"user", b"grader-test", None, 0)),
    ],
)
def test_the_students_process_cannot_use_keyrings(call, args):
    """The filter the sandbox installs: keyring calls fail with EPERM, the rest work."""
    from grader.execution import sandbox

    if sandbox.keyring_filter(platform.machine()) is None:
        pytest.skip(f"no system call numbers for {platform.machine()}")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(sandbox.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            sandbox._deny_keyrings()
            result = libc.syscall(sandbox.SYSCALLS[platform.machine()][call], *args)
            os.write(write, json.dumps([result, ctypes.get_errno(), os.getpid() > 0, len(os.listdir("/"))]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        result, error, pid_works, listing = json.loads(f.read() or "[null, null, false, 0]")
    os.waitpid(pid, 0)
    assert (result, error) == (-1, errno.EPERM)
    assert pid_works and listing > 0  # other calls are untouched


def _run_bpf(program, nr, arch):
    """Classic BPF as the kernel runs a seccomp filter (the instructions keyring_filter uses)."""
    data, acc, pc = {0: nr, 4: arch}, 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x20:  # load a word of seccomp_data
            acc, pc = data[k], pc + 1
        elif code in (0x15, 0x35):  # jump if equal, if greater or equal
            taken = acc == k if code == 0x15 else acc >= k
            pc += 1 + (jt if taken else jf)
        elif code == 0x06:
            return k


@pytest.mark.parametrize(
    "machine, nr, arch, allowed",
    [
        ("x86_64", 39, 0xC000003E, True),  # getpid
        ("x86_64", 250, 0xC000003E, False),  # keyctl
        ("x86_64", 248, 0xC000003E, False),  # add_key
        ("x86_64", 249, 0xC000003E, False),  # request_key
        ("x86_64", 0x40000000 | 250, 0xC000003E, False),  # keyctl through the x32 ABI
        ("x86_64", 288, 0x40000003, False),  # keyctl through i386's int 0x80
        ("x86_64", 20, 0x40000003, False),  # anything through i386's ABI
        ("aarch64", 172, 0xC00000B7, True),  # getpid
        ("aarch64", 219, 0xC00000B7, False),  # keyctl
        ("aarch64", 217, 0xC00000B7, False),  # add_key
        ("aarch64", 219, 0x40000028, False),  # an arm32 compat call
    ],
)
def test_keyring_filter_decides_by_abi_and_number(machine, nr, arch, allowed):
    from grader.execution.sandbox import SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, keyring_filter

    verdict = _run_bpf(keyring_filter(machine), nr, arch)
    assert verdict == (SECCOMP_RET_ALLOW if allowed else SECCOMP_RET_ERRNO | errno.EPERM)
