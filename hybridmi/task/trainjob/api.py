"""TrainJob objects of one namespace through the kubernetes client's CustomObjectsApi, with one-line errors."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from hybridmi.cluster import NAMESPACE_VAR, POD_NAME_VAR, POD_UID_VAR, TRAINER_VERSION
from hybridmi.errors import HybridmiError, UsageError
from hybridmi.task.trainjob.manifest import GROUP, MIN_TRAINER, PLURAL, VERSION

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
REQUEST_TIMEOUT_S = (10.0, 60.0)  # connect, read: a server that hangs is an unreachable one
_TOLERATED = object()  # TrainJobs._call's answer to a refusal the caller expects
_HINTS = {
    401: "the pod's service account token was refused",
    403: "the pipeline's service account may not do this: apply k8s/trainer/rbac (standalone KFP) or bind the "
    "ClusterRole hybridmi-trainjob-launcher to default-editor in the profile namespace (k8s/README.md)",
    404: f"the cluster serves no {GROUP}/{VERSION} {PLURAL} (install Kubeflow Trainer: k8s/trainer) or the namespace does not exist",
}


class ApiUnavailable(HybridmiError, ConnectionError):
    """The Kubernetes API server did not answer (or answered 5xx / 429)."""


class TrainJobApiError(HybridmiError, RuntimeError):
    """The Kubernetes API refused a request about a TrainJob; one line. ``status``: the HTTP status."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _server_message(exc: ApiException) -> str:
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = ""
    return " ".join(str(message or exc.reason or "").split())[:500]


def _hint(status: int, message: str) -> str:
    """What to check about a refusal: the server's strict decoding error names the fields an older Trainer's CRD lacks."""
    unknown = re.findall(r'unknown field "([^"]+)"', message) if "strict decoding error" in message else []
    if unknown:
        return (
            f"the cluster's TrainJob CRD has no field {', '.join(unknown)}: its Kubeflow Trainer is older than "
            f"{MIN_TRAINER}, which this project needs (k8s/trainer installs {TRAINER_VERSION})"
        )
    return _HINTS.get(status, "")


class TrainJobs:
    """Create, get and delete TrainJobs in ``namespace`` over ``api_client`` (a ready ``kubernetes.client.ApiClient``)."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str) -> None:
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.host = api_client.configuration.host

    def _call(self, action: str, fn, *args, tolerate: int = 0, **kwargs) -> Any:
        """``fn``'s answer; _TOLERATED for a refusal with HTTP status ``tolerate`` (404: absent, 409: exists)."""
        try:
            return fn(GROUP, VERSION, self.namespace, PLURAL, *args, _request_timeout=REQUEST_TIMEOUT_S, **kwargs)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiUnavailable(f"Kubernetes API at {self.host}: {type(exc).__name__} while {action}") from None
        except ApiException as exc:
            if exc.status == tolerate:
                return _TOLERATED
            message = _server_message(exc)
            if exc.status in (0, 429) or exc.status >= 500:
                raise ApiUnavailable(f"Kubernetes API at {self.host}: {exc.status} {message} while {action}") from None
            hint = _hint(exc.status, message)
            raise TrainJobApiError(
                f"{action} in namespace {self.namespace}: {exc.status} {message}" + (f" ({hint})" if hint else ""),
                exc.status,
            ) from None

    def get(self, name: str) -> dict[str, Any] | None:
        """The TrainJob object, or None when there is none of that name."""
        obj = self._call(f"reading TrainJob {name}", self.api.get_namespaced_custom_object, name, tolerate=404)
        return None if obj is _TOLERATED else obj

    def create(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create the TrainJob ``body``; None when one of that name exists already (a concurrent attempt made it)."""
        action, create = f"creating TrainJob {body['metadata']['name']}", self.api.create_namespaced_custom_object
        obj = self._call(action, create, dict(body), field_validation="Strict", tolerate=409)
        return None if obj is _TOLERATED else obj

    def delete(self, name: str, *, wait_s: float = 0.0, poll_s: float = 1.0) -> bool:
        """Delete the TrainJob and its pods (foreground: the object goes after its children); False when absent."""
        action, delete = f"deleting TrainJob {name}", self.api.delete_namespaced_custom_object
        if self._call(action, delete, name, propagation_policy="Foreground", tolerate=404) is _TOLERATED:
            return False
        deadline = time.monotonic() + wait_s
        while wait_s and self.get(name) is not None:
            if time.monotonic() > deadline:
                still = f"was still there {wait_s:.0f} s after it was deleted (a finalizer holds it?)"
                raise TrainJobApiError(f"TrainJob {name} in namespace {self.namespace} {still}")
            time.sleep(poll_s)
        return True


def task_namespace(env: Mapping[str, str] = os.environ) -> str:
    """The namespace the task pod runs in: HYBRIDMI_NAMESPACE (downward API), else its service account's."""
    namespace = env.get(NAMESPACE_VAR, "").strip()
    if not namespace and SERVICE_ACCOUNT_NAMESPACE.is_file():
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    if not namespace:
        unknown = "the namespace to create the TrainJob in is unknown"
        raise UsageError(f"{NAMESPACE_VAR} is not set and {SERVICE_ACCOUNT_NAMESPACE} does not exist: {unknown}")
    return namespace


def task_pod(env: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """(name, uid) of the task's pod from HYBRIDMI_POD_NAME and HYBRIDMI_POD_UID (downward API), the TrainJob's owner."""
    name, uid = env.get(POD_NAME_VAR, "").strip(), env.get(POD_UID_VAR, "").strip()
    if name and uid:
        return name, uid
    if name or uid:
        raise UsageError(
            f"{POD_NAME_VAR}={name!r} and {POD_UID_VAR}={uid!r}: the task's pod needs both (downward API "
            "metadata.name and metadata.uid) to own its TrainJob"
        )
    log.warning("%s and %s are not set: the TrainJob will not go with the task's pod", POD_NAME_VAR, POD_UID_VAR)
    return None


def kube_api_client(env: Mapping[str, str] = os.environ) -> k8s.ApiClient:
    """An ApiClient from the pod's service account inside a cluster, else from the kubeconfig (KUBECONFIG)."""
    from kubernetes import config

    configuration = k8s.Configuration()
    if env.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        try:
            config.load_kube_config(config_file=env.get("KUBECONFIG") or None, client_configuration=configuration)
        except (config.ConfigException, OSError) as exc:
            raise UsageError(
                f"no Kubernetes API to create the TrainJob with: not in a cluster and no usable kubeconfig ({exc})"
            ) from None
    return k8s.ApiClient(configuration)
