"""scripts/kind-e2e.sh, its workflow and scripts/services.sh: shell syntax and the dry-run plan."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import yaml

from components.image import PROJECT_IMAGE
from hybridmi.cluster import GPU_NODE_LABELS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kind-e2e.sh"
SERVICES = ROOT / "scripts" / "services.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "kind-e2e.yml"


def dry_run(**env: str) -> str:
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, **env}, cwd="/")
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_scripts__have_valid_shell_syntax():
    for script in (SCRIPT, SERVICES):
        out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert out.returncode == 0, f"{script}: {out.stderr}"
        assert os.access(script, os.X_OK), f"{script} is not executable"


def test_dry_run__prints_every_step_in_order_and_runs_nothing():
    plan = dry_run(KIND_CLUSTER="e2e-test", PATH="/usr/bin:/bin")  # no kind/docker needed
    commands = [line[2:] for line in plan.splitlines() if line.startswith("+ ")]
    expected = [
        "kind create cluster --name e2e-test --config k8s/kind/cluster.yaml",
        "kubectl apply -k k8s/kfp/cluster-scoped",
        "kubectl wait --for condition=established",
        "kubectl apply -k k8s/kfp/env",
        "kubectl apply -k k8s",
        "kubectl -n kubeflow create secret generic hybridmi-store",
        "kubectl -n kubeflow wait --for=condition=available deployment --all",
        "docker/build.sh",
        f"kind load docker-image {PROJECT_IMAGE} --name e2e-test",
        "kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80",
        "kubectl -n monitoring port-forward svc/prometheus 9090:9090",
        "curl -fsS -o /dev/null http://localhost:8080/apis/v2beta1/healthz",
        "submit --host http://localhost:8080 --config configs/smoke.yaml",
        "grep -q SUCCEEDED",
        "bucket_has_artifacts mlpipeline",
        "prometheus_has_data hybridmi_train_steps_total",
    ]
    position = 0
    for want in expected:
        hits = [i for i, c in enumerate(commands) if want in c and i >= position]
        assert hits, f"step {want!r} missing or out of order in:\n" + "\n".join(commands)
        position = hits[0]
    assert len(re.findall(r"^==> \d/9 ", plan, flags=re.M)) == 9
    assert ":latest" not in plan


def test_dry_run__submits_with_empty_accelerators_pushing_to_the_cluster_gateway():
    submit = next(line for line in dry_run().splitlines() if line.startswith("+ ") and " submit " in line)
    assert "--accelerator-type '' --accelerator-count ''" in submit
    assert "--wait" in submit and "--timeout 3600" in submit
    assert "monitoring.pushgateway_url=http://pushgateway.monitoring.svc:9091" in submit
    run_id = re.search(r"monitoring.run_id=(\S+)", submit).group(1)
    assert f"--run-name {run_id}" in submit


def test_dry_run__loads_this_trees_image_and_passes_it_and_the_gpu_label_as_run_parameters():
    plan = dry_run(IMAGE="registry.example/hybridmi:abc123")
    assert f"+ docker tag registry.example/hybridmi:abc123 {PROJECT_IMAGE}" in plan
    assert f"+ kind load docker-image {PROJECT_IMAGE} --name" in plan
    submit = next(line for line in plan.splitlines() if line.startswith("+ ") and " submit " in line)
    words = shlex.split(submit[2:].split(" | ")[0])
    assert words[words.index("--image") + 1] == PROJECT_IMAGE
    name, _, value = words[words.index("--param") + 1].partition("=")
    assert name == "gpu_node_selector" and json.loads(value) == GPU_NODE_LABELS


def test_dry_run__refuses_a_latest_image():
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PIPELINE_IMAGE": "hybridmi:latest"})
    assert out.returncode == 1 and "non-latest tag" in out.stderr
    assert "kind load" not in out.stdout


def test_script__rejects_unknown_arguments():
    out = subprocess.run(["bash", str(SCRIPT), "--dryrun"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "unknown argument --dryrun" in out.stderr


def test_workflow__runs_the_script_with_pinned_tools():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["kind-e2e"]
    runs = [s.get("run", "") for s in job["steps"]]
    assert "scripts/kind-e2e.sh" in runs and "scripts/kind-e2e.sh --dry-run" in runs
    assert any("docker/build.sh" in r and "GITHUB_ENV" in r for r in runs)
    assert re.fullmatch(r"v\d+\.\d+\.\d+", job["env"]["KIND_VERSION"])
    assert re.fullmatch(r"v\d+\.\d+\.\d+", job["env"]["KUBECTL_VERSION"])
    assert job["timeout-minutes"] <= 120


def test_services_script__check_reports_what_is_installed():
    present = all(os.access(p, os.X_OK) for p in ("/usr/bin/prometheus", "/usr/bin/prometheus-pushgateway"))
    out = subprocess.run(["bash", str(SERVICES), "--check"], capture_output=True, text=True, timeout=30)
    assert out.returncode == (0 if present else 1), out.stderr
