"""Getting a registry to Prometheus: push to a Pushgateway off the training thread, or serve /metrics."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, delete_from_gateway, push_to_gateway, start_http_server
from prometheus_client.exposition import basic_auth_handler, default_handler

from hybridmi.errors import UsageError

log = logging.getLogger(__name__)

JOB = "hybridmi"
USERNAME_VAR, PASSWORD_VAR = "HYBRIDMI_PUSHGATEWAY_USERNAME", "HYBRIDMI_PUSHGATEWAY_PASSWORD"


def gateway_auth(env: Mapping[str, str]) -> tuple[str, str] | None:
    """Basic-auth credentials for the Pushgateway from the environment (a Kubernetes Secret), or None."""
    username, password = env.get(USERNAME_VAR, ""), env.get(PASSWORD_VAR, "")
    if bool(username) != bool(password):
        raise UsageError(f"set both {USERNAME_VAR} and {PASSWORD_VAR}, or neither")
    return (username, password) if username else None


def run_bounded(fn: Callable[[], None], *, timeout_s: float, what: str) -> str | None:
    """Run ``fn`` on a daemon thread, waiting at most ``timeout_s``: None when it returned in time, else why not."""
    errors: list[str] = []

    def target() -> None:
        try:
            fn()
        except Exception as exc:  # reported by the caller's policy, never raised into a stage
            errors.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=target, name=f"hybridmi-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return f"no answer within {timeout_s:.1f} s"  # the thread is abandoned
    return errors[0] if errors else None


class Pusher:
    """Push ``registry`` to a Pushgateway under ``grouping_key`` every ``interval_s`` and on demand."""

    def __init__(
        self,
        url: str,
        *,
        registry: CollectorRegistry,
        grouping_key: dict[str, str],
        interval_s: float = 15.0,
        timeout_s: float = 2.0,
        auth: tuple[str, str] | None = None,
    ) -> None:
        if not url or not url.strip():
            raise UsageError(f"pushgateway url {url!r} is empty")
        for what, seconds in (("push interval", interval_s), ("push timeout", timeout_s)):
            if seconds <= 0:
                raise UsageError(f"{what} {seconds} s is not positive")
        self.url, self.registry, self.grouping_key = url.strip(), registry, dict(grouping_key)
        self.interval_s, self.timeout_s, self._handler = interval_s, timeout_s, default_handler
        if auth is not None:
            self._handler = lambda url, method, timeout, headers, data: basic_auth_handler(
                url, method, timeout, headers, data, *auth
            )
        self.pushes_ok = self.pushes_failed = 0
        self._warned, self._lock, self._stop = False, threading.Lock(), threading.Event()
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

    def push(self, *, timeout_s: float | None = None) -> bool:
        """Replace the group's metrics on the gateway with the registry's; False (never an exception) on failure."""
        return self._call("push", push_to_gateway, timeout_s, registry=self.registry)

    def delete(self, *, timeout_s: float | None = None) -> bool:
        """Delete the group from the gateway; False on failure."""
        return self._call("delete", delete_from_gateway, timeout_s)

    def _call(self, action: str, send: Callable[..., None], timeout_s: float | None, **kwargs: Any) -> bool:
        timeout = self.timeout_s if timeout_s is None else timeout_s

        def request() -> None:
            send(self.url, job=JOB, grouping_key=self.grouping_key, timeout=timeout, handler=self._handler, **kwargs)

        with self._lock:
            error = run_bounded(request, timeout_s=timeout + 0.5, what=f"pushgateway-{action}")
            if action == "push":
                self.pushes_ok += error is None
                self.pushes_failed += error is not None
        if error is not None and not self._warned:
            self._warned = True
            log.warning(
                "Pushgateway %s unreachable (%s: %s); training continues, further failures are logged at debug level",
                *(self.url, action, error),
            )
        elif error is not None:
            log.debug("Pushgateway %s %s failed: %s", self.url, action, error)
        return error is None

    def stop(self) -> None:
        """Stop the background loop (waits at most one push timeout for a push in flight)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1.0)
            self._thread = None


def serve_metrics(registry: CollectorRegistry, *, port: int, addr: str = "0.0.0.0") -> WSGIServer:
    """Serve ``registry`` at http://addr:port/metrics on a daemon thread; close with ``server.shutdown()``."""
    if not 0 < port <= 65535:
        raise UsageError(f"metrics port {port} is not in 1..65535")
    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise UsageError(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}") from None
    log.info("serving metrics at http://%s:%d/metrics", addr, port)
    return server
