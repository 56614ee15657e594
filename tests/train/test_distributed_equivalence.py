"""Two gloo ranks (real processes started by torchrun) against one process with the same seed and config.

The property: a W-rank run IS the one-process run, cut by rank, except that BatchNorm layers which
normalise the whole batch in one process (the decoder's; the encoder's when α = 1) normalise each rank's
own images. So per step, losses, first-step gradients, and after a few steps every weight, the queue,
the key encoder and the (rank-averaged) BatchNorm statistics equal those of a one-process run whose
whole-batch BatchNorm layers use one group per rank (``PerRankBatchNorm2d`` below: a stand-in that states
the difference exactly), to float tolerance. Split BN (both encoders, α < 1), the key shuffle, the queue
and the projection heads' RunningNorm need no stand-in: they equal the unmodified one-process run, which
the trainer case (α = 0, no decoder) checks end to end through ``train_hybrid``.

The step cases with a decoder use SGD: the decoder's first bias feeds only BatchNorm layers, so its true
gradient is zero and AdamW turns the float noise left there into full-size, run-specific steps. AdamW is
checked by the trainer case, where every gradient is real.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_worker import DATA, global_batch
from torch import nn

from hybridmi.config import load_config
from hybridmi.data.synthetic import make_synthetic
from hybridmi.models.norm import SplitBatchNorm2d
from hybridmi.runtime import seed_everything
from hybridmi.train.hybrid import train_hybrid
from hybridmi.train.hybrid_step import HybridStep, build_models, make_optimizer, trainable

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
RANKS = 2
TINY = [
    "model.channels=8",
    "model.cells_32=0",
    "model.cells_16=1",
    "model.decoder_expand=2",
    "model.proj_hidden=32",
    "model.proj_dim=16",
    "objective.queue_size=64",
    "objective.temperature=0.2",
    "train.batch_size=16",
    "objective.bn_splits=4",
    "runtime.device=cpu",
    "runtime.precision=fp32",  # equal to float tolerance: bf16 autocast (auto on a CPU with native bf16) rounds to 1e-3
]
STEP_CASES = [
    {
        "name": "hybrid",
        "steps": 3,
        "views": 2,
        "overrides": [*TINY, "objective.alpha=0.5", "optim.name=sgd", "optim.grad_clip=1.0"],
    },
    {
        "name": "moco_asymmetric",
        "steps": 3,
        "views": 1,
        "overrides": [*TINY, "objective.alpha=0.0", "objective.symmetric=false", "optim.name=sgd"],
    },
    {"name": "autoencoder", "steps": 3, "views": 1, "overrides": [*TINY, "objective.alpha=1.0", "optim.name=sgd"]},
]
TRAINER = {
    "overrides": [
        *TINY,
        "objective.alpha=0.0",
        "train.epochs=2",
        "train.log_every=2",
        "train.checkpoint_every=4",
        "optim.warmup_epochs=0.5",
    ]
}


class PerRankBatchNorm2d(SplitBatchNorm2d):
    """Stand-in, one process: whole-batch BatchNorm as W ranks compute it, each over its own rows of each view.

    x (V·B, C, H, W) holds V views of B images; rank r's rows are [v·B + r·b, v·B + (r+1)·b) for each v.
    They are brought together, normalised as one group per rank (running statistics: the mean over ranks,
    what averaging them before a checkpoint gives), and put back in place.
    """

    def __init__(self, bn: nn.BatchNorm2d, *, views: int) -> None:
        super().__init__(bn.num_features, eps=bn.eps, momentum=bn.momentum)
        self.load_state_dict(bn.state_dict())
        self.views = views

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        order = torch.arange(x.shape[0]).view(self.views, RANKS, -1).transpose(0, 1).reshape(-1)  # rank-major
        self.group_size = x.shape[0] // RANKS
        return super().forward(x[order])[torch.argsort(order)]


def per_rank_batchnorm(module: nn.Module, *, views: int) -> None:
    """Replace every whole-batch BatchNorm2d in ``module`` by its per-rank stand-in."""
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d) and getattr(child, "group_size", None) is None:
                setattr(parent, name, PerRankBatchNorm2d(child, views=views))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One torchrun launch of 2 gloo ranks running every case; rank 0's results by case name."""
    out = tmp_path_factory.mktemp("ddp")
    cases = out / "cases.json"
    cases.write_text(
        json.dumps(
            {
                "steps": STEP_CASES,
                "trainer": TRAINER,
                "guard": True,
                "syncs": {"overrides": [*TINY, "objective.alpha=0.5", "optim.grad_clip=1.0"]},
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={RANKS}",
            str(WORKER),
            str(cases),
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return {path.stem: torch.load(path, weights_only=True) for path in out.glob("*.pt")} | {"dir": out}


def one_process(case: dict) -> dict:
    """The case in this process, with whole-batch BatchNorm cut per rank (the stand-in)."""
    cfg = load_config(None, case["overrides"])
    seed_everything(cfg.train.seed)
    autoencoder, moco = build_models(cfg)
    per_rank_batchnorm(autoencoder, views=case["views"])
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
    )
    images = make_synthetic(**DATA)[0].images
    generator = torch.Generator()
    losses, grads = [], {}
    for i in range(case["steps"]):
        generator.manual_seed(1000 + i)
        step(global_batch(images, i, cfg.train.batch_size, case.get("nan_at")), generator=generator, lr=3e-3)
        summary = step.guard.read()
        losses.append(summary.means)
        if i == 0:
            grads = {name: p.grad.clone() for name, p in named if p.grad is not None}
    modules = [autoencoder, *([moco] if moco is not None else [])]
    state = {
        f"{type(m).__name__}.{k}": v for m in modules for k, v in m.state_dict().items() if isinstance(v, torch.Tensor)
    }
    return {"losses": losses, "grads": grads, "state": state, "queue_ptr": moco.queue_ptr if moco is not None else None}


def assert_close_dicts(got: dict, want: dict, *, what: str) -> None:
    """Equal keys; tensors equal to float tolerance, the rest exactly.

    The absolute tolerance is relative to the largest value of the whole dict: a gradient whose true value
    is zero (a bias that only feeds BatchNorm) holds float noise of the size of the sums it came from.
    """
    assert got.keys() == want.keys(), what
    floats = [v for v in want.values() if torch.is_tensor(v) and v.is_floating_point() and v.numel()]
    scale = max(v.detach().abs().max().item() for v in floats) if floats else 0.0
    for key, value in want.items():
        if not torch.is_tensor(value):
            assert got[key] == value, f"{what} {key}"
            continue
        torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5 * scale, msg=lambda m: f"{what} {key}: {m}")


@pytest.mark.parametrize("case", STEP_CASES, ids=[c["name"] for c in STEP_CASES])
def test_two_ranks__equal_one_process_with_batchnorm_cut_per_rank(two_ranks, case):
    got, want = two_ranks[case["name"]], one_process(case)
    assert got["ranks_agree"]  # every rank holds the same weights, queue, key encoder and statistics
    for step, (g, w) in enumerate(zip(got["losses"], want["losses"]), start=1):
        assert g.keys() == w.keys()
        for term in w:
            assert (math.isnan(g[term]) and math.isnan(w[term])) or g[term] == pytest.approx(w[term], rel=1e-5), (
                step,
                term,
            )
    assert_close_dicts(got["grads"], want["grads"], what="first-step gradient")
    assert_close_dicts(got["state"], want["state"], what="state after the last step")
    assert got["queue_ptr"] == want["queue_ptr"]


def test_two_ranks__train_hybrid_equals_one_process_without_any_stand_in(two_ranks, tmp_path):
    cfg = load_config(None, TRAINER["overrides"])

    class Reports:
        losses = []

        def on_step(self, m):
            self.losses.append((m.step, m.loss, m.terms))

    reports = Reports()
    result = train_hybrid(cfg, make_synthetic(**DATA)[0], out_dir=tmp_path, callbacks=[reports])
    got = two_ranks["trainer"]
    assert [r[0] for r in got["reports"]] == [r[0] for r in reports.losses] == [2, 4, 6, 8]
    assert [r[1] for r in got["reports"]] == pytest.approx([r[1] for r in reports.losses], rel=1e-5)
    ranked = torch.load(got["checkpoint"], weights_only=True)
    single = torch.load(result.checkpoint, weights_only=True)
    assert ranked["step"] == single["step"] == 8
    for part in ("autoencoder", "moco"):
        assert_close_dicts(ranked[part], single[part], what=part)
    for (i, a), (_, b) in zip(ranked["optimizer"]["state"].items(), single["optimizer"]["state"].items()):
        assert_close_dicts(
            {k: v for k, v in a.items() if torch.is_tensor(v)},
            {k: v for k, v in b.items() if torch.is_tensor(v)},
            what=f"optimizer state {i}",
        )


def test_finite_guard__a_loss_bad_on_one_rank_stops_every_rank(two_ranks):
    stop = two_ranks["guard"]
    assert [o["weights_kept"] for o in stop] == [True] * RANKS
    assert all("non-finite loss at step 1: loss=nan" in o["error"] for o in stop)  # both ranks report the global mean


def test_ddp_step__adds_collectives_but_no_host_sync(two_ranks):
    assert two_ranks["syncs"] == [{"syncing_ops": [], "host_reads": []}] * RANKS
