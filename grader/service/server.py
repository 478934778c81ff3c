"""Putting the service together and running it on uvicorn.

:func:`prepare` does everything that can refuse (the address, the
assignments, the environment, the data folder, the port) before anything is
served, so a mistake is a message and an exit code, not a half-started
service; :meth:`Service.run` serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from grader.errors import ServiceError
from grader.execution.base import Executor
from grader.service.access import check_binding
from grader.settings import ServeSettings

if TYPE_CHECKING:
    import uvicorn

    from grader.service.metrics import Metrics
    from grader.service.pool import GradingPool, Served
    from grader.service.store import Store

REMOVE_EVERY = 3600.0  # seconds between looks for pictures past their time, at most
log = logging.getLogger(__name__)


@dataclass
class Service:
    url: str
    served: dict[str, Served]
    store: Store
    pool: GradingPool
    server: uvicorn.Server
    listener: socket.socket
    metrics: Metrics
    keep_answers_days: float | None = None

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM, or until the grading pool fails to
        start (raised as :class:`ServiceError`: a service that cannot grade
        should not look alive; what it accepted meanwhile stays queued)."""
        stop = threading.Event()
        remover = threading.Thread(target=self._remove_old_pictures, args=(stop,), name="grader-retention")
        if self.keep_answers_days is not None:
            remover.start()
        try:
            self.server.run(sockets=[self.listener])
        finally:
            stop.set()
            if remover.is_alive():
                remover.join()
            self.listener.close()
            self.store.close()
        if self.pool.failed:
            raise ServiceError(f"the grading pool could not start: {self.pool.failed}")

    def _remove_old_pictures(self, stop: threading.Event) -> None:
        """At start and then ten times per retention period (at most hourly):
        the pictures of submissions graded longer ago than ``keep_answers_days``."""
        from grader.service.store import DAY, graded_before

        days = self.keep_answers_days
        assert days is not None  # started only then
        while True:
            try:
                self.metrics.pictures_removed.inc(self.store.remove_pictures(graded_before(days)))
            except Exception:  # a full or read-only disk: grading goes on, the next look tries again
                log.exception("grader serve: could not remove old pictures")
            if stop.wait(min(REMOVE_EVERY, days * DAY / 10)):
                return


def prepare(
    settings: ServeSettings,
    executor: Executor,
    *,
    cell_timeout: float | None = None,
    notebook_timeout: float | None = None,
) -> Service:
    check_binding(settings)
    try:
        import uvicorn

        from grader.service.app import Waiters, create_app
    except ImportError as exc:
        raise ServiceError(f"grader serve needs the [serve] extra ({exc.name} is missing): pip install 'grader[serve]'")
    from grader.service.metrics import Metrics
    from grader.service.pool import GradingPool, load_served
    from grader.service.store import Store
    from grader.service.views import FeedbackPages

    served = load_served(settings.assignments, grading=settings.workers > 0)
    store = Store(settings.data_dir)
    counts = store.counts
    metrics = Metrics(queued=lambda: counts()["queued"], running=lambda: counts()["running"])
    waiters = Waiters()
    pages = FeedbackPages(store, served, settings.keep_answers_days)
    pool = GradingPool(
        store,
        served,
        executor,
        metrics,
        workers=settings.workers,
        cell_timeout=cell_timeout,
        notebook_timeout=notebook_timeout,
        on_done=waiters.wake,
        when_idle=pages.prepare,
        on_failure=lambda: setattr(server, "should_exit", True),
    )
    pool.recover()  # before the first new submission: the queue keeps its order
    app = create_app(settings, store, pool, served, metrics, waiters, pages)
    listener = _listen(settings.host, settings.port)
    host, port = listener.getsockname()[:2]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,  # request lines carry submission ids, which are what lets their holder read results
        proxy_headers=True,  # X-Forwarded-Proto from a reverse proxy on this machine (forwarded_allow_ips)
        timeout_graceful_shutdown=15,
    )
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    return Service(
        f"http://{shown}:{port}/", served, store, pool, server, listener, metrics, settings.keep_answers_days
    )


def _listen(host: str, port: int) -> socket.socket:
    """Bind now: a port in use is an error before anything starts, and port 0 picks a free one."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    listener.set_inheritable(False)
    return listener
