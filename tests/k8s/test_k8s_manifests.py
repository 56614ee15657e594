"""k8s/: every kustomization renders offline and every object is a valid Kubernetes API object."""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

import kfp
import kfp.kubernetes as kfp_kubernetes
import pytest
import yaml
from kube_schema import validate_object

from hybridmi.cluster import GPU_NODE_LABELS, GPU_TOLERATION, KFP_BACKEND_VERSION

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
REMOTE = "github.com/"
KFP_BASES = {
    K8S / "kfp" / "cluster-scoped": "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources",
    K8S / "kfp" / "env": "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic",
}
TRAINER_BASES = {  # Kubeflow Trainer (tests/k8s/test_trainer_manifests.py checks their pins)
    K8S / "trainer" / "manager": "github.com/kubeflow/trainer/manifests/overlays/manager",
    K8S / "trainer" / "runtimes": "github.com/kubeflow/trainer/manifests/overlays/runtimes",
}


def kustomizations() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def is_remote(directory: Path) -> bool:
    resources = yaml.safe_load((directory / "kustomization.yaml").read_text()).get("resources", [])
    return any(r.startswith(REMOTE) for r in resources)


def render(directory: Path) -> list[dict]:
    if not Path(KUBECTL).exists():
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{KUBECTL} is not installed")
    out = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {directory}: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@functools.lru_cache(maxsize=1)
def _rendered_stack() -> tuple[dict, ...]:
    return tuple(render(K8S))


def rendered_stack() -> list[dict]:
    return copy.deepcopy(list(_rendered_stack()))


def by_kind(objs: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def pod_specs(objs: list[dict]) -> list[tuple[str, dict]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objs
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]


def test_layout__only_the_kfp_and_trainer_overlays_are_remote():
    remote = {d for d in kustomizations() if is_remote(d)}
    assert remote == set(KFP_BASES) | set(TRAINER_BASES)
    assert K8S in kustomizations()


@pytest.mark.parametrize(
    "directory", [d for d in kustomizations() if not is_remote(d)], ids=lambda d: str(d.relative_to(ROOT))
)
def test_kustomization__renders_offline_to_valid_objects(directory):
    objs = render(directory)
    assert objs
    problems = [p for obj in objs for p in validate_object(obj)]
    assert not problems, "\n".join(problems)


def test_validator__catches_typos_and_missing_required_fields():
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "template": {"spec": {"containers": [{"image": "a:1", "prots": []}]}}},
    }
    problems = validate_object(broken)
    assert any("prots: not a field of V1Container" in p for p in problems)
    assert any("`name`, must not be `None`" in p for p in problems)
    assert validate_object({"apiVersion": "v1", "kind": "Nonsense", "metadata": {"name": "y"}})


def test_images__are_pinned():
    for name, spec in pod_specs(rendered_stack()):
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            image = container["image"]
            tag = image.rsplit("/", 1)[-1]
            assert "@sha256:" in image or (":" in tag and not tag.endswith(":latest")), (
                f"{name}: image {image} is not pinned"
            )
    kind_cfg = yaml.safe_load((K8S / "kind" / "cluster.yaml").read_text())
    for node in kind_cfg["nodes"]:
        assert ":" in node["image"] and not node["image"].endswith(":latest")


