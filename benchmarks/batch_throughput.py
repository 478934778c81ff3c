"""Benchmark: notebooks per second of `grader batch` with each executor.

Generates N submissions (a mix of correct notebooks and typical mistakes,
copied from tests/files/conv2d/), then grades the same folder, in one run, with

    --executor kernel --jobs 1   (a fresh Jupyter kernel per notebook, serial: the nbgrader/otter way)
    --executor kernel --jobs 2
    --executor warm   --jobs 2   (forked from a parent that already imported TensorFlow)

and prints wall time, notebooks/second and its ratio to the first line, time
to the first result, the steady rate once results flow (from the first result
to the last: what a class of thousands sees), and peak memory of the whole
process tree.  Reference answers are built before
the timings start, so every configuration grades against the same warm cache.

    .venv/bin/python benchmarks/batch_throughput.py --n 40
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "files" / "conv2d"
MIX = [
    "correct",
    "correct",
    "correct",
    "swapped_strides",
    "no_same_padding",
    "normalized_kernel",
    "lesson_literal_random_kernel",
    "tf_tensor_outputs",
    "magics_and_plots",
    "error_in_unrelated_cell",
]
CONFIGS = [("kernel", 1), ("kernel", 2), ("warm", 2)]


def make_submissions(folder: Path, n: int) -> dict[str, float]:
    """N notebooks named student_XXX; returns the score each must get."""
    expected_scores = {
        "correct": 10,
        "swapped_strides": 5,
        "no_same_padding": 7,
        "normalized_kernel": 6,
        "lesson_literal_random_kernel": 8,
        "tf_tensor_outputs": 10,
        "magics_and_plots": 10,
        "error_in_unrelated_cell": 10,
    }
    folder.mkdir(parents=True)
    expected = {}
    for i in range(n):
        kind = MIX[i % len(MIX)]
        name = f"student_{i:03d}_{kind}"
        shutil.copy(FIXTURES / f"{kind}.ipynb", folder / f"{name}.ipynb")
        expected[name] = expected_scores[kind]
    return expected


class PeakMemory(threading.Thread):
    """Polls the resident memory of a process and all its descendants."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak, self.running = pid, interval, 0, True

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while self.running:
            total = 0
            try:
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            time.sleep(self.interval)


def run_batch(subs: Path, out: Path, executor: str, jobs: int, env: dict) -> dict:
    command = [
        sys.executable,
        "-m",
        "grader",
        "batch",
        str(subs),
        "--assignment",
        "conv2d",
        "--out",
        str(out),
        "--executor",
        executor,
        "--jobs",
        str(jobs),
        "--force",
    ]
    start = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    memory = PeakMemory(proc.pid)
    memory.start()
    first = last = None
    for line in proc.stdout:  # progress lines arrive as each submission finishes
        if line.startswith("[") and "/" in line.split()[0]:
            last = time.monotonic() - start
            first = last if first is None else first
    proc.wait()
    wall = time.monotonic() - start
    memory.running = False
    memory.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {proc.returncode}")
    return {"wall": wall, "first": first, "last": last, "peak_mb": memory.peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="number of submissions (default 40)")
    parser.add_argument(
        "--config",
        action="append",
        metavar="EXECUTOR:JOBS",
        help="run only these configurations, e.g. --config warm:2 (default: the three above)",
    )
    args = parser.parse_args()
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.config] if args.config else CONFIGS
    with tempfile.TemporaryDirectory(prefix="grader-bench-") as tmp:
        tmp = Path(tmp)
        expected = make_submissions(tmp / "subs", args.n)
        env = dict(os.environ, GRADER_CACHE_DIR=str(tmp / "cache"), PYTHONUNBUFFERED="1")
        subprocess.run(
            [sys.executable, "-m", "grader", "validate", "conv2d"], env=env, check=True, capture_output=True
        )  # build the reference cache outside the timings
        rows = []
        for executor, jobs in configs:
            out = tmp / f"out-{executor}-{jobs}"
            figures = run_batch(tmp / "subs", out, executor, jobs, env)
            scores = {p.stem: json.loads(p.read_text())["score"] for p in out.glob("student_*.json")}
            wrong = sorted(n for n, s in expected.items() if scores.get(n) != s)
            rows.append((executor, jobs, figures, wrong))
    cpu = os.cpu_count()
    print(
        f"grader batch, {args.n} notebooks (mix of correct and typical mistakes), {cpu} cores, "
        f"Python {sys.version.split()[0]}"
    )
    print(
        f"{'executor':<10}{'jobs':>5}{'wall s':>9}{'nb/s':>8}{'ratio':>8}{'first result s':>16}"
        f"{'steady nb/s':>13}{'peak MB':>9}  scores"
    )
    base = args.n / rows[0][2]["wall"]
    for executor, jobs, f, wrong in rows:
        rate = args.n / f["wall"]
        first = f"{f['first']:.2f}" if f["first"] is not None else "n/a"
        timed = f["first"] is not None and f["last"] > f["first"]
        steady = f"{(args.n - 1) / (f['last'] - f['first']):.2f}" if timed else "n/a"
        check = "all as expected" if not wrong else f"WRONG: {', '.join(wrong)}"
        print(
            f"{executor:<10}{jobs:>5}{f['wall']:>9.1f}{rate:>8.2f}{rate / base:>7.1f}x{first:>16}{steady:>13}"
            f"{f['peak_mb']:>9.0f}  {check}"
        )
    print("nb/s and ratio: the whole command, start-up included; steady nb/s: from the first result to the last.")


if __name__ == "__main__":
    main()
