"""Stage latents: encode train (+ flips) and test; stats.json holds the train latents' per-channel mean/std."""

from __future__ import annotations

from pathlib import Path

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.eval.latents import DTYPES, LatentSet, channel_stats, extract_latents, save_latents, save_stats
from hybridmi.models.serialize import load_autoencoder
from hybridmi.runtime import choose_device
from hybridmi.stages.common import finish_output, report_eval

INPUTS = ("dataset", "model")
OUTPUTS = ("latents",)


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    device = choose_device(cfg.runtime.device)
    train, test = load_dataset(inputs["dataset"])
    model = load_autoencoder(inputs["model"] / "model.pt", device=device)
    out, lc = outputs["latents"], cfg.latents
    sets, dtype = {}, DTYPES[lc.dtype]
    for name, split, flip in (("train", train, lc.flip), ("test", test, False)):
        z = extract_latents(model, split.images, batch_size=lc.batch_size, device=device, flip=flip, dtype=dtype)
        sets[name] = LatentSet(z, split.labels.repeat(2) if flip else split.labels, flip, split.checksum)
        save_latents(out / f"{name}.pt", sets[name])
    mean, std = channel_stats(sets["train"].latents)
    save_stats(out / "stats.json", mean, std, count=len(sets["train"].latents))
    metrics = {f"latents_{name}": float(len(s.latents)) for name, s in sets.items()}
    metrics |= {"latent_mean_abs": float(mean.abs().mean()), "latent_std_mean": float(std.mean())}
    report_eval(callbacks, metrics)
    finish_output(out, cfg, stage="latents", metrics=metrics)
    return metrics
