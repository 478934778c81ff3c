"""The limit for faithful execution on this machine: the lesson's own code
(the solution notebook's code cells, as one script), run N times, each in a
child forked from a parent that imported NumPy, TensorFlow and Keras (and
the TensorFlow modules Keras's ``predict`` imports at its first call, as the
grader's warm parent does) and ran no TensorFlow op, JOBS children at a time.  No IPython, no sandbox, no
grading: what no grader can beat while it runs what the student wrote.

    .venv/bin/python benchmarks/lesson_limit.py N JOBS

prints one JSON object: seconds from the first fork to each child's exit
(sorted), and the parent's import time.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lesson_code() -> str:
    notebook = json.loads((ROOT / "solutions" / "conv2d" / "conv2d.ipynb").read_text())
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    return "\n".join(cells)


def main() -> None:
    n, jobs = int(sys.argv[1]), int(sys.argv[2])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as the grader sets it for students
    t0 = time.monotonic()
    import numpy  # noqa: F401
    import tensorflow
    import tensorflow.keras.layers
    import tensorflow.keras.models  # noqa: F401

    sys.path.insert(0, str(ROOT))
    from grader.execution.zygote import LAZY_IMPORTS  # the standard library only, at the top

    for name in LAZY_IMPORTS:  # what the grader's warm parent imports ahead for Keras (no IPython's)
        if name.startswith("tensorflow."):
            importlib.import_module(name)
    gc.freeze()  # as the warm parent does: children do not copy pages to scan the preloaded objects
    imported = time.monotonic() - t0
    code = compile(lesson_code(), "lesson", "exec")
    work = Path(tempfile.mkdtemp(prefix="grader-limit-"))
    shutil.copy(ROOT / "assignments" / "conv2d" / "data" / "ascent.npy", work / "ascent.npy")
    devnull = os.open(os.devnull, os.O_WRONLY)
    start = time.monotonic()
    running: set[int] = set()
    ends: list[float] = []
    launched = 0
    while len(ends) < n:
        while launched < n and len(running) < jobs:
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    os.chdir(work)
                    os.dup2(devnull, 1)
                    os.dup2(devnull, 2)  # as the grader's children, whose output goes to a log
                    warnings.simplefilter("ignore")  # PYTHONWARNINGS=ignore in the grader's student environment
                    exec(code, {"__name__": "__main__"})
                    status = 0
                finally:
                    os._exit(status)
            running.add(pid)
            launched += 1
        pid, status = os.wait()
        if status != 0:
            raise SystemExit(f"the lesson's code failed in a child (status {status})")
        running.discard(pid)
        ends.append(time.monotonic() - start)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"import_s": imported, "ends": sorted(ends)}))


if __name__ == "__main__":
    main()
