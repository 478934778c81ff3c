"""What ``GET /metrics`` reports, in Prometheus' text format (prometheus-client,
on a registry of the service's own, so two services in one process, as in
tests, do not share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# the classic text format, which every Prometheus reads (what generate_latest writes)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# seconds: a warm notebook takes about half a second; a queue, or a notebook at its time limit, much longer
BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
__all__ = ["CONTENT_TYPE", "Metrics"]


class Metrics:
    def __init__(self, queued: Callable[[], int], running: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Gauge("grader_queue_depth", "Submissions waiting to be graded", registry=r).set_function(queued)
        Gauge("grader_running", "Submissions being graded now", registry=r).set_function(running)
        self.workers = Gauge("grader_workers", "Submissions graded at a time", registry=r)
        self.ready = Gauge("grader_ready", "1 once the warm parent is up and has graded its warm-up", registry=r)
        self.received = Counter("grader_submissions_received", "Submissions accepted (202)", ["assignment"], registry=r)
        self.rejected = Counter(
            "grader_submissions_rejected",
            "Submissions refused: queue_full (429), too_large (413), unauthorized (401), closed (403), unknown (404)",
            ["reason"],
            registry=r,
        )
        self.graded = Counter("grader_graded", "Results stored, by result status", ["assignment", "status"], registry=r)
        self.regraded = Counter(
            "grader_regrades", "Gradings repeated because the warm parent was lost meanwhile", registry=r
        )
        self.grading_seconds = Histogram(
            "grader_grading_seconds", "Time to grade one submission (execution and checks)", buckets=BUCKETS, registry=r
        )
        self.latency_seconds = Histogram(
            "grader_latency_seconds",
            "From the upload to the stored result (queueing included)",
            buckets=BUCKETS,
            registry=r,
        )
        self.pool_restarts = Counter(
            "grader_pool_restarts", "Warm parents started again after the previous one died", registry=r
        )
        self.pictures_removed = Counter(
            "grader_pictures_removed", "Kept answers and feedback pages removed after keep_answers_days", registry=r
        )

    def text(self) -> bytes:
        return generate_latest(self.registry)
