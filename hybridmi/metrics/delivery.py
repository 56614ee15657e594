"""Getting a registry to Prometheus: push to a Pushgateway off the training thread, or serve /metrics.

Monitoring must never fail or slow a stage: every push runs with a short timeout on a daemon thread,
an unreachable gateway logs ONE warning per pusher (later failures only at debug level), and the
final push and the group deletion are bounded in wall time (DNS lookups included).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, delete_from_gateway, push_to_gateway, start_http_server

log = logging.getLogger(__name__)

JOB = "hybridmi"


def run_bounded(fn: Callable[[], None], *, timeout_s: float, what: str) -> bool:
    """Run ``fn`` on a daemon thread and wait at most ``timeout_s``; True when it returned in time without raising."""
    outcome: list[bool] = []

    def target() -> None:
        try:
            fn()
            outcome.append(True)
        except Exception as exc:  # reported by the caller's policy, never raised into a stage
            log.debug("%s failed: %s", what, exc)
            outcome.append(False)

    thread = threading.Thread(target=target, name=f"hybridmi-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        log.debug("%s still running after %.1f s; abandoned", what, timeout_s)
        return False
    return bool(outcome and outcome[0])


class Pusher:
    """Push ``registry`` to a Pushgateway under ``grouping_key`` every ``interval_s`` and on demand.

    url: ``host:port`` or ``http(s)://host:port``; interval_s: seconds between background pushes;
    timeout_s: HTTP timeout of one push (and the wall-time bound of each push).
    """

    def __init__(
        self,
        url: str,
        *,
        registry: CollectorRegistry,
        grouping_key: dict[str, str],
        job: str = JOB,
        interval_s: float = 15.0,
        timeout_s: float = 2.0,
    ) -> None:
        if not url or not url.strip():
            raise ValueError(f"pushgateway url {url!r} is empty")
        if interval_s <= 0:
            raise ValueError(f"push interval {interval_s} s is not positive")
        if timeout_s <= 0:
            raise ValueError(f"push timeout {timeout_s} s is not positive")
        self.url = url.strip()
        self.registry = registry
        self.grouping_key = dict(grouping_key)
        self.job = job
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.pushes_ok = 0
        self.pushes_failed = 0
        self._warned = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background push loop (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="hybridmi-pusher", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.push()

    def _report_failure(self, action: str, exc_text: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "Pushgateway %s unreachable (%s: %s); training continues, further failures are logged at debug level",
                self.url,
                action,
                exc_text,
            )
        else:
            log.debug("Pushgateway %s %s failed: %s", self.url, action, exc_text)

    def _call(self, action: str, fn: Callable[[], None], timeout_s: float) -> bool:
        errors: list[str] = []

        def guarded() -> None:
            try:
                fn()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                raise

        with self._lock:
            ok = run_bounded(guarded, timeout_s=timeout_s, what=f"pushgateway-{action}")
            if ok:
                self.pushes_ok += action == "push"
            else:
                self.pushes_failed += action == "push"
                self._report_failure(action, errors[0] if errors else f"no answer within {timeout_s:.1f} s")
        return ok

    def push(self, *, timeout_s: float | None = None) -> bool:
        """Replace the group's metrics on the gateway with the registry's; False (never an exception) on failure."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        return self._call(
            "push",
            lambda: push_to_gateway(
                self.url, job=self.job, registry=self.registry, grouping_key=self.grouping_key, timeout=timeout
            ),
            timeout + 0.5,
        )

    def delete(self, *, timeout_s: float | None = None) -> bool:
        """Delete the group from the gateway; False on failure."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        return self._call(
            "delete",
            lambda: delete_from_gateway(self.url, job=self.job, grouping_key=self.grouping_key, timeout=timeout),
            timeout + 0.5,
        )

    def stop(self) -> None:
        """Stop the background loop (waits at most one push timeout for a push in flight)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1.0)
            self._thread = None


def serve_metrics(registry: CollectorRegistry, *, port: int, addr: str = "0.0.0.0") -> WSGIServer:
    """Serve ``registry`` at http://addr:port/metrics on a daemon thread; close with ``server.shutdown()``."""
    if not 0 < port <= 65535:
        raise ValueError(f"metrics port {port} is not in 1..65535")
    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise ValueError(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}") from None
    log.info("serving metrics at http://%s:%d/metrics", addr, port)
    return server
