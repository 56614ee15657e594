"""MODEL_CARD.md of a package: what it holds, the data, the training budget and the run's Table-1 numbers."""

from __future__ import annotations

from typing import Any, Mapping

from hybridmi.config import Config
from hybridmi.paper import TABLE1, paper_dataset

# (metric key, label, scale, paper key): the Table-1 numbers a run's probe, reconstruction and fid stages write.
RESULTS = (
    ("linear_acc_z", "linear accuracy on z (%)", 100.0, "acc"),
    ("linear_acc_y", "linear accuracy on y (%)", 100.0, None),
    ("linear_acc_yhat", "linear accuracy on ŷ (%)", 100.0, None),
    ("mse", "MSE (Σ over 3072 values)", 1.0, "mse"),
    ("psnr", "PSNR (dB)", 1.0, None),
    ("fid", "FID", 1.0, "fid"),
)


def _data(cfg: Config, dataset_checksum: str | None) -> str:
    d = cfg.data
    where = {"synthetic": f"{d.synthetic_classes} classes, {d.synthetic_train} train images"}.get(d.source, d.root)
    checksum = f", data set checksum `{dataset_checksum}`" if dataset_checksum else ""
    return f"`{d.source}`" + (f" ({where})" if where else "") + checksum


def _results(cfg: Config, results: Mapping[str, float]) -> list[str]:
    if not any(key in results for key, *_ in RESULTS):
        return [
            "No evaluation results were given (`hybridmi export --metrics DIR`: the run's probe, reconstruction, fid)."
        ]
    dataset = paper_dataset(cfg.data.source)
    paper = TABLE1["Hybrid"].get(dataset, {}) if dataset else {}
    lines = ["| metric | this run | paper (Hybrid) |", "|---|---|---|"]
    for key, label, scale, paper_key in RESULTS:
        if key in results:
            ref = paper.get(paper_key) if paper_key else None
            lines.append(f"| {label} | {scale * results[key]:.4g} | {'—' if ref is None else f'{ref:g}'} |")
    if "fid_num_samples" in results and "fid_reference_count" in results:
        n, count = results["fid_num_samples"], results["fid_reference_count"]
        lines.append(f"\nFID of {n:g} samples against {count:g} reference images.")
    return lines


def model_card(cfg: Config, manifest: Mapping[str, Any], *, results: Mapping[str, float]) -> str:
    """The card's Markdown; ``results``: the run's evaluation metrics (probe, reconstruction, fid) where known."""
    t, latent, sampler = manifest["training"], manifest["latent"], manifest["sampler"]
    c, size = latent["contrastive_channels"], latent["size"]
    minutes = cfg.train.time_budget_minutes
    budget = f"{cfg.train.epochs:g} epochs" if minutes is None else f"a {minutes:g}-minute budget"
    hybrid_steps = "?" if t["hybrid_steps"] is None else t["hybrid_steps"]
    lines = [
        f"# hybridmi model `{cfg.name}`",
        "",
        "Hybrid autoencoder + MoCo-v2 representation (Sinha, Song, Ermon) with a latent DDIM generator, exported by "
        f"hybridmi {manifest['code_version']} (config hash `{manifest['config_hash']}`).",
        "",
        "- **input**: RGB images (B, 3, 32, 32) in [0, 1]",
        f"- **representation**: z (B, {latent['channels']}, {size}, {size}) = [y, ŷ]; y = the first {c} channels "
        f"(contrastive, α = {cfg.objective.alpha:g}), ŷ = the other {latent['channels'] - c}",
        f"- **generation**: DDIM on standardised z, {manifest['schedule']['num_timesteps']} training timesteps "
        f"({manifest['schedule']['beta_schedule']} β); defaults {sampler['steps']} steps, η = {sampler['eta']:g}, "
        f"{sampler['spacing']} spacing",
        f"- **data**: {_data(cfg, t.get('dataset_checksum'))}",
        f"- **training**: hybrid model {hybrid_steps} steps of {cfg.train.batch_size} images (planned: {budget}); "
        f" DDIM {t['ddim_steps']} steps of {cfg.ddim.batch_size} latents ({cfg.ddim.epochs:g} epochs)",
        "",
        "## Results",
        "",
        *_results(cfg, results),
        "",
        "## Use",
        "",
        "`load.py` in this directory loads the package with torch alone (no hybridmi): it checks `checksums.json`, "
        "then `encode(images) -> (z, y, ŷ)`, `decode(z)`, `generate(n, steps=, eta=, seed=)`. Or: "
        "`hybridmi encode|decode|generate --model THIS_DIRECTORY ...`.",
        "",
    ]
    return "\n".join(lines)
