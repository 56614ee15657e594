"""One rank of the distributed equivalence tests, started by torchrun; rank 0 saves what the run produced.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/train/ddp_worker.py CASES.json OUT_DIR

CASES.json: {"steps": [{"name", "overrides", "steps", "nan_at"}...], "trainer": {"overrides"}, "guard": true,
"syncs": {"overrides"}}. Each step case
runs HybridStep for ``steps`` global batches of the synthetic split (this rank's rows of each), reading the
finite guard after every step; ``nan_at`` = (step, image) makes one image of that global batch NaN.
The trainer case runs train_hybrid. The guard case records a loss that is NaN on rank 1 only (its gradients
finite, so DDP's averaging cannot spread it) and saves what FiniteGuard did on each rank. The syncs case
counts, on every rank, the operators and Python calls that would make the host wait for the device in two
DDP steps (after one warm-up step), as test_hybrid_step.py does for one process. OUT_DIR/<name>.pt holds rank 0's losses, first-step gradients, final
state (BatchNorm statistics averaged over ranks, as a checkpoint has them) and whether all ranks agree.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from hybridmi.config import load_config
from hybridmi.data.augment import to_float
from hybridmi.data.synthetic import make_synthetic
from hybridmi.runtime import seed_everything
from hybridmi.train.distributed import RankGroup, Ranks, process_group
from hybridmi.train.guard import FiniteGuard, NonFiniteError, fused_optimizer
from hybridmi.train.hybrid import train_hybrid
from hybridmi.train.hybrid_step import HybridStep, build_models, make_optimizer, trainable

DATA = dict(num_classes=4, n_train=64, n_test=16, seed=0)


def global_batch(images: torch.Tensor, i: int, batch_size: int, nan_at: list[int] | None) -> torch.Tensor:
    batch = to_float(images[i * batch_size : (i + 1) * batch_size])
    if nan_at is not None and nan_at[0] == i:
        batch[nan_at[1]] = float("nan")
    return batch


def all_agree(group: RankGroup, tensors: list[torch.Tensor]) -> bool:
    """True when every rank holds bit-identical values of ``tensors``."""
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    gathered = group.all_gather(flat[None])
    return bool((gathered == gathered[0]).all())


def run_steps(case: dict, group: RankGroup, out_dir: Path) -> None:
    cfg = load_config(None, case["overrides"])
    seed_everything(cfg.train.seed)
    autoencoder, moco = build_models(cfg)
    autoencoder.train()
    named = trainable(autoencoder, moco)
    optimizer = make_optimizer(named, cfg)
    step = HybridStep(
        autoencoder,
        moco,
        optimizer,
        alpha=cfg.objective.alpha,
        grad_clip=cfg.optim.grad_clip,
        autoencoder_views=cfg.objective.autoencoder_views,
        group=group,
    )
    images = make_synthetic(**DATA)[0].images
    batch_size = cfg.train.batch_size
    generator = torch.Generator()
    losses, grads = [], {}
    for i in range(case["steps"]):
        generator.manual_seed(1000 + i)
        step(
            global_batch(images, i, batch_size, case.get("nan_at"))[group.shard(batch_size)],
            generator=generator,
            lr=3e-3,
        )
        summary = step.guard.read()
        losses.append(summary.means)
        if i == 0:
            grads = {name: p.grad.clone() for name, p in named if p.grad is not None}
    modules = [autoencoder, *([moco] if moco is not None else [])]
    group.average_([b for m in modules for b in m.buffers()])
    state = {
        f"{type(m).__name__}.{k}": v for m in modules for k, v in m.state_dict().items() if isinstance(v, torch.Tensor)
    }
    agree = all_agree(group, list(state.values()))
    if group.main:
        torch.save(
            {
                "losses": losses,
                "grads": grads,
                "state": state,
                "ranks_agree": agree,
                "queue_ptr": moco.queue_ptr if moco is not None else None,
            },
            out_dir / f"{case['name']}.pt",
        )


class Reports:
    def __init__(self) -> None:
        self.losses: list[tuple[int, float, dict]] = []

    def on_step(self, m) -> None:
        self.losses.append((m.step, m.loss, m.terms))


def run_trainer(case: dict, group: RankGroup, out_dir: Path) -> None:
    cfg = load_config(None, case["overrides"])
    reports = Reports()
    result = train_hybrid(cfg, make_synthetic(**DATA)[0], out_dir=out_dir / "trainer", callbacks=[reports], group=group)
    if group.main:
        torch.save({"reports": reports.losses, "checkpoint": str(result.checkpoint)}, out_dir / "trainer.pt")


def run_guard(group: RankGroup, out_dir: Path) -> None:
    model = torch.nn.Linear(4, 1)
    optimizer = fused_optimizer("sgd", list(model.parameters()), lr=0.1, momentum=0.0, weight_decay=0.0)
    guard = FiniteGuard(optimizer=optimizer, named_params=list(model.named_parameters()), terms=[], across_ranks=group)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.ones(2, 4)).square().mean()
    loss.backward()
    recorded = torch.full((), float("nan")) if group.rank == 1 else loss  # non-finite on rank 1 only
    guard.check_gradients(recorded, [])
    optimizer.step()
    guard.end()
    try:
        guard.read()
        outcome = {}
    except NonFiniteError as exc:
        outcome = {"error": str(exc)}
    outcome["weights_kept"] = all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    outcomes = [None] * group.world_size
    torch.distributed.all_gather_object(outcomes, outcome)
    if group.main:
        torch.save(outcomes, out_dir / "guard.pt")


def run_syncs(case: dict, group: RankGroup, out_dir: Path) -> None:
    from test_hybrid_step import HOST_READS, SyncCounter

    cfg = load_config(None, case["overrides"])
    seed_everything(cfg.train.seed)
    autoencoder, moco = build_models(cfg)
    autoencoder.train()
    optimizer = make_optimizer(trainable(autoencoder, moco), cfg)
    step = HybridStep(
        autoencoder, moco, optimizer, alpha=cfg.objective.alpha, grad_clip=cfg.optim.grad_clip, group=group
    )
    images, batch_size = make_synthetic(**DATA)[0].images, cfg.train.batch_size
    batches = [global_batch(images, i, batch_size, None)[group.shard(batch_size)] for i in range(3)]
    generator = torch.Generator()
    step(batches[0], generator=generator.manual_seed(0), lr=1e-3)  # DDP builds its buckets in the first step
    reads, originals = [], {name: getattr(torch.Tensor, name) for name in HOST_READS}
    for name, original in originals.items():
        setattr(
            torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: (reads.append(_n), _o(self, *a, **k))[1]
        )
    try:
        with SyncCounter() as counter:
            for i, batch in enumerate(batches[1:], start=1):
                step(batch, generator=generator.manual_seed(i), lr=1e-3)
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    counts = [None] * group.world_size
    torch.distributed.all_gather_object(counts, {"syncing_ops": counter.calls, "host_reads": reads})
    if group.main:
        torch.save(counts, out_dir / "syncs.pt")


def main(cases_path: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    cases = json.loads(Path(cases_path).read_text())
    with process_group(Ranks.from_env(os.environ), torch.device("cpu")) as group:
        for case in cases.get("steps", []):
            run_steps(case, group, Path(out_dir))
        if cases.get("trainer"):
            run_trainer(cases["trainer"], group, Path(out_dir))
        if cases.get("guard"):
            run_guard(group, Path(out_dir))
        if cases.get("syncs"):
            run_syncs(cases["syncs"], group, Path(out_dir))


if __name__ == "__main__":
    main(*sys.argv[1:])
