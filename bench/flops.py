"""FLOPs per training image of the hybrid step, the FLOP/s it achieves, and the matmul peak beside it (MFU).

FLOPs are matmuls and convolutions of one whole training step (both views, the key pass, decoder, heads,
InfoNCE, backward), counted by ``FlopCounterMode``; the peak is a square matrix product timed in the same
run (fp32 on a CPU, bf16 on a GPU), so the utilisation needs no datasheet number.

    .venv/bin/python bench/flops.py --presets smoke cpu --count-only cifar10 --steps 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from hybridmi.config import Config, load_config  # noqa: E402
from hybridmi.data.augment import to_float  # noqa: E402
from hybridmi.runtime import choose_device, compute_policy  # noqa: E402
from hybridmi.train.hybrid_step import HybridStep, build_models, make_optimizer, trainable  # noqa: E402


def preset(name: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A preset from configs/ by name (or a path to a YAML file), with overrides."""
    path = Path(name) if name.endswith(".yaml") else ROOT / "configs" / f"{name}.yaml"
    return load_config(path, list(overrides))


def build_step(cfg: Config, device: torch.device, *, compile: bool | None = None, group=None, kind=HybridStep):
    """The trainer's own step on ``device``, as train_hybrid builds it; ``group``: this rank's process group."""
    autoencoder, moco = build_models(cfg)
    rt = cfg.runtime
    policy = compute_policy("autoencoder", device, precision=rt.precision, channels_last=rt.channels_last)
    for module in (autoencoder, moco):
        if module is not None:
            module.to(device, memory_format=torch.channels_last) if policy.channels_last else module.to(device)
    autoencoder.train()
    return kind(
        autoencoder,
        moco,
        make_optimizer(trainable(autoencoder, moco), cfg),
        alpha=cfg.objective.alpha,
        grad_clip=cfg.optim.grad_clip,
        autoencoder_views=cfg.objective.autoencoder_views,
        amp=policy.dtype,
        channels_last=policy.channels_last,
        compile=cfg.runtime.compile if compile is None else compile,
        group=group,
    )


def random_batch(batch_size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """(B, 3, 32, 32) in [0, 1] from random uint8 pixels (FLOPs and speed do not depend on content)."""
    g = torch.Generator().manual_seed(seed)
    return to_float(torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8, generator=g).to(device))


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, *rest, **kw):
    """A convolution's backward: the input and the weight gradient each cost its forward FLOPs.

    torch's own formula treats a depthwise convolution's weight gradient as dense (30x too many on `smoke`).
    """
    output_mask = rest[2]  # after output_padding and groups
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def image_flops(cfg: Config, device: torch.device | str = "cpu", *, count_batch: int = 64) -> float:
    """Matmul + convolution FLOPs per training image, forward and backward, counted on ``count_batch`` images."""
    device = torch.device(device)
    batch_size = min(count_batch, cfg.train.batch_size)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": batch_size})})
    step = build_step(cfg, device, compile=False)
    mapping = {torch.ops.aten.convolution_backward: conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        step(random_batch(batch_size, device), generator=torch.Generator(device=device).manual_seed(0), lr=1e-4)
    return counter.get_total_flops() / batch_size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, *, repeats: int = 10) -> dict[str, Any]:
    """Measured FLOP/s of an n x n matrix product: bf16 at n = 8192 on a GPU, fp32 at n = 1024 on a CPU."""
    dtype, n = (torch.bfloat16, 8192) if device.type == "cuda" else (torch.float32, 1024)
    g = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, device=device, dtype=dtype, generator=g) for _ in range(2))
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    seconds = (time.perf_counter() - start) / repeats
    return {"flop_per_s": 2 * n**3 / seconds, "dtype": str(dtype).removeprefix("torch."), "n": n}


def images_per_s(step: HybridStep, batch_size: int, device: torch.device, *, steps: int, warmup: int) -> float:
    """Images/s of ``steps`` training steps after ``warmup`` (compilation included there), device-synchronised."""
    batches = [random_batch(batch_size, device, seed=i) for i in range(min(4, steps + warmup))]
    generator = torch.Generator(device=device)
    for i in range(warmup + steps):
        if i == warmup:
            step.guard.read()  # waits for the device
            start = time.perf_counter()
        step(batches[i % len(batches)], generator=generator.manual_seed(i), lr=1e-4)
    step.guard.read()
    return steps * batch_size / (time.perf_counter() - start)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "cpu"], help="presets counted and timed")
    parser.add_argument("--count-only", nargs="*", default=["cifar10"], help="presets only counted")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override a.b=v")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    device = choose_device(args.device)
    peak = matmul_peak(device)
    print(f"{machine(device)}; matmul peak {peak['flop_per_s'] / 1e12:.3f} TFLOP/s ({peak['dtype']}, n={peak['n']})")
    print("| preset | batch | GFLOP/image | images/s | achieved TFLOP/s | utilisation |\n|---|---|---|---|---|---|")
    rows = []
    for name in [*args.presets, *args.count_only]:
        cfg = preset(name, args.overrides)
        row = {"preset": name, "batch_size": cfg.train.batch_size, "flops_per_image": image_flops(cfg, device)}
        speed = "– | – | –"
        if name in args.presets:
            row["images_per_s"] = images_per_s(
                build_step(cfg, device), cfg.train.batch_size, device, steps=args.steps, warmup=args.warmup
            )
            achieved = row["flops_per_image"] * row["images_per_s"]
            row["utilisation"] = achieved / peak["flop_per_s"]
            speed = f"{row['images_per_s']:.0f} | {achieved / 1e12:.4f} | {100 * row['utilisation']:.1f} %"
        rows.append(row)
        print(f"| {name} | {row['batch_size']} | {row['flops_per_image'] / 1e9:.3f} | {speed} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(device), "peak": peak, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
