"""Talking to a Kubeflow Pipelines API: credentials, a first probe that says what is wrong in one line, the client, waiting.

Credentials are what kfp.Client takes: a bearer token (``existing_token``), a token file that the
kubelet keeps fresh (``ServiceAccountTokenVolumeCredentials``, path from ``--token-file`` or
``KF_PIPELINES_SA_TOKEN_PATH``), or a session cookie of Dex / oauth2-proxy (``cookies``).
``probe`` asks ``/apis/v2beta1/healthz`` with the same credentials before kfp.Client is built, so
an unreachable host, a refused token, a login redirect or a host without KFP each end in one
``SubmitError`` line instead of urllib3's retries and traceback.
"""
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

log = logging.getLogger(__name__)

TOKEN_PATH_VAR = "KF_PIPELINES_SA_TOKEN_PATH"  # kfp.client's convention for a service-account token file
UI_URL_VAR = "KF_PIPELINES_UI_ENDPOINT"  # kfp.Client's own override of the UI address
HEALTHZ = "/apis/v2beta1/healthz"
PROBE_TIMEOUT_S = 15
# Final run states of the v2beta1 API (ERROR: older backends) and the exit code `hybridmi submit --wait` gives each.
FINAL_STATES = {"SUCCEEDED": 0, "FAILED": 3, "CANCELED": 4, "SKIPPED": 5, "ERROR": 6}
WAIT_TIMED_OUT = 7
TRANSIENT_ERRORS_ALLOWED = 5  # consecutive failed polls tolerated while waiting (a port-forward blinking)


class SubmitError(RuntimeError):
    """Submission failed; the message is one line naming the host and what to check."""


@dataclass(frozen=True)
class Auth:
    """Credentials for the KFP API: at most one of token / token_file, optionally a cookie header value."""

    token: str | None = None
    token_file: str | None = None
    cookie: str | None = None

    @classmethod
    def from_env(cls, *, token: str | None = None, token_file: str | None = None, cookie: str | None = None,
                 env=os.environ) -> "Auth":
        if token and token_file:
            raise ValueError("give either --token or --token-file, not both")
        return cls(token=token or None, token_file=token_file or (None if token else env.get(TOKEN_PATH_VAR) or None),
                   cookie=cookie or None)

    def bearer(self) -> str | None:
        if self.token:
            return self.token
        if self.token_file:
            try:
                with open(self.token_file) as f:
                    return f.read().strip()
            except OSError as exc:
                raise SubmitError(f"cannot read the token file {self.token_file}: {exc.strerror}") from None
        return None

    def headers(self) -> dict[str, str]:
        token = self.bearer()
        return {**({"Authorization": f"Bearer {token}"} if token else {}), **({"Cookie": self.cookie} if self.cookie else {})}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is an answer here (login pages), not something to follow
        return None


def probe(host: str, auth: Auth, *, timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """The KFP healthz document of ``host`` (``multi_user``, ``tag_name``...), or SubmitError saying what is wrong."""
    url = host.rstrip("/") + HEALTHZ
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers={"Accept": "application/json", **auth.headers()})
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as err:
        raise SubmitError(_http_problem(host, err.code, err.headers.get("Location"), auth)) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise SubmitError(f"cannot reach Kubeflow Pipelines at {host} ({reason}); is the address right and the "
                          "port-forward running (kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80)?") from None
    try:
        return json.loads(body)
    except ValueError:
        raise SubmitError(f"{host}{HEALTHZ} answered, but not with the KFP API's JSON (a login page?): "
                          "check --host, and pass --token / --token-file / --cookie behind Dex or oauth2-proxy") from None


def _http_problem(host: str, status: int, location: str | None, auth: Auth) -> str:
    given = "the credentials given" if (auth.token or auth.token_file or auth.cookie) else "no credentials"
    if status in (401, 403):
        return (f"Kubeflow Pipelines at {host} refused {given} (HTTP {status}): pass a valid --token, --token-file "
                f"(or {TOKEN_PATH_VAR}) or --cookie, and --namespace for your profile")
    if status in (301, 302, 303, 307, 308):
        return (f"{host}{HEALTHZ} redirects to {location or 'another page'} (HTTP {status}, a login page?): "
                "pass --token / --token-file or the session --cookie of Dex / oauth2-proxy")
    if status == 404:
        return (f"no Kubeflow Pipelines API at {host} (HTTP 404 for {HEALTHZ}): check --host "
                "(e.g. http://localhost:8080 for svc/ml-pipeline-ui, https://<kubeflow>/pipeline)")
    return f"Kubeflow Pipelines at {host} answered HTTP {status} for {HEALTHZ}; check the KFP API server"


def api_problem(host: str, action: str, exc: BaseException) -> SubmitError:
    """One line for an exception of kfp.Client (ApiException with the server's message, or a network error)."""
    status = getattr(exc, "status", None)
    if status is None:
        return SubmitError(f"{action} at {host} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    try:
        message = json.loads(getattr(exc, "body", "") or "{}").get("message") or getattr(exc, "reason", "")
    except ValueError:
        message = getattr(exc, "reason", "")
    hint = " (check --token / --cookie / --namespace)" if status in (401, 403) else ""
    return SubmitError(f"{action} at {host} failed: HTTP {status}: {' '.join(str(message).split())}{hint}")


def connect(host: str, auth: Auth, *, namespace: str | None = None, ui_url: str | None = None):
    """A kfp.Client for ``host`` after a successful ``probe``; SubmitError when the host is multi-user and no namespace is given."""
    health = probe(host, auth)
    if health.get("multi_user") and not namespace:
        raise SubmitError(f"Kubeflow Pipelines at {host} is multi-user: pass --namespace (your profile's namespace, "
                          "where the storage Secret must exist too)")
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    credentials = ServiceAccountTokenVolumeCredentials(auth.token_file) if auth.token_file else None
    with warnings.catch_warnings(), quiet_stdout():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*client only works.*")
        return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=auth.token, cookies=auth.cookie,
                          credentials=credentials, ui_host=ui_url)


@contextlib.contextmanager
def quiet_stdout():
    """kfp.Client prints its links; send them to the debug log instead of the command's output."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    for line in buffer.getvalue().splitlines():
        log.debug("kfp: %s", line)


def ui_base(host: str, ui_url: str | None, env=os.environ) -> str:
    """Where the KFP UI is: --ui-url, else $KF_PIPELINES_UI_ENDPOINT, else the host (the UI serves the API as well)."""
    return (ui_url or env.get(UI_URL_VAR) or host).rstrip("/")


def state_of(run: Any) -> str:
    return str(getattr(run, "state", None) or "RUNTIME_STATE_UNSPECIFIED").upper()


def wait_for_final_state(get_run: Callable[[], Any], *, timeout_s: float, poll_s: float = 10.0,
                         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Any:
    """Poll ``get_run()`` until its state is final (FINAL_STATES); TimeoutError when ``timeout_s`` passes first.

    Up to TRANSIENT_ERRORS_ALLOWED consecutive network errors are waited out; an HTTP error answer is raised.
    """
    deadline, errors, last = clock() + timeout_s, 0, None
    while True:
        try:
            run = get_run()
            errors, last = 0, state_of(run)
            if last in FINAL_STATES:
                return run
        except Exception as exc:
            if getattr(exc, "status", None) is not None or errors >= TRANSIENT_ERRORS_ALLOWED:
                raise
            errors += 1
            log.warning("polling the run failed (%s); retrying", type(exc).__name__)
        if clock() >= deadline:
            raise TimeoutError(f"the run is still {last or 'unknown'} after {timeout_s:g} s")
        sleep(poll_s)
