"""Stage export on the tiny chain's artifacts: a finished artifact that is a loadable package drawing the run's
samples."""

import torch

from hybridmi.eval.samples import first_samples, to_uint8
from hybridmi.package import describe_package, load_package
from hybridmi.stages import run_stage
from hybridmi.stages.common import read_sidecar


def test_export_stage__its_package_generates_the_sample_stages_images(chain, tmp_path):
    cfg, art, _, _ = chain
    out = tmp_path / "package"
    metrics = run_stage("export", cfg, {k: art[k] for k in ("model", "ddim")}, {"package": out})
    sidecar = read_sidecar(out)
    assert sidecar["stage"] == "export" and "ddim" in sidecar["upstream"]  # the chain's model has no sidecar
    assert metrics["package_bytes"] > 0
    assert describe_package(out)["config_hash"] == cfg.hash() == sidecar["config_hash"]
    package = load_package(out)  # artifact.json beside the package's files is not part of it
    stored = first_samples(art["samples"], cfg.sampling.num_samples)
    assert torch.equal(to_uint8(package.generate(cfg.sampling.num_samples)), stored)  # the config's sampler
