"""What the root side reads from, or writes to, a folder the student could
write: links, FIFOs and devices are never followed or read, sizes are capped,
the channel from the student's process has a byte cap and a deadline, and the
environment and result names leave nothing to chance.  Needs no TensorFlow."""

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from grader.execution.base import Workdir, student_environment
from grader.execution.untrusted import UnsafeFile, chown_tree, open_dir, read_capped, tail, write_replacing
from grader.execution.zygote import _Channel, _Closed
from grader.grading.results_dir import result_names


def plant(folder: Path, name: str, kind: str, target: Path | None = None) -> Path:
    path = folder / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link":
        path.symlink_to(target)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    return path


@pytest.mark.parametrize("kind", ["fifo", "link", "dev_zero"])
def test_reads_refuse_what_is_not_a_regular_file(tmp_path, kind):
    secret = tmp_path / "secret"
    secret.write_text("solution")
    folder = tmp_path / "scratch"
    folder.mkdir()
    plant(folder, "kernel.log", kind, secret)
    fd = open_dir(folder)
    try:
        start = time.monotonic()
        assert tail("kernel.log", 4000, fd) == ""  # a FIFO would block, /dev/zero never ends
        with pytest.raises(UnsafeFile):
            read_capped("kernel.log", 4096, fd)
        assert time.monotonic() - start < 1
    finally:
        os.close(fd)


def test_reads_are_capped(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 10_000)
    with pytest.raises(UnsafeFile, match="more than the 4096 allowed"):
        read_capped(str(tmp_path / "big"), 4096)
    assert tail(str(tmp_path / "big"), 10) == "x" * 10


@pytest.mark.parametrize("kind", ["fifo", "link", "dev_zero", "missing_target"])
def test_writes_replace_planted_entries_instead_of_following_them(tmp_path, kind):
    victim = tmp_path / "victim"
    victim.write_text("a host file")
    folder = tmp_path / "scratch"
    folder.mkdir()
    if kind == "missing_target":
        plant(folder, "sandbox.json", "link", tmp_path / "would-be-created")
    else:
        plant(folder, "sandbox.json", kind, victim)
    fd = open_dir(folder)
    try:
        write_replacing("sandbox.json", b'{"oom_kills": 0}', fd)
    finally:
        os.close(fd)
    assert victim.read_text() == "a host file"
    assert not (tmp_path / "would-be-created").exists()
    assert (folder / "sandbox.json").read_bytes() == b'{"oom_kills": 0}' and not (folder / "sandbox.json").is_symlink()


def test_a_folder_swapped_for_a_link_is_not_opened(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "answers").symlink_to(elsewhere)
    with pytest.raises(OSError):
        open_dir(tmp_path / "answers")


def test_chown_tree_never_follows_links(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("x")
    os.chown(victim, 0, 0)
    tree = tmp_path / "work"
    tree.mkdir()
    (tree / "link").symlink_to(victim)
    (tree / "dirlink").symlink_to(tmp_path)
    if os.geteuid() != 0:
        pytest.skip("needs root to give files away")
    chown_tree(tree, 61999, 61999)
    assert victim.stat().st_uid == 0 and tmp_path.stat().st_uid == 0
    assert tree.stat().st_uid == 61999 and os.lstat(tree / "link").st_uid == 61999


# --- the warm child's channel: a cap and a deadline ---------------------------------


def test_a_flood_without_newline_ends_the_channel_quickly():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stop = threading.Event()

    def flood():
        try:
            while not stop.is_set():
                theirs.send(b"x" * 65536)
        except OSError:
            pass

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    start = time.monotonic()
    with pytest.raises(_Closed, match="longer than"):
        _Channel(ours, max_bytes=1 << 20).receive(timeout=30)
    assert time.monotonic() - start < 5
    stop.set()
    ours.close()
    theirs.close()


def test_the_deadline_holds_while_data_keeps_coming():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            theirs.send(b" ")  # whitespace: never a whole message, never over the cap soon
            time.sleep(0.001)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    start = time.monotonic()
    assert _Channel(ours).receive(timeout=0.5) is None
    assert time.monotonic() - start < 2
    stop.set()
    thread.join()


@pytest.mark.parametrize("line", [b"[1, 2]\n", b'"ok"\n', b"[" * 100_000 + b"\n", b"{bad\n"])
def test_anything_but_a_json_object_ends_the_channel(line):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.sendall(line)
    with pytest.raises(_Closed, match="unreadable message"):
        _Channel(ours).receive(timeout=5)


def test_messages_are_split_on_newlines_across_reads():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.sendall(b'{"a": 1}\n{"b"')
    channel = _Channel(ours)
    assert channel.receive(timeout=1) == {"a": 1}
    theirs.sendall(b": 2}\n")
    assert channel.receive(timeout=1) == {"b": 2}


# --- the student's environment: exact names only -------------------------------------


def test_the_environment_allow_list_names_exact_variables(monkeypatch, tmp_path):
    for key in ("TF_TOKEN_app_terraform_io", "TF_VAR_password", "GRADER_LTI_TOKEN", "LC_SECRET", "OMP_SECRET"):
        monkeypatch.setenv(key, "operator-secret")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    env = student_environment(Workdir(tmp_path, tmp_path / "work", tmp_path / "answers"))
    assert "operator-secret" not in env.values()
    assert env["OMP_NUM_THREADS"] == "2" and env["LC_ALL"] == "C.UTF-8"


# --- result names: never two submissions to one file ---------------------------------


@pytest.mark.parametrize(
    "submissions, expected",
    [
        (["a.ipynb", "b.ipynb"], {"a.ipynb": "a.json", "b.ipynb": "b.json"}),
        (["summary.ipynb"], {"summary.ipynb": "summary.ipynb.json"}),
        (
            ["summary.ipynb", "summary.ipynb.ipynb"],
            {"summary.ipynb.ipynb": "summary.ipynb.json", "summary.ipynb": "summary.ipynb~2.json"},
        ),
        (
            ["summary.ipynb", "summary.ipynb.ipynb", "summary.ipynb~2.ipynb"],
            {
                "summary.ipynb.ipynb": "summary.ipynb.json",
                "summary.ipynb~2.ipynb": "summary.ipynb~2.json",
                "summary.ipynb": "summary.ipynb~3.json",
            },
        ),
        ([".ipynb", ".ipynb.ipynb"], {".ipynb.ipynb": ".ipynb.json", ".ipynb": ".ipynb~2.json"}),
    ],
    ids=["plain", "reserved", "reserved_and_its_way_out", "chain", "empty_stem"],
)
def test_result_names_never_collide(submissions, expected):
    assert result_names(submissions) == expected
    assert len(set(result_names(submissions).values())) == len(submissions)
