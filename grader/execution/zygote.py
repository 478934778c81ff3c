"""The warm executor's other side: the code that runs in the zygote and in
the children it forks (see :mod:`grader.execution.warm` for the design).

Started as ``python -m grader.execution.zygote FD SCRATCH`` by :class:`grader.execution.warm.WarmExecutor`.
This module imports nothing but the standard library at the top, so the
zygote's seconds go to what notebooks need (TensorFlow, Keras, matplotlib,
IPython) and not to the grader's own modules (pydantic, nbformat); what the
children need of ours (:mod:`grader.execution.capture`, :mod:`grader.execution.sandbox`) is
imported in :func:`_preload`.
"""

from __future__ import annotations

import builtins
import ctypes
import importlib
import inspect
import io
import json
import os
import select
import shutil
import signal
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, overload

if TYPE_CHECKING:  # only for the type checker: the zygote imports IPython in _preload
    from IPython.core.interactiveshell import InteractiveShell

PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # where ``python -m grader.execution.zygote`` finds the package
VALUE_LIMIT = 2000  # characters of an exception's value sent back by the child
PR_SET_CHILD_SUBREAPER = 36
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
OUTPUT_LIMIT = 4 * 2**20  # characters of the student's Python output kept in the log (as the kernel executor)
MESSAGE_LIMIT = 1 << 20  # bytes of one channel message (a reply is a few hundred; a cell's source is the largest)
# Modules that notebooks import lazily, inside the libraries, at their first
# traceback, `%time`, `%matplotlib` or `model.predict`: imported once in the
# zygote rather than in every child (a NameError's traceback was mostly
# importing stack_data; README's Performance has the figures).  Imports only:
# no code of the student's kind runs before the fork.
LAZY_IMPORTS = (
    "stack_data",
    "executing",
    "pure_eval",
    "asttokens",
    "pygments.formatters.terminal256",
    "pygments.styles",
    "pygments.console",  # IPython's tracebacks
    "IPython.core.logger",
    "IPython.core.magics.pylab",
    "IPython.utils.timing",
    "tensorflow.python.data.ops.concatenate_op",
    "tensorflow.python.data.ops.flat_map_op",
    "tensorflow.python.data.ops.from_tensors_op",
    "tensorflow.python.data.ops.range_op",
    "tensorflow.python.data.ops.zip_op",  # Keras's predict() on arrays
)


class _Closed(Exception):
    """The other end of a channel is gone (or sent something unreadable)."""


class _Refused(_Closed):
    """The other end sent what the channel does not accept (too long, not a JSON object)."""


class _Channel:
    """JSON objects, one per line, over a stream socket.  The other end may be
    the student's code (it holds its end as a file descriptor), so a message
    is at most ``max_bytes`` long and must be a JSON object: anything else
    ends the channel."""

    def __init__(self, sock: socket.socket, max_bytes: int = MESSAGE_LIMIT) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.max_bytes = max_bytes

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message).encode("ascii") + b"\n")

    @overload
    def receive(self, timeout: None = None, watch: Sequence[int] = ()) -> dict[str, Any]: ...

    @overload
    def receive(self, timeout: float, watch: Sequence[int] = ()) -> dict[str, Any] | None: ...

    def receive(self, timeout: float | None = None, watch: Sequence[int] = ()) -> dict[str, Any] | None:
        """The next message, or None after ``timeout`` seconds (however much
        arrives meanwhile).  Raises :class:`_Closed` at end of file, on a
        message too long or not a JSON object, or when a watched pidfd says
        the process exited with no full message left to read."""
        deadline = None if timeout is None else time.monotonic() + timeout
        end = self.buffer.find(b"\n")
        while end < 0:
            if len(self.buffer) > self.max_bytes:
                raise _Refused(f"a message longer than {self.max_bytes} bytes")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            ready = _readable([self.sock.fileno(), *watch], left)
            if not ready:
                return None
            if self.sock.fileno() not in ready:
                raise _Closed("the process exited")
            data = self.sock.recv(1 << 16)
            if not data:
                raise _Closed("end of file")
            searched = len(self.buffer)
            self.buffer += data
            end = self.buffer.find(b"\n", searched)  # only the new bytes: no quadratic rescans
        if end > self.max_bytes:
            raise _Refused(f"a message longer than {self.max_bytes} bytes")
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            raise _Refused("an unreadable message") from None
        if not isinstance(message, dict):
            raise _Refused("an unreadable message")
        return message

    def close(self) -> None:
        self.sock.close()