def test_references__services_select_pods_and_volumes_name_rendered_configmaps():
    objs = rendered_stack()
    pods = {name: o["spec"]["template"] for name, o in by_kind(objs, "Deployment").items()}
    for name, svc in by_kind(objs, "Service").items():
        selected = [p for p in pods.values() if svc["spec"]["selector"].items() <= p["metadata"]["labels"].items()]
        assert len(selected) == 1, f"service {name} selects {len(selected)} deployments"
        port_names = {p["name"] for c in selected[0]["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names, name
    configmaps = set(by_kind(objs, "ConfigMap"))
    for name, spec in pod_specs(objs):
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, f"{name}: volume {volume['name']}"


def test_monitoring__prometheus_scrapes_the_pushgateway_with_honor_labels():
    objs = rendered_stack()
    config_map = next(o for n, o in by_kind(objs, "ConfigMap").items() if n.startswith("prometheus-config"))
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "pushgateway")
    assert job["honor_labels"] is True
    gateway = by_kind(objs, "Service")["pushgateway"]
    target = f"pushgateway.{gateway['metadata']['namespace']}.svc:{gateway['spec']['ports'][0]['port']}"
    assert job["static_configs"][0]["targets"] == [target]


def test_monitoring__dashboard_shipped_as_labelled_configmap_and_provisioned():
    objs = rendered_stack()
    dashboards = [
        o
        for o in by_kind(objs, "ConfigMap").values()
        if o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    assert len(dashboards) == 1
    shipped = json.loads(dashboards[0]["data"]["hybridmi-dashboard.json"])
    assert shipped == json.loads((K8S / "monitoring" / "grafana" / "hybridmi-dashboard.json").read_text())
    datasources = next(
        o for n, o in by_kind(objs, "ConfigMap").items() if n.startswith("grafana-provisioning-datasources")
    )
    source = yaml.safe_load(datasources["data"]["datasources.yaml"])["datasources"][0]
    prometheus = by_kind(objs, "Service")["prometheus"]
    assert source["type"] == "prometheus"
    assert (
        source["url"]
        == f"http://prometheus.{prometheus['metadata']['namespace']}.svc:{prometheus['spec']['ports'][0]['port']}"
    )
    grafana = by_kind(objs, "Deployment")["grafana"]["spec"]["template"]["spec"]
    mounted = {v["configMap"]["name"] for v in grafana["volumes"] if "configMap" in v}
    assert dashboards[0]["metadata"]["name"] in mounted


def test_storage__secret_has_the_name_and_keys_the_pipeline_reads():
    from hybridmi.cluster import STORE_SECRET_KEYS, STORE_SECRET_NAME
    from hybridmi.store.uri import endpoint_from_env, parse_s3_uri

    secret = by_kind(rendered_stack(), "Secret")[STORE_SECRET_NAME]
    data = secret["stringData"]
    assert secret["metadata"]["namespace"] == "kubeflow"  # where KFP runs the pipeline's pods
    assert set(data) <= set(STORE_SECRET_KEYS)
    env = {STORE_SECRET_KEYS[key]: value for key, value in data.items()}  # what a stage pod sees
    assert endpoint_from_env(env) == ("seaweedfs.kubeflow.svc.cluster.local:9000", False)
    assert parse_s3_uri(env["HYBRIDMI_STORE"]) == ("mlpipeline", "hybridmi")


# kubeflow/pipelines release tags seen in the repository (git tags of a snapshot of 2026-08-21): a
# backend pin must be one of them. SDK patch releases (2.17.3) have no backend tag of their own.
UPSTREAM_BACKEND_TAGS = ("2.14.0", "2.14.3", "2.14.4", "2.15.0", "2.16.0", "2.16.1", "2.17.0")


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def test_kfp__pinned_to_an_upstream_tag_of_the_sdks_minor_release():
    assert KFP_BACKEND_VERSION in UPSTREAM_BACKEND_TAGS
    assert _minor(kfp.__version__) == _minor(KFP_BACKEND_VERSION), (
        "the SDK compiles IR for the backend it is pinned with"
    )
    assert _minor(kfp_kubernetes.__version__) == _minor(KFP_BACKEND_VERSION)
    for directory, base in KFP_BASES.items():
        resources = yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"]
        assert resources == [f"{base}?ref={KFP_BACKEND_VERSION}"]
    readme = (K8S / "README.md").read_text()
    assert f"`{KFP_BACKEND_VERSION}`" in readme and kfp.__version__ in readme


def test_kind__gpu_worker_matches_the_pipeline_gpu_settings():
    nodes = yaml.safe_load((K8S / "kind" / "cluster.yaml").read_text())["nodes"]
    gpu = [n for n in nodes if GPU_NODE_LABELS.items() <= n.get("labels", {}).items()]
    plain_workers = [n for n in nodes if n["role"] == "worker" and n not in gpu]
    assert len(gpu) == 1 and plain_workers, "need one GPU-labelled worker and a worker for everything else"
    patches = [yaml.safe_load(p) for p in gpu[0]["kubeadmConfigPatches"]]
    taints = [t for p in patches if p["kind"] == "JoinConfiguration" for t in p["nodeRegistration"]["taints"]]
    assert taints
    for taint in taints:  # the pipeline's toleration must tolerate every taint of the GPU node
        assert taint["key"] == GPU_TOLERATION["key"] and taint["effect"] == GPU_TOLERATION["effect"]
        assert GPU_TOLERATION["operator"] == "Exists" or taint.get("value") == GPU_TOLERATION.get("value")
    for node in plain_workers:
        assert not node.get("kubeadmConfigPatches"), "the CPU worker must stay untainted"
