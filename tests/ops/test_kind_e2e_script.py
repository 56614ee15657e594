"""scripts/kind-e2e.sh, its workflow and scripts/services.sh: shell syntax, the dry-run plan, and a
workflow that fits a GitHub-hosted runner's disk (freed first, CPU-only torch, workers-only load)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import yaml

from components.image import project_image
from hybridmi.cluster import GPU_NODE_LABELS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kind-e2e.sh"
SERVICES = ROOT / "scripts" / "services.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "kind-e2e.yml"
KIND_CONFIG = ROOT / "k8s" / "kind" / "cluster.yaml"
CUDA_IMAGE, CPU_IMAGE = project_image(), project_image(torch_variant="cpu")


def dry_run(**env: str) -> str:
    """The plan under the caller's environment, with the script's own settings only as given here."""
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("TORCH_VARIANT", "IMAGE", "PIPELINE_IMAGE", "KIND_CLUSTER")
    }
    out = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**inherited, **env},
        cwd="/",
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def kind_load(plan: str) -> list[str]:
    """The words of the plan's one `kind load docker-image` command."""
    lines = [line[2:] for line in plan.splitlines() if line.startswith("+ kind load ")]
    assert len(lines) == 1, plan
    return shlex.split(lines[0])


def kind_node_names(cluster: str) -> dict[str, list[str]]:
    """kind's names for the nodes of k8s/kind/cluster.yaml by role: <cluster>-<role>, <cluster>-<role>2, ..."""
    names: dict[str, list[str]] = {}
    for node in yaml.safe_load(KIND_CONFIG.read_text())["nodes"]:
        same = names.setdefault(node["role"], [])
        same.append(f"{cluster}-{node['role']}{len(same) + 1 if same else ''}")
    return names


def workflow_job() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["kind-e2e"]


def step_index(steps: list[dict], text: str) -> int:
    """The index of the first step whose `run` holds text."""
    hits = [i for i, step in enumerate(steps) if text in step.get("run", "")]
    assert hits, f"no workflow step runs {text!r}"
    return hits[0]


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
        f"kind load docker-image {CPU_IMAGE} --name e2e-test --nodes",
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


def test_dry_run__loads_the_image_into_the_worker_nodes_only():
    nodes = kind_node_names("e2e-test")
    assert nodes == {"control-plane": ["e2e-test-control-plane"], "worker": ["e2e-test-worker", "e2e-test-worker2"]}
    words = kind_load(dry_run(KIND_CLUSTER="e2e-test"))
    assert words[:4] == ["kind", "load", "docker-image", CPU_IMAGE]
    assert words[words.index("--name") + 1] == "e2e-test"
    assert words[words.index("--nodes") + 1].split(",") == nodes["worker"]
    assert not any("control-plane" in word for word in words)


def test_dry_run__builds_the_cpu_only_image_unless_told_otherwise():
    plan = dry_run()
    build = next(line for line in plan.splitlines() if line.startswith("+ ") and "docker/build.sh" in line)
    assert "TORCH_VARIANT=cpu" in build.split()
    assert CPU_IMAGE == f"{CUDA_IMAGE}-cpu" and kind_load(plan)[3] == CPU_IMAGE
    cuda = dry_run(TORCH_VARIANT="cuda")
    assert "TORCH_VARIANT=cuda" in cuda.split() and kind_load(cuda)[3] == CUDA_IMAGE


def test_dry_run__submits_with_empty_accelerators_pushing_to_the_cluster_gateway():
    submit = next(line for line in dry_run().splitlines() if line.startswith("+ ") and " submit " in line)
    assert "--accelerator-type '' --accelerator-count ''" in submit
    assert "--wait" in submit and "--timeout 3600" in submit
    assert "monitoring.pushgateway_url=http://pushgateway.monitoring.svc:9091" in submit
    run_id = re.search(r"monitoring.run_id=(\S+)", submit).group(1)
    assert f"--run-name {run_id}" in submit


def test_dry_run__loads_this_trees_image_and_passes_it_and_the_gpu_label_as_run_parameters():
    plan = dry_run(IMAGE="registry.example/hybridmi:abc123")
    assert "+ check_torch_variant registry.example/hybridmi:abc123" in plan
    assert f"+ docker tag registry.example/hybridmi:abc123 {CPU_IMAGE}" in plan
    assert f"+ kind load docker-image {CPU_IMAGE} --name" in plan
    submit = next(line for line in plan.splitlines() if line.startswith("+ ") and " submit " in line)
    words = shlex.split(submit[2:].split(" | ")[0])
    assert words[words.index("--image") + 1] == CPU_IMAGE
    name, _, value = words[words.index("--param") + 1].partition("=")
    assert name == "gpu_node_selector" and json.loads(value) == GPU_NODE_LABELS


