"""The hybrid step: no host synchronisation, a NaN batch dropped and named, the α = 1 baseline's views."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hybridmi.config import config_from_dict
from hybridmi.data.augment import to_float
from hybridmi.models.norm import RunningNorm
from hybridmi.train.guard import NonFiniteError
from hybridmi.train.hybrid_step import HybridStep, build_models, make_optimizer, trainable

# Operators that make the host wait for the device: reading a value (item/bool/int/float/tolist all end in
# _local_scalar_dense) or producing a shape that depends on values.
SYNCING_OPS = {
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::masked_select",
    "aten::is_nonzero",
    "aten::equal",
    "aten::_unique2",
    "aten::unique_consecutive",
    "aten::unique_dim",
    "aten::repeat_interleave",
    "aten::masked_scatter",
    "aten::index_put_with_bool",
}
HOST_READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy")


class SyncCounter(TorchDispatchMode):
    """Records every syncing operator dispatched while active."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        is_bool_index = name == "aten::index.Tensor" and any(
            t is not None and t.dtype == torch.bool for t in (args[1] if len(args) > 1 else [])
        )
        if name in SYNCING_OPS or is_bool_index:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


@pytest.fixture
def host_reads(monkeypatch):
    """Counts Python-level reads of tensor values (the calls a step must never make)."""
    calls = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def _with(cfg, *overrides):
    return config_from_dict(cfg.model_dump(mode="json"), list(overrides))


def _trainer(cfg):
    ae, moco = build_models(cfg)
    ae.train()
    optimizer = make_optimizer(trainable(ae, moco), cfg)
    step = HybridStep(
        ae,
        moco,
        optimizer,
        alpha=cfg.objective.alpha,
        grad_clip=cfg.optim.grad_clip,
        autoencoder_views=cfg.objective.autoencoder_views,
    )
    return ae, moco, optimizer, step


@pytest.mark.parametrize(
    "overrides",
    [
        ("objective.alpha=0.5",),
        ("objective.alpha=0.0",),
        ("objective.alpha=1.0",),
        ("objective.alpha=0.5", "optim.grad_clip=1.0"),
        ("objective.alpha=0.5", "objective.symmetric=false", "optim.name=sgd"),
    ],
)
def test_step__makes_no_host_sync(tiny_cfg, tiny_data, host_reads, overrides):
    cfg = _with(tiny_cfg, *overrides)
    _, _, _, step = _trainer(cfg)
    images = tiny_data[0].images
    generator = torch.Generator()
    batches = [to_float(images[i * 16 : (i + 1) * 16]) for i in range(3)]
    with SyncCounter() as counter:
        for i, batch in enumerate(batches):
            generator.manual_seed(i)
            step(batch, generator=generator, lr=1e-3)
    assert counter.calls == [] and host_reads == []
    summary = step.guard.read()  # the trainer's read every few steps: the one place values come back
    assert summary.steps == 3 and host_reads


def test_step__nan_batch_is_named_and_its_update_never_lands_in_the_weights(tiny_cfg, tiny_data):
    ae, moco, optimizer, step = _trainer(tiny_cfg)
    batch = to_float(tiny_data[0].images[:16])
    generator = torch.Generator().manual_seed(0)
    step(batch, generator=generator, lr=1e-3)
    state = lambda: {"ae": ae.state_dict(), "moco": moco.state_dict(), "opt": optimizer.state_dict()}  # noqa: E731
    before = {k: v.clone() for k, v in _flat(state()).items()}
    bad = batch.clone()
    bad[5] = float("nan")
    step(bad, generator=generator, lr=1e-3)
    after = _flat(state())
    weights = [f"ae.{n}" for n, _ in ae.named_parameters()] + [k for k in before if k.startswith("opt.")]
    assert [k for k in weights if not torch.equal(before[k], after[k])] == []  # the update was not applied
    with pytest.raises(
        NonFiniteError,
        match=r"non-finite loss at step 2: loss=nan \(recon=nan, infonce=nan\); "
        r"first non-finite gradient autoencoder\.encoder\.stem\.weight",
    ):
        step.guard.read()


def _flat(state, prefix=""):
    out = {}
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, torch.Tensor):
            out[name] = value
    return out


