"""Talking to a Kubeflow Pipelines API: credentials, a first probe that says what is wrong in one line, the client, waiting."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from urllib3.exceptions import HTTPError as Urllib3Error

from hybridmi.errors import HybridmiError, UsageError

log = logging.getLogger(__name__)

TOKEN_PATH_VAR = "KF_PIPELINES_SA_TOKEN_PATH"  # kfp.client's convention for a service-account token file
HEALTHZ = "/apis/v2beta1/healthz"
# Final run states (ERROR: older backends) and the exit code `hybridmi submit --wait` gives each.
FINAL_STATES = {"SUCCEEDED": 0, "FAILED": 3, "CANCELED": 4, "SKIPPED": 5, "ERROR": 6}
WAIT_TIMED_OUT = 7  # the exit code when the wait's deadline passes first


class SubmitError(HybridmiError, RuntimeError):
    """Submission failed; the message is one line naming the host and what to check."""


@dataclass(frozen=True)
class Auth:
    """Credentials for the KFP API: at most one of token / token_file (read anew for each request), optionally a
    cookie header value; ``from_env``: from the flags, the token file by default $KF_PIPELINES_SA_TOKEN_PATH."""

    token: str | None = None
    token_file: str | None = None
    cookie: str | None = None

    @classmethod
    def from_env(
        cls, *, token: str | None = None, token_file: str | None = None, cookie: str | None = None, env=os.environ
    ) -> Auth:
        if token and token_file:
            raise UsageError("give either --token or --token-file, not both")
        return cls(token or None, token_file or (None if token else env.get(TOKEN_PATH_VAR) or None), cookie or None)

    def headers(self) -> dict[str, str]:
        token = self.token
        if not token and self.token_file:
            try:
                with open(self.token_file) as f:
                    token = f.read().strip()
            except OSError as exc:
                raise SubmitError(f"cannot read the token file {self.token_file}: {exc.strerror}") from None
        cookie = {"Cookie": self.cookie} if self.cookie else {}
        return {"Authorization": f"Bearer {token}", **cookie} if token else cookie


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is an answer here (login pages), not something to follow
        return None


def connect(host: str, auth: Auth, *, namespace: str | None = None, ui_url: str | None = None, timeout_s: float = 15):
    """A kfp.Client for ``host`` once its KFP healthz answers; SubmitError saying in one line what is wrong (the host,
    the credentials, no --namespace for a multi-user host) otherwise."""
    url = host.rstrip("/") + HEALTHZ
    request = urllib.request.Request(url, headers={"Accept": "application/json", **auth.headers()})
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as err:
        raise SubmitError(_http_problem(host, err.code, err.headers.get("Location"), auth)) from None
    except (urllib.error.URLError, OSError) as err:
        raise SubmitError(
            f"cannot reach Kubeflow Pipelines at {host} ({getattr(err, 'reason', err)}); is the address right and the "
            "port-forward running (kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80)?"
        ) from None
    try:
        health = json.loads(body)
    except ValueError:
        raise SubmitError(
            f"{host}{HEALTHZ} answered, but not with the KFP API's JSON (a login page?): "
            "check --host, and pass --token / --token-file / --cookie behind Dex or oauth2-proxy"
        ) from None
    if health.get("multi_user") and not namespace:
        raise SubmitError(
            f"Kubeflow Pipelines at {host} is multi-user: pass --namespace (your profile's namespace, "
            "where the storage Secret must exist too)"
        )
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    with warnings.catch_warnings(), quiet_stdout():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*client only works.*")
        return kfp.Client(
            host=host,
            namespace=namespace or "kubeflow",
            existing_token=auth.token,
            cookies=auth.cookie,
            credentials=ServiceAccountTokenVolumeCredentials(auth.token_file) if auth.token_file else None,
            ui_host=ui_url,
        )


def _http_problem(host: str, status: int, location: str | None, auth: Auth) -> str:
    if status in (401, 403):
        given = "the credentials given" if (auth.token or auth.token_file or auth.cookie) else "no credentials"
        return (
            f"Kubeflow Pipelines at {host} refused {given} (HTTP {status}): pass a valid --token, --token-file "
            f"(or {TOKEN_PATH_VAR}) or --cookie, and --namespace for your profile"
        )
    if status in (301, 302, 303, 307, 308):
        return (
            f"{host}{HEALTHZ} redirects to {location or 'another page'} (HTTP {status}, a login page?): "
            "pass --token / --token-file or the session --cookie of Dex / oauth2-proxy"
        )
    if status == 404:
        return (
            f"no Kubeflow Pipelines API at {host} (HTTP 404 for {HEALTHZ}): check --host "
            "(e.g. http://localhost:8080 for svc/ml-pipeline-ui, https://<kubeflow>/pipeline)"
        )
    return f"Kubeflow Pipelines at {host} answered HTTP {status} for {HEALTHZ}; check the KFP API server"


def api_problem(host: str, action: str, exc: BaseException) -> SubmitError:
    """One line for an exception of kfp.Client (ApiException with the server's message, or a network error)."""
    status = getattr(exc, "status", None)
    if status is None:
        return SubmitError(f"{action} at {host} failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
    message = getattr(exc, "reason", "")
    with contextlib.suppress(ValueError):
        message = json.loads(getattr(exc, "body", "") or "{}").get("message") or message
    hint = " (check --token / --cookie / --namespace)" if status in (401, 403) else ""
    return SubmitError(f"{action} at {host} failed: HTTP {status}: {' '.join(str(message).split())}{hint}")


@contextlib.contextmanager
def quiet_stdout():
    """kfp.Client prints its links: to the debug log instead."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    for line in buffer.getvalue().splitlines():
        log.debug("kfp: %s", line)


def state_of(run: Any) -> str:
    return str(getattr(run, "state", None) or "RUNTIME_STATE_UNSPECIFIED").upper()


def is_transient(exc: BaseException) -> bool:
    """Whether a failed poll is worth repeating: no answer (a network error, or status 0: TLS), HTTP 429 or 5xx."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):  # kfp_server_api.ApiException
        return status in (0, 429) or status >= 500
    return isinstance(exc, (Urllib3Error, OSError))  # urllib3's wrappers of socket errors, or a socket's own


def _reason(exc: BaseException) -> str:
    """One line for a failed poll: the HTTP status, or the network error (the cause of urllib3's MaxRetryError)."""
    if isinstance(getattr(exc, "reason", None), Exception):
        exc = exc.reason  # urllib3's MaxRetryError: what failed in the last of its own retries
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
    text = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 100 else f"{seconds:.2g} s"


@dataclass(frozen=True)
class Backoff:
    """Pauses after failed polls: ``first_s``, doubling with every failure in a row, at most ``most_s`` (seconds)."""

    first_s: float = 5.0
    most_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.most_s:
            raise UsageError(f"backoff from {self.first_s} s up to {self.most_s} s: need 0 < first <= most")

    def pause_s(self, failures: int) -> float:
        """The pause after ``failures`` >= 1 failed polls in a row."""
        return min(self.first_s * 2.0 ** min(failures - 1, 64), self.most_s)  # 64: no overflow in a long outage


class WaitTimedOut(TimeoutError):
    """The deadline passed before a final state; ``answering``: whether the API answered the last poll."""

    def __init__(self, message: str, *, answering: bool) -> None:
        super().__init__(message)
        self.answering = answering


def wait_for_final_state(
    get_run: Callable[[], Any],
    *,
    timeout_s: float,
    poll_s: float = 10.0,
    backoff: Backoff = Backoff(),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Poll ``get_run()`` every ``poll_s`` until its state is final; WaitTimedOut if ``timeout_s`` passes first.

    Transient failures (``is_transient``) are retried after ``backoff``'s pauses, with one warning when the API is lost
    and one when it is back; any other error is raised at once."""
    deadline, last, failures, lost_at, problem = clock() + timeout_s, None, 0, 0.0, ""
    urllib3_log = logging.getLogger("urllib3.connectionpool")  # warns of every retry; the wait warns once
    level = urllib3_log.level
    urllib3_log.setLevel(logging.ERROR)
    try:
        while True:
            try:
                run = get_run()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                failures, problem = failures + 1, _reason(exc)
                if failures == 1:
                    lost_at = clock()
                    log.warning(
                        "lost the Kubeflow Pipelines API (%s); retrying until the wait's deadline, %.0f s from now",
                        problem,
                        deadline - lost_at,
                    )
                pause = backoff.pause_s(failures)
            else:
                if failures:
                    log.warning(
                        "the Kubeflow Pipelines API answers again, after %d failed polls over %.0f s",
                        failures,
                        clock() - lost_at,
                    )
                failures, last, pause = 0, state_of(run), poll_s
                if last in FINAL_STATES:
                    return run
            left = deadline - clock()
            if left <= 0:
                if failures:
                    seen = f"the run was {last} when last seen" if last else "its state was never read"
                    raise WaitTimedOut(
                        f"the API has not answered for the last {_seconds(clock() - lost_at)} of the "
                        f"{_seconds(timeout_s)} wait ({problem}); {seen}",
                        answering=False,
                    )
                raise WaitTimedOut(f"the run is still {last} after {_seconds(timeout_s)}", answering=True)
            sleep(min(pause, left))
    finally:
        urllib3_log.setLevel(level)
