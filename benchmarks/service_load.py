"""Load test of `grader serve`: a bounded client on 127.0.0.1 (32
connections) posts N submissions at once (a mix of correct notebooks and
typical mistakes), all of them before waiting, then waits for every result.

Checks that every submission is graded with its expected score, that none is
lost (each accepted id has one result, and the service's queue holds exactly
those rows, all done), and that the grader's own memory (the service's
process, without the warm parent and the students' processes) stays flat;
prints the latency from each upload's start to its result (p50, p95, max),
the throughput, and the memory figures.  Everything stays on this machine and
stops by itself (a time limit on the whole run).

    .venv/bin/python benchmarks/service_load.py --n 200
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from batch_throughput import MIX, PeakMemory, make_submissions

CONNECTIONS = 32  # requests in flight at a time: the "bounded" client
DEADLINE = 1800  # seconds the whole run may take


class Sampler(threading.Thread):
    """The resident memory of one process, every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.process, self.interval, self.running = psutil.Process(pid), interval, True
        self.samples: list[tuple[float, float]] = []

    def run(self) -> None:
        while self.running:
            try:
                self.samples.append((time.monotonic(), self.process.memory_info().rss / 2**20))
            except psutil.Error:
                return
            time.sleep(self.interval)


def call(url: str, data: bytes | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data, headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"retry_after": exc.headers.get("Retry-After"), **json.loads(exc.read() or b"{}")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="submissions posted at once (default 200)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    give_up = time.monotonic() + DEADLINE
    with tempfile.TemporaryDirectory(prefix="grader-load-") as folder:
        tmp = Path(folder)
        expected = make_submissions(tmp / "subs", args.n, MIX)
        env = dict(os.environ, GRADER_CACHE_DIR=str(tmp / "cache"), PYTHONUNBUFFERED="1")
        subprocess.run([sys.executable, "-m", "grader", "validate", "conv2d"], env=env, check=True, capture_output=True)
        data = tmp / "service"
        command = [sys.executable, "-m", "grader", "serve", "--port", "0", "--data", str(data)]
        server = subprocess.Popen(
            [*command, "--workers", str(args.workers)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert server.stdout is not None  # a pipe was asked for
            url = server.stdout.readline().split("listening on ", 1)[1].split()[0]
            while call(url + "healthz")[0] != 200:
                time.sleep(0.2)
            warm = psutil.Process(server.pid).memory_info().rss / 2**20
            own, tree = Sampler(server.pid), PeakMemory(server.pid)
            own.start()
            tree.start()
            start = time.monotonic()
            finished: list[float] = []

            def submit(notebook: Path) -> tuple[str, str, float]:
                posted = time.monotonic()
                while True:
                    status, body = call(
                        f"{url}assignments/conv2d/submissions?filename={notebook.name}", notebook.read_bytes()
                    )
                    if status != 429 or time.monotonic() > give_up:
                        break
                    time.sleep(float(body["retry_after"] or 1))
                assert status == 202, body
                return notebook.stem, body["id"], posted

            def wait(posted: tuple[str, str, float]) -> tuple[str, str, float, float]:
                name, sid, at = posted
                while time.monotonic() < give_up:
                    status, result = call(f"{url}submissions/{sid}?wait=30")
                    if status == 200:
                        finished.append(time.monotonic())
                        return name, sid, result["score"], time.monotonic() - at
                raise SystemExit("out of time")

            with ThreadPoolExecutor(CONNECTIONS) as pool:  # all of them first, then every result
                accepted = list(pool.map(submit, sorted((tmp / "subs").glob("*.ipynb"))))
                uploads = time.monotonic() - start
                done = list(pool.map(wait, accepted))
            wall = time.monotonic() - start
            time.sleep(1.0)  # a last sample at rest
            own.running = tree.running = False
            own.join()
            tree.join()
            rows = sqlite3.connect(data / "queue.sqlite").execute("SELECT id, state FROM submissions").fetchall()
        finally:
            server.terminate()
            server.wait(60)
    ids = [sid for _, sid, _, _ in done]
    wrong = sorted(name for name, _, score, _ in done if score != expected[name])
    lost = args.n - len(set(ids))
    stored = {sid for sid, state in rows if state == "done"}
    latencies = sorted(seconds for *_, seconds in done)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * len(latencies)) - 1)]

    def memory_when(fraction: float) -> float:
        at = sorted(finished)[max(0, round(fraction * args.n) - 1)]
        return next((mb for when, mb in own.samples if when >= at), own.samples[-1][1])

    settled = memory_when(0.1)  # one-time costs (imports, first pages) are paid by then
    trend = [memory_when(f) for f in (0.25, 0.5, 0.75, 1.0)]
    peak, last = max(mb for _, mb in own.samples), own.samples[-1][1]
    print(
        f"grader serve load test: {args.n} submissions posted at once by {CONNECTIONS} connections on 127.0.0.1, "
        f"{args.workers} workers, {os.cpu_count()} cores"
    )
    print(
        f"graded: {len(done)}/{args.n}, scores as expected: {len(done) - len(wrong)}/{len(done)}"
        + (f" (WRONG: {', '.join(wrong)})" if wrong else "")
        + f", lost: {lost}, rows in the queue: {len(rows)}, done: {len(stored & set(ids))}"
    )
    print(
        f"latency from upload to result: p50 {statistics.median(latencies):.1f} s, p95 {p95:.1f} s, "
        f"max {latencies[-1]:.1f} s; all {args.n} accepted in {uploads:.1f} s, graded at {args.n / wall:.2f} "
        f"submissions/s over {wall:.1f} s"
    )
    print(
        f"grader process memory: {warm:.0f} MB warm before the load, {settled:.0f} MB after the first 10% of results, "
        f"then {' / '.join(f'{mb:.0f}' for mb in trend)} MB at 25/50/75/100%, {peak:.0f} MB peak, {last:.0f} MB at the "
        f"end ({last - settled:+.0f} MB after the first 10%); whole tree peak {tree.peak / 2**20:.0f} MB"
    )


if __name__ == "__main__":
    main()