def test_autoencoder_baseline__trains_on_clean_images_with_flips(tiny_cfg, tiny_data):
    batch = to_float(tiny_data[0].images[:16])
    views = {}
    for kind in ("flip", "clean", "moco"):
        _, moco, _, step = _trainer(_with(tiny_cfg, "objective.alpha=1.0", f"objective.autoencoder_views={kind}"))
        assert moco is None
        views[kind], keys, perm = step.views(batch, torch.Generator().manual_seed(0))
        assert keys is None and perm is None and views[kind].shape == batch.shape
    assert torch.equal(views["clean"], batch)
    mirrored = [torch.equal(v, x.flip(-1)) for v, x in zip(views["flip"], batch)]
    assert all(torch.equal(v, x) or m for v, x, m in zip(views["flip"], batch, mirrored))  # each image or its mirror
    assert 0 < sum(mirrored) < len(batch)
    assert not any(torch.equal(v, x) or torch.equal(v, x.flip(-1)) for v, x in zip(views["moco"], batch))


def test_hybrid__reconstructs_both_moco_views_in_one_pass(tiny_cfg, tiny_data):
    _, moco, _, step = _trainer(tiny_cfg)
    batch = to_float(tiny_data[0].images[:16])
    x, key_x, perm = step.views(batch, torch.Generator().manual_seed(0))
    assert x.shape == (32, 3, 32, 32) and key_x is x and sorted(perm.tolist()) == list(range(32))
    assert not torch.equal(x[:16], batch) and not torch.equal(x[:16], x[16:])  # two augmented views


def test_head_lr_scale__gives_the_head_its_own_learning_rate_and_one_group_at_scale_one(tiny_cfg, tiny_data):
    batch = to_float(tiny_data[0].images[:16])
    ae, moco, optimizer, step = _trainer(_with(tiny_cfg, "optim.head_lr_scale=0.25"))
    step(batch, generator=torch.Generator().manual_seed(0), lr=4e-3)
    body, head = optimizer.param_groups
    assert (body["lr"], head["lr"]) == (4e-3, 1e-3)
    assert {id(p) for p in head["params"]} == {id(p) for p in moco.head_q.parameters()}
    assert len(body["params"]) == len(list(ae.parameters()))
    _, _, optimizer, step = _trainer(tiny_cfg)
    step(batch, generator=torch.Generator().manual_seed(0), lr=4e-3)
    assert [g["lr"] for g in optimizer.param_groups] == [4e-3]


def test_standardize_y__off_gives_the_published_mlp_on_raw_y(tiny_cfg, tiny_data):
    batch = to_float(tiny_data[0].images[:16])
    for standardize in (True, False):
        _, moco, _, step = _trainer(_with(tiny_cfg, f"model.standardize_y={str(standardize).lower()}"))
        norms = [m for m in moco.head_q.modules() if isinstance(m, RunningNorm)]
        assert len(norms) == int(standardize) and len([*moco.head_k.modules()]) == len([*moco.head_q.modules()])
        step(batch, generator=torch.Generator().manual_seed(0), lr=1e-3)
        assert step.guard.read().steps == 1


def test_channels_last__end_to_end_gives_the_contiguous_step_and_keeps_the_key_side_in_layout(tiny_cfg, tiny_data):
    batch = to_float(tiny_data[0].images[:16])
    losses = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        ae, moco = build_models(tiny_cfg)
        if channels_last:
            moco.to(memory_format=torch.channels_last)  # the key encoder too, not only the autoencoder
        ae.train()
        optimizer = make_optimizer(trainable(ae, moco), tiny_cfg)
        step = HybridStep(ae, moco, optimizer, alpha=0.5, grad_clip=0.0, channels_last=channels_last)
        x, _, _ = step.views(batch, torch.Generator().manual_seed(0))
        assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
        convs = [m.weight for m in moco.encoder_k.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1]
        assert all(w.is_contiguous(memory_format=torch.channels_last) == channels_last for w in convs)
        step(batch, generator=torch.Generator().manual_seed(1), lr=1e-3)
        losses[channels_last] = step.guard.read().means
    for key in losses[False]:
        assert losses[True][key] == pytest.approx(losses[False][key], rel=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_step__makes_no_host_sync_on_cuda(tiny_cfg, tiny_data):
    cfg = _with(tiny_cfg, "runtime.device=cuda")
    ae, moco = build_models(cfg)
    ae.to("cuda", memory_format=torch.channels_last).train(), moco.to("cuda", memory_format=torch.channels_last)
    optimizer = make_optimizer(trainable(ae, moco), cfg)
    step = HybridStep(ae, moco, optimizer, alpha=0.5, grad_clip=1.0, amp=torch.bfloat16, channels_last=True)
    batch, generator = to_float(tiny_data[0].images[:16].cuda()), torch.Generator(device="cuda")
    step(batch, generator=generator.manual_seed(0), lr=1e-3)  # lazily created state first
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(3):
            step(batch, generator=generator.manual_seed(i + 1), lr=1e-3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert step.guard.read().steps == 4