def test_dry_run__refuses_a_latest_image():
    out = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PIPELINE_IMAGE": "hybridmi:latest"},
    )
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


def test_workflow__frees_the_runners_disk_before_installing_or_building():
    steps = workflow_job()["steps"]
    free = step_index(steps, "rm -rf /usr/share/dotnet")
    run = steps[free]["run"]
    removed = set(shlex.split(next(line for line in run.splitlines() if "rm -rf" in line))[3:])
    assert {"/usr/share/dotnet", "/usr/local/lib/android", "/opt/ghc", "/opt/hostedtoolcache/CodeQL"} <= removed
    assert "/opt/hostedtoolcache" not in removed  # actions/setup-python installs Python there
    assert "docker image prune" in run
    setup_python = next(i for i, step in enumerate(steps) if step.get("uses", "").startswith("actions/setup-python"))
    assert free < setup_python < step_index(steps, "pip install") < step_index(steps, "docker/build.sh")


def test_workflow__installs_and_builds_with_cpu_only_torch():
    job = workflow_job()
    steps = job["steps"]
    assert job["env"]["TORCH_VARIANT"] == "cpu"  # the one switch; the steps below and kind-e2e.sh read it
    install = steps[step_index(steps, "pip install -e")]["run"]
    assert 'docker/requirements.py --torch-variant "$TORCH_VARIANT"' in install
    assert install.index("docker/requirements.py") < install.index("pip install -e")  # torch first, then the project
    build = next(
        line for line in steps[step_index(steps, "docker/build.sh")]["run"].splitlines() if "docker/build.sh" in line
    )
    preserved = re.search(r"sudo --preserve-env=(\S+)", build).group(1).split(",")  # sudo drops the rest
    assert {"TORCH_VARIANT", "PIP_NO_CACHE_DIR", "HYBRIDMI_WHEELHOUSE"} <= set(preserved)


def test_workflow__keeps_no_pip_cache_and_drops_the_wheelhouse_before_kind_loads_the_image():
    job = workflow_job()
    steps = job["steps"]
    assert job["env"]["PIP_NO_CACHE_DIR"] == "1"
    build = steps[step_index(steps, "docker/build.sh")]
    assert build["env"]["HYBRIDMI_WHEELHOUSE"]
    lines = build["run"].splitlines()
    built = next(i for i, line in enumerate(lines) if "docker/build.sh" in line)
    dropped = next(i for i, line in enumerate(lines) if 'rm -rf "$HYBRIDMI_WHEELHOUSE"' in line)
    assert built < dropped
    end_to_end = next(i for i, step in enumerate(steps) if step.get("run", "").strip() == "scripts/kind-e2e.sh")
    assert step_index(steps, "docker/build.sh") < step_index(steps, "scripts/kind-e2e.sh --dry-run") < end_to_end


def test_workflow__its_environment_loads_the_built_cpu_image_into_the_workers_only():
    env = workflow_job()["env"]
    built = subprocess.run(
        ["bash", str(ROOT / "docker" / "build.sh"), "--print-tag"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TORCH_VARIANT": env["TORCH_VARIANT"]},
    )
    assert built.returncode == 0, built.stderr
    plan = dry_run(KIND_CLUSTER=env["KIND_CLUSTER"], TORCH_VARIANT=env["TORCH_VARIANT"], IMAGE=built.stdout.strip())
    assert "docker tag" not in plan  # the build step's IMAGE is already the tag the run names
    words = kind_load(plan)
    assert words[3] == CPU_IMAGE
    assert words[words.index("--nodes") + 1].split(",") == kind_node_names(env["KIND_CLUSTER"])["worker"]


def test_services_script__check_reports_what_is_installed():
    present = all(
        os.access(p, os.X_OK) for p in ("/usr/bin/prometheus", "/usr/bin/prometheus-pushgateway", "/usr/bin/chromium")
    )
    out = subprocess.run(["bash", str(SERVICES), "--check"], capture_output=True, text=True, timeout=30)
    assert out.returncode == (0 if present else 1), out.stderr