def _readable(fds: Sequence[int], timeout: float | None) -> set[int]:
    """Those of ``fds`` ready to read (or at end of file) within ``timeout`` seconds."""
    poller = select.poll()  # not select(): no limit on descriptor numbers
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return {fd for fd, _ in poller.poll(None if timeout is None else timeout * 1000)}


# --------------------------------------------------------------------------- zygote side


def _zygote_main(fd: int, scratch: str) -> None:
    """Entry point of ``python -m grader.execution.zygote FD SCRATCH``: preload, then serve
    fork and sweep requests until the grader closes the socket; then remove
    the scratch folder (the grader may have died without doing it)."""
    control = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _preload()
        _become_subreaper()
    except BaseException as exc:
        traceback.print_exc()
        control.send(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
        return
    control.send(json.dumps({"ready": os.getpid()}).encode())
    _serve(control)
    shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # nothing left to clean up: skip TensorFlow's and Python's teardown, which the grader would wait for


def _preload() -> None:
    """Import what the notebooks import and prepare what every child would
    otherwise redo (the IPython shell, inspect's module cache); run no
    TensorFlow op: its runtime and thread pools do not survive a fork."""
    import gc

    import matplotlib

    matplotlib.use("Agg")
    import IPython.core.interactiveshell  # noqa: F401
    import matplotlib.pyplot
    import matplotlib_inline.backend_inline  # noqa: F401
    import numpy  # noqa: F401
    import pexpect  # noqa: F401  (IPython runs shell escapes, !cmd, through it)
    import tensorflow
    import tensorflow.keras.layers
    import tensorflow.keras.models  # noqa: F401
    import traitlets.config  # noqa: F401

    from grader.execution import (
        sandbox,
    )

    for name in LAZY_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception:  # another version of a library may not have it: the child imports what it needs
            pass
    try:
        import PIL.Image

        PIL.Image.preinit()  # the image plugins a figure's PNG needs, imported at the first plot otherwise
    except Exception:
        pass
    # A traceback asks inspect which module each frame belongs to; the first
    # such question resolves the real path of every module loaded (thousands
    # with TensorFlow, in every child whose notebook raised).  Ask it here,
    # once: inspect keeps the answers.
    inspect.getmodule(compile("None", "<grader warm-up>", "eval"))

    sandbox.probe()  # cached: children do not fork again to find out
    _make_shell()  # pristine (no cell ever runs here); each child gets its own copy, see _adopt_shell
    gc.freeze()  # children do not copy pages just to scan the preloaded objects (no collect first: it costs more than it saves)


def _become_subreaper() -> None:
    """Orphans of the student's processes are re-parented to the zygote, which
    kills and reaps them in :func:`_sweep` (Linux only; harmless elsewhere)."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _serve(control: socket.socket) -> None:
    """Answer requests, one at a time, until the grader is gone (end of file,
    or SIGTERM); then kill whatever is left."""
    running: set[int] = set()  # children whose submission is not finished
    try:
        while True:
            if _dying and not _readable([control.fileno()], REAP_INTERVAL):
                _reap_dying()
                continue
            data, fds, _, _ = socket.recv_fds(control, 1 << 16, 4)
            if not data:
                break
            control.send(json.dumps(_handle_request(json.loads(data), fds, control, running)).encode())
            _reap_dying()
    except (OSError, SystemExit):
        pass
    finally:
        _sweep(None, set())  # nothing may outlive the grader


# Children born as PID 1 of their own PID namespace, and the scratch root of
# their submission: once reaped, their sandbox is released here (no
# supervising process of theirs is left to do it).
_released_by_us: dict[int, str] = {}
# Of those, the ones killed and not reaped yet: a process the size of the
# warm parent takes milliseconds to die, which the sweep does not wait for.
_dying: set[int] = set()
REAP_INTERVAL = 0.05  # seconds between looks at the dying while no request comes


def _handle_request(
    request: dict[str, Any], fds: list[int], control: socket.socket, running: set[int]
) -> dict[str, Any]:
    """Fork a child for the socket passed along, or sweep a finished one."""
    if request.get("fork") and len(fds) == 1:
        pid = _fork_child(control, fds[0], request.get("isolate_root"))
        running.add(pid)
        return {"pid": pid}
    for fd in fds:
        os.close(fd)
    running.discard(request.get("sweep"))
    return {"swept": _sweep(request.get("sweep"), running)}


def _fork_child(control: socket.socket, fd: int, isolate_root: str | None = None) -> int:
    """Fork a child for the channel ``fd``; with ``isolate_root`` (the
    scratch root of a sandboxed submission), as PID 1 of a new PID namespace."""
    from grader.execution.sandbox import pid_namespace_for_next_fork

    sys.stdout.flush()
    sys.stderr.flush()
    namespaced = pid_namespace_for_next_fork(isolate_root is not None)
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            control.close()
            _child_main(fd)
        except BaseException:
            traceback.print_exc()
            status = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)  # never return into the zygote's loop
    os.close(fd)
    if namespaced:
        assert isolate_root is not None  # a namespace is asked for only with a scratch root
        _released_by_us[pid] = isolate_root
        pid_namespace_for_next_fork(False)  # nothing else of ours goes into it
    return pid


def _sweep(session: int | None, running: set[int], timeout: float = 10.0) -> int:
    """Kill and reap what a finished submission left: every process of its
    session (the child made itself a session leader), and every child of the
    zygote that belongs to no running submission (processes that left the
    session and were re-parented here, the zygote being a subreaper).
    Repeated until none is left, as killing a parent orphans its children
    (except for a child born in its own PID namespace: see below).
    Returns how many processes were killed."""
    if session in _released_by_us:
        # PID 1 of its own PID namespace: when it dies the kernel kills every
        # process it started (none can leave the namespace), so there is
        # nothing to look for.  It is reaped, and its sandbox released, later.
        try:
            os.kill(session, signal.SIGKILL)
        except OSError:
            pass
        _dying.add(session)
        return 1
    me = os.getpid()
    killed = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doomed = [
            (pid, ppid)
            for pid, ppid, sid in _processes()
            if (ppid == me and pid not in running) or (session is not None and sid == session)
        ]
        if not doomed:
            break
        for pid, _ in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        killed += len(doomed)
        time.sleep(0.002)
        for pid, ppid in doomed:
            if ppid == me:
                _reap(pid)
    return killed


def _reap_dying() -> None:
    for pid in list(_dying):
        _reap(pid)


def _reap(pid: int) -> None:
    """Collect a dead child (if it is dead), and release its sandbox."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        reaped, status = pid, 0
    if reaped:
        _dying.discard(pid)
    if reaped and pid in _released_by_us:
        from grader.execution.sandbox import release

        release(Path(_released_by_us.pop(pid)), status)


def _processes() -> list[tuple[int, int, int]]:
    """(pid, parent pid, session id) of every process, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()  # state ppid pgrp session ...
            found.append((int(entry), int(fields[1]), int(fields[3])))
        except (OSError, IndexError, ValueError):
            continue
    return found


# --------------------------------------------------------------------------- child side

_interruptible = False  # SIGINT raises KeyboardInterrupt only while a unit runs


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    __tracebackhide__ = True  # IPython leaves this frame out of the student's traceback
    if _interruptible:
        raise KeyboardInterrupt


def _child_main(fd: int) -> None:
    """A fresh submission's process: own session, the workdir, the student's
    environment, stdout and stderr to the log, the sandbox (which forks, and
    the rest runs in its isolated grandchild, unless this process was born in
    its own PID namespace); then one unit per message."""
    os.setsid()
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    channel = _Channel(socket.socket(fileno=fd), max_bytes=2**40)  # what the grader sends: cells of any size
    setup = channel.receive()
    _redirect_output(setup["log"])
    _cap_python_output(OUTPUT_LIMIT)
    os.chdir(setup["cwd"])
    os.environ.clear()
    os.environ.update(setup["env"])
    if setup["sandbox"]:
        from grader.execution.sandbox import Policy, enter

        enter(Policy.from_json(setup["sandbox"]["policy"]), Path(setup["root"]), setup["sandbox"]["uid"])
    _set_path()
    shell = _adopt_shell()
    channel.send({"ready": os.getpid()})
    pid = os.getpid()
    while True:
        try:
            message = channel.receive()
        except _Closed:
            return
        reply = _run_unit(shell, message)
        if os.getpid() != pid:
            os._exit(0)  # a process the student forked must not answer for us
        sys.stdout.flush()
        sys.stderr.flush()
        channel.send(reply)


def _set_path() -> None:
    """sys.path as in a kernel: without the zygote's directory, with the
    working directory ('') just before site-packages (as IPython puts it)."""
    if sys.path and sys.path[0] == str(PACKAGE_PARENT):  # put there by ``python -m``
        del sys.path[0]
    index = next((i for i, p in enumerate(sys.path) if Path(p).name in ("site-packages", "dist-packages")), 0)
    sys.path.insert(index, "")


def _redirect_output(path: str) -> None:
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)


class _CappedStream(io.TextIOBase):
    """sys.stdout / sys.stderr for the student's code: at most ``budget[0]``
    characters in all (shared by both), then one truncation marker, as the
    kernel executor keeps at most that much output."""

    def __init__(self, stream: TextIO, budget: list[int], limit: int) -> None:
        self.stream, self.budget, self.limit = stream, budget, limit

    def write(self, text: str) -> int:
        if self.budget[0] > 0:
            kept = text[: self.budget[0]]
            self.budget[0] -= len(kept)
            self.stream.write(kept)
            if self.budget[0] <= 0:
                self.stream.write(f"\n[grader: output truncated after {self.limit} characters]\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # typeshed: an attribute; at run time a read-only property
        return self.stream.encoding


def _cap_python_output(limit: int) -> None:
    budget = [limit]
    sys.stdout = _CappedStream(sys.stdout, budget, limit)
    sys.stderr = _CappedStream(sys.stderr, budget, limit)


def _make_shell() -> InteractiveShell:
    """An IPython shell as a notebook has it: history in memory, no colours,
    matplotlib's inline backend active (ipykernel's default), no stdin."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class NotebookShell(InteractiveShell):
        """What ipykernel's shell adds that notebooks rely on, and no more."""

        def enable_gui(self, gui: str | None = None) -> None:
            pass  # figures are never shown while grading; the bare shell refuses even inline

        def ask_exit(self) -> None:
            pass  # exit() asks the notebook's front end to close; nbclient ignores it too

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    config.InteractiveShell.colors = "nocolor"
    shell = NotebookShell.instance(config=config)
    shell.enable_matplotlib(INLINE_BACKEND)
    builtins.input = _no_input
    return shell


