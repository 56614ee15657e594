"""Export a trained run as one self-contained directory that torch alone can load (hybridmi/package/loader.py)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from hybridmi.config import Config, load_config, write_config
from hybridmi.errors import MissingInput, UsageError
from hybridmi.models.serialize import load_autoencoder
from hybridmi.package import loader
from hybridmi.package.card import model_card
from hybridmi.package.programs import export_programs
from hybridmi.runtime import atomic_write_bytes, code_version, write_json
from hybridmi.train.ddim import load_ddim
from hybridmi.train.sampling import load_sampler

log = logging.getLogger(__name__)

LOADER = "load.py"
CARD = "MODEL_CARD.md"
CONFIG = "config.yaml"


def _metrics(directory: Path) -> dict[str, float]:
    path = Path(directory) / "metrics.json"
    if not path.is_file():
        raise MissingInput(f"{path} does not exist (metrics_dirs names finished evaluation artifacts)")
    return json.loads(path.read_text())


def _config(config: Config | None, ddim_dir: Path) -> Config:
    if config is not None:
        return config
    if not (ddim_dir / CONFIG).is_file():
        raise MissingInput(f"{ddim_dir / CONFIG} does not exist: pass the run's config")
    return load_config(ddim_dir / CONFIG)


def export_package(
    model_dir: str | Path,
    ddim_dir: str | Path,
    out_dir: str | Path,
    *,
    latents_dir: str | Path | None = None,
    config: Config | None = None,
    metrics_dirs: Iterable[str | Path] = (),
) -> dict[str, Any]:
    """Write the package of a model artifact (``model.pt``) and a DDIM artifact into ``out_dir``; its manifest.

    ``config`` (default: the DDIM artifact's config.yaml) gives the y / ŷ split and the sampler defaults;
    ``latents_dir``: check the DDIM's standardisation against its stats.json; ``metrics_dirs``: the run's probe,
    reconstruction and fid outputs, whose numbers go into the model card. ``checksums.json`` is written last and
    lists every file the export wrote.
    """
    model_dir, ddim_dir, out = Path(model_dir), Path(ddim_dir), Path(out_dir)
    cfg = _config(config, ddim_dir)
    results = {k: v for d in metrics_dirs for k, v in _metrics(Path(d)).items()}
    if latents_dir is not None:  # the sample stage's check: the DDIM was trained on these latents
        try:
            ddim, autoencoder = load_sampler(ddim=ddim_dir, latents=Path(latents_dir), model=model_dir, device="cpu")
        except ValueError as exc:  # other statistics: not this DDIM's latents
            raise UsageError(str(exc)) from None
    else:
        ddim, autoencoder = load_ddim(ddim_dir, device="cpu"), load_autoencoder(model_dir / "model.pt", device="cpu")
    extras = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)
    latent = autoencoder.init_args["latent_channels"]
    if not 0 < cfg.model.contrastive_channels < latent or ddim.mean.shape != (latent,):
        raise UsageError(
            f"config model.contrastive_channels {cfg.model.contrastive_channels} or the DDIM's {len(ddim.mean)} "
            f"latent channels do not fit the autoencoder's {latent} in {model_dir}"
        )
    if cfg.sampling.steps > len(ddim.alphas_cumprod):
        raise UsageError(f"sampling.steps {cfg.sampling.steps} exceeds the DDIM's {len(ddim.alphas_cumprod)} timesteps")
    start = time.monotonic()
    programs = export_programs(autoencoder, ddim.unet)
    log.info("exported the encoder, decoder and denoiser in %.1f s", time.monotonic() - start)
    sampling, diffusion = cfg.sampling, cfg.diffusion
    manifest = {
        "format": loader.FORMAT,
        "kind": loader.KIND,
        "code_version": code_version(),
        "config_hash": cfg.hash(),
        "created_unix": time.time(),
        "programs": {name: f"{name}.pt2" for name in loader.PROGRAMS},
        "image": {"channels": 3, "size": 32, "range": [0.0, 1.0]},
        "latent": {"channels": latent, "size": 16, "contrastive_channels": cfg.model.contrastive_channels},
        "standardisation": {"mean": ddim.mean.double().tolist(), "std": ddim.std.double().tolist()},  # float64
        "schedule": {
            "beta_schedule": diffusion.beta_schedule,
            "num_timesteps": len(ddim.alphas_cumprod),
            "alphas_cumprod": ddim.alphas_cumprod.double().cpu().tolist(),  # ᾱ_t, float64 (exact through JSON)
        },
        "sampler": sampling.model_dump(include={"steps", "eta", "spacing", "batch_size", "seed"}),
        "training": {
            "hybrid_steps": extras.get("step"),  # None: a model file saved without its step
            "ddim_steps": ddim.step,
            "dataset_checksum": extras.get("dataset_checksum"),
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, program in programs.items():
        torch.export.save(program, out / manifest["programs"][name])
    write_json(out / loader.MANIFEST, manifest)
    write_config(cfg, out, CONFIG)
    atomic_write_bytes(out / LOADER, Path(loader.__file__).read_bytes())  # the same code hybridmi.package runs
    atomic_write_bytes(out / CARD, model_card(cfg, manifest, results=results).encode())
    written = [*manifest["programs"].values(), loader.MANIFEST, CONFIG, LOADER, CARD]
    write_json(out / loader.CHECKSUMS, {"algorithm": "sha256", "files": {n: loader.sha256(out / n) for n in written}})
    return manifest
