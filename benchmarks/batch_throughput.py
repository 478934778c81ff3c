"""Benchmark: notebooks per second of `grader batch` with each executor,
against the limit of this machine and through a running `grader serve`.

Generates two sets of N submissions: ``lesson``, the lesson's own code (the
correct notebook: what the limit runs), and ``mix``, a class's mix of correct
notebooks and typical mistakes, some of which do more than the lesson (plots,
shell escapes, tracebacks), copied from tests/files/conv2d/.  Then, in one run:

    limit                        the lesson's own code forked from a TensorFlow-loaded parent, no IPython,
                                 sandbox or grading, 2 at a time (benchmarks/lesson_limit.py), before and after
    --executor warm   --jobs 2   (forked from a parent that already imported TensorFlow), lesson and mix
    service                      the same notebooks posted to a running, warm `grader serve --workers 2`
                                 (8 connections at a time), from the first upload to the last result; lesson and mix
    --executor kernel --jobs 1   (a fresh Jupyter kernel per notebook, serial: the nbgrader/otter way), mix
    --executor kernel --jobs 2   mix

and prints wall time, notebooks/second and its ratio to the first batch line,
time to the first result, the steady rate once results flow (from the first
result to the last: what a class of thousands sees), and peak memory of the
whole process tree; then the targets on the lesson's notebooks, the code the
limit runs (batch steady rate >= 95% of the limit's, the service's end-to-end
rate >= 90% of the limit's), the same ratios for the mix, and the time from
the end of one upload to a warm, idle service to its result and to its
feedback page.
Reference answers are built before the timings start, so every configuration
grades against the same warm cache.

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
import urllib.request
from concurrent.futures import ThreadPoolExecutor
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
CONFIGS = [
    ("limit", 2, "lesson"),
    ("warm", 2, "lesson"),
    ("service", 2, "lesson"),
    ("kernel", 1, "mix"),
    ("kernel", 2, "mix"),
    ("warm", 2, "mix"),
    ("service", 2, "mix"),
    ("limit", 2, "lesson"),
]
CONNECTIONS = 8  # the service row's client: uploads in flight at a time
LATENCY_RUNS = 5


def make_submissions(folder: Path, n: int, kinds: list[str]) -> dict[str, float]:
    """N notebooks named student_XXX, of the ``kinds`` in turn; returns the score each must get."""
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
    expected: dict[str, float] = {}
    for i in range(n):
        kind = kinds[i % len(kinds)]
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
    assert proc.stdout is not None  # a pipe was asked for
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


def run_limit(n: int, jobs: int, env: dict) -> dict:
    command = [sys.executable, str(Path(__file__).with_name("lesson_limit.py")), str(n), str(jobs)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    memory = PeakMemory(proc.pid)
    memory.start()
    out, _ = proc.communicate()
    memory.running = False
    memory.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {proc.returncode}")
    ends = json.loads(out)["ends"]
    return {"wall": ends[-1], "first": ends[0], "last": ends[-1], "peak_mb": memory.peak / 2**20}


class Service:
    """A running `grader serve` on 127.0.0.1, warm (its /healthz says ready)."""

    def __init__(self, data: Path, jobs: int, env: dict):
        command = [sys.executable, "-m", "grader", "serve", "--port", "0", "--data", str(data), "--workers", str(jobs)]
        self.proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None  # a pipe was asked for
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"grader serve did not start: {line}")
        self.url = line.split("listening on ", 1)[1].split()[0]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "healthz", timeout=5):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("grader serve never became ready")

    def post(self, notebook: Path) -> str:
        request = urllib.request.Request(
            f"{self.url}assignments/conv2d/submissions?filename={notebook.name}",
            notebook.read_bytes(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["id"]

    def result(self, sid: str) -> dict:
        while True:
            with urllib.request.urlopen(f"{self.url}submissions/{sid}?wait=30", timeout=60) as response:
                if response.status == 200:
                    return json.loads(response.read())

    def feedback(self, sid: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}submissions/{sid}/feedback", timeout=60) as response:
            return response.read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def run_service(service: Service, subs: Path) -> tuple[dict, dict[str, float]]:
    notebooks = sorted(subs.glob("*.ipynb"))
    memory = PeakMemory(service.proc.pid)
    memory.start()
    start = time.monotonic()

    def graded(notebook: Path) -> tuple[str, float, float]:
        result = service.result(service.post(notebook))
        return notebook.stem, result["score"], time.monotonic() - start

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        done = list(pool.map(graded, notebooks))
    memory.running = False
    memory.join()
    ends = sorted(end for _, _, end in done)
    figures = {"wall": ends[-1], "first": ends[0], "last": ends[-1], "peak_mb": memory.peak / 2**20}
    return figures, {name: score for name, score, _ in done}


def single_notebook_latency(service: Service, notebook: Path) -> list[tuple[float, float]]:
    """(seconds to the result, seconds to the feedback page) after each upload finished, one at a time."""
    times = []
    for _ in range(LATENCY_RUNS):
        time.sleep(1.5)  # idle again, as a student finds it
        sid = service.post(notebook)
        uploaded = time.monotonic()
        service.result(sid)
        result = time.monotonic() - uploaded
        assert b"data:image/png;base64," in service.feedback(sid)
        times.append((result, time.monotonic() - uploaded))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="number of submissions (default 40)")
    parser.add_argument(
        "--config",
        action="append",
        metavar="EXECUTOR:JOBS[:NOTEBOOKS]",
        help="run only these configurations (executor: limit, kernel, warm or service; notebooks: lesson or mix, "
        "default lesson), e.g. --config warm:2:mix (default: the eight above)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the configurations this many times, interleaved: on a shared machine the limit and the "
        "grader then see the same load (the targets compare with the mean of every limit row)",
    )
    args = parser.parse_args()
    configs = [_config(c) for c in args.config] if args.config else CONFIGS
    configs = configs * args.rounds
    with tempfile.TemporaryDirectory(prefix="grader-bench-") as folder:
        tmp = Path(folder)
        expected = {
            "lesson": make_submissions(tmp / "lesson", args.n, ["correct"]),
            "mix": make_submissions(tmp / "mix", args.n, MIX),
        }
        env = dict(os.environ, GRADER_CACHE_DIR=str(tmp / "cache"), PYTHONUNBUFFERED="1")
        subprocess.run(
            [sys.executable, "-m", "grader", "validate", "conv2d"], env=env, check=True, capture_output=True
        )  # build the reference cache outside the timings
        rows: list[tuple[str, int, str, dict, list[str]]] = []
        latency: list[tuple[float, float]] = []
        for executor, jobs, notebooks in configs:
            out = tmp / f"out-{executor}-{jobs}"
            if executor == "limit":
                rows.append((executor, jobs, "lesson", run_limit(args.n, jobs, env), []))
                continue
            if executor == "service":
                service = Service(tmp / f"service-{len(rows)}", jobs, env)
                try:
                    figures, scores = run_service(service, tmp / notebooks)
                    if not latency:
                        latency = single_notebook_latency(service, FIXTURES / "correct.ipynb")
                finally:
                    service.stop()
            else:
                figures = run_batch(tmp / notebooks, out, executor, jobs, env)
                scores = {p.stem: json.loads(p.read_text())["score"] for p in out.glob("student_*.json")}
            wrong = sorted(n for n, s in expected[notebooks].items() if scores.get(n) != s)
            rows.append((executor, jobs, notebooks, figures, wrong))
    cpu = os.cpu_count()
    print(
        f"grader batch, {args.n} notebooks (lesson: the lesson's own code; mix: correct notebooks and typical "
        f"mistakes), {cpu} cores, Python {sys.version.split()[0]}"
    )
    print(
        f"{'executor':<10}{'jobs':>5}{'notebooks':>10}{'wall s':>9}{'nb/s':>8}{'ratio':>8}{'first result s':>16}"
        f"{'steady nb/s':>13}{'peak MB':>9}  scores"
    )
    kernels = [r for r in rows if r[0] == "kernel"]
    base = args.n / (kernels or rows)[0][3]["wall"]
    for executor, jobs, notebooks, f, wrong in rows:
        rate = args.n / f["wall"]
        first = f"{f['first']:.2f}" if f["first"] is not None else "n/a"
        timed = f["first"] is not None and f["last"] > f["first"]
        steady = f"{(args.n - 1) / (f['last'] - f['first']):.2f}" if timed else "n/a"
        check = "all as expected" if not wrong else f"WRONG: {', '.join(wrong)}"
        check = "(the lesson's code, not graded)" if executor == "limit" else check
        print(
            f"{executor:<10}{jobs:>5}{notebooks:>10}{f['wall']:>9.1f}{rate:>8.2f}{rate / base:>7.1f}x{first:>16}{steady:>13}"
            f"{f['peak_mb']:>9.0f}  {check}"
        )
    print(
        "nb/s and ratio (to the first kernel row): the whole command, start-up included (limit: from the first fork; "
        "service: from the first upload to a running service); steady nb/s: from the first result to the last."
    )
    targets(rows, args.n, latency)


def _config(text: str) -> tuple[str, int, str]:
    executor, jobs, *notebooks = text.split(":")
    kind = notebooks[0] if notebooks else "lesson"
    if executor not in ("limit", "kernel", "warm", "service") or kind not in ("lesson", "mix"):
        raise SystemExit(f"--config {text}: EXECUTOR:JOBS[:NOTEBOOKS], executor limit/kernel/warm/service, lesson/mix")
    return executor, int(jobs), kind


def targets(rows: list, n: int, latency: list[tuple[float, float]]) -> None:
    limits = [f for executor, _, _, f, _ in rows if executor == "limit"]
    if not limits:
        return
    steady = [(n - 1) / (f["last"] - f["first"]) for f in limits]
    whole = [n / f["wall"] for f in limits]
    limit_steady, limit_whole = sum(steady) / len(steady), sum(whole) / len(whole)
    print(
        f"limit (mean of {len(limits)} runs: {', '.join(f'{s:.2f}' for s in steady)} nb/s steady): "
        f"{limit_steady:.2f} nb/s steady, {limit_whole:.2f} nb/s from the first fork"
    )
    for notebooks in ("lesson", "mix"):
        batch = [(n - 1) / (f["last"] - f["first"]) for e, _, k, f, _ in rows if e == "warm" and k == notebooks]
        service = [n / f["wall"] for e, _, k, f, _ in rows if e == "service" and k == notebooks]
        for name, rates, limit, target in [
            ("batch warm steady", batch, limit_steady, 0.95),
            ("service end to end", service, limit_whole, 0.90),
        ]:
            if not rates:
                continue
            rate = sum(rates) / len(rates)
            verdict = "met" if rate >= target * limit else "MISSED"
            goal = f"target {target:.0%}: {verdict}" if notebooks == "lesson" else "the mix does more than the lesson"
            print(
                f"{notebooks}: {name} {rate:.2f} nb/s (mean of {', '.join(f'{r:.2f}' for r in rates)}) = "
                f"{rate / limit:.0%} of the limit ({goal})"
            )
    if latency:
        results, pages = sorted(r for r, _ in latency), sorted(p for _, p in latency)
        verdict = "met" if pages[len(pages) // 2] <= 1.0 else "MISSED"
        print(
            f"one notebook to a warm, idle service, from the end of the upload ({len(latency)} runs): result in "
            f"{', '.join(f'{r:.2f}' for r in results)} s; feedback page with pictures in "
            f"{', '.join(f'{p:.2f}' for p in pages)} s (target 1 s, median: {verdict})"
        )


if __name__ == "__main__":
    main()