def _adopt_shell() -> InteractiveShell:
    """The shell the zygote made, brought to this submission: its working
    directory, home and IPython profile (the zygote's are its own scratch
    folder).  Making one is a child's cost; copying it with the fork, nothing."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.paths import get_ipython_dir
    from IPython.utils.path import get_home_dir

    shell = InteractiveShell.instance() if InteractiveShell.initialized() else _make_shell()
    shell.starting_dir = os.getcwd()
    history = shell.history_manager
    assert history is not None  # every shell made by _make_shell has one
    history.dir_hist[:] = [Path.cwd()]  # the notebook's _dh
    shell.home_dir = get_home_dir()
    shell.ipython_dir = get_ipython_dir()  # from this submission's IPYTHONDIR
    try:
        shell.init_profile_dir(None)
    except Exception:  # an unwritable IPYTHONDIR: a kernel would start without a profile too
        shell.profile_dir = None
    return shell


def _no_input(prompt: object = "") -> NoReturn:
    """``input()`` as a notebook graded by nbclient answers it."""
    from IPython.core.error import StdinNotImplementedError

    raise StdinNotImplementedError("raw_input was called, but this frontend does not support input requests.")


def _run_unit(shell: InteractiveShell, message: dict[str, Any]) -> dict[str, Any]:
    """Run a cell, or capture answers; the outcome as a message."""
    global _interruptible
    error: BaseException | None = None
    try:
        _interruptible = True
        if "cell" in message:
            result = shell.run_cell(message["cell"], store_history=True)
            error = result.error_before_exec or result.error_in_exec
        else:
            from grader.execution.capture import capture

            capture(
                shell.user_ns,
                message["capture"],
                message["folder"],
                message["point"],
                message["max_bytes"],
                message.get("weights"),
            )
    except BaseException as exc:  # an interrupt during a capture, or IPython itself failing
        error = exc
    finally:
        _interruptible = False
    if error is None:
        return {"status": "ok"}
    return {"status": "error", "ename": type(error).__name__, "evalue": _safe_str(error)[:VALUE_LIMIT]}


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except BaseException:
        return f"<{type(value).__name__} whose str() failed>"


if __name__ == "__main__":
    _zygote_main(int(sys.argv[1]), sys.argv[2])
