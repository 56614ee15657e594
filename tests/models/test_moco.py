"""MoCo on y: queue, momentum update, split/shuffled BN on both sides, the contrastive step and the objective."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hybridmi.losses import hybrid_loss, info_nce, reconstruction_loss
from hybridmi.models.autoencoder import Autoencoder
from hybridmi.models.moco import MoCo, ProjectionHead, stratified_permutation
from hybridmi.models.norm import RunningNorm
from hybridmi.train.hybrid_step import QuerySide


def _build(*, queue_size=16, momentum=0.9, symmetric=True, shuffle_bn=True, group=None, seed=0):
    torch.manual_seed(seed)
    ae = Autoencoder(channels=4, cells_32=1, cells_16=1, decoder_expand=2, bn_group_size=group)
    head = ProjectionHead(3 * 16 * 16, 32, 8)
    moco = MoCo(
        ae.encoder,
        head,
        contrastive_channels=3,
        queue_size=queue_size,
        momentum=momentum,
        temperature=0.2,
        symmetric=symmetric,
        shuffle_bn=shuffle_bn,
        bn_group_size=group,
    )
    return ae, moco


def _query_side(ae, moco, *, decode=True):
    """The trainer's query pass: x → (z, x̂, q), q = the L2-normalised projection of y."""
    return QuerySide(ae, moco.head_q, contrastive_channels=moco.contrastive_channels, decode=decode)


def test_moco__queue_starts_with_unit_columns_and_pointer_zero():
    _, moco = _build(queue_size=16)
    assert moco.queue.shape == (8, 16) and moco.queue_ptr == 0
    torch.testing.assert_close(moco.queue.norm(dim=0), torch.ones(16))


def test_enqueue__writes_keys_at_the_pointer_only_and_wraps():
    _, moco = _build(queue_size=8)
    before = moco.queue.clone()
    keys = [F.normalize(torch.randn(2, 8), dim=1) for _ in range(5)]
    assert not any(torch.allclose(before[:, i], keys[0][j]) for i in range(8) for j in range(2))
    moco.enqueue(keys[0])
    torch.testing.assert_close(moco.queue[:, 0:2], keys[0].T)
    torch.testing.assert_close(moco.queue[:, 2:], before[:, 2:])
    assert moco.queue_ptr == 2
    for k in keys[1:4]:
        moco.enqueue(k)
    assert moco.queue_ptr == 0
    torch.testing.assert_close(moco.queue[:, 6:8], keys[3].T)
    moco.enqueue(keys[4])  # wraps: overwrites the oldest keys, keeps the rest
    torch.testing.assert_close(moco.queue[:, 0:2], keys[4].T)
    torch.testing.assert_close(moco.queue[:, 2:4], keys[1].T)


def test_enqueue__rejects_a_batch_that_does_not_divide_the_queue():
    _, moco = _build(queue_size=16)
    with pytest.raises(ValueError, match="queue size 16 is not a multiple of the 6 keys"):
        moco.enqueue(torch.zeros(6, 8))


def _fill(module, value):
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(value)


@pytest.mark.parametrize(("m", "expected"), [(0.0, 1.0), (1.0, 3.0), (0.25, 0.25 * 3.0 + 0.75 * 1.0)])
def test_momentum_update__is_an_ema_of_the_online_weights(m, expected):
    _, moco = _build(momentum=m)
    for online, key in ((moco.encoder_q, moco.encoder_k), (moco.head_q, moco.head_k)):
        _fill(online, 1.0)
        _fill(key, 3.0)
    moco.momentum_update()
    for p in (*moco.encoder_k.parameters(), *moco.head_k.parameters()):
        torch.testing.assert_close(p, torch.full_like(p, expected))


def test_momentum_update__copies_batchnorm_statistics_and_keeps_key_weights_frozen():
    ae, moco = _build(momentum=0.99)
    ae.train()(torch.rand(6, 3, 32, 32))  # moves the online running statistics
    moco.momentum_update()
    for b_q, b_k in zip(moco.encoder_q.buffers(), moco.encoder_k.buffers()):
        torch.testing.assert_close(b_k, b_q)
    assert all(not p.requires_grad for p in (*moco.encoder_k.parameters(), *moco.head_k.parameters()))
    assert moco.encoder_q is ae.encoder
    assert all(
        p_q.data_ptr() != p_k.data_ptr() for p_q, p_k in zip(moco.encoder_q.parameters(), moco.encoder_k.parameters())
    )


def test_enqueue__pointer_is_host_state_saved_with_the_module():
    _, moco = _build(queue_size=8)
    moco.enqueue(F.normalize(torch.randn(2, 8), dim=1))
    state = moco.state_dict()
    _, fresh = _build(queue_size=8, seed=1)
    fresh.load_state_dict(state)
    assert fresh.queue_ptr == 2 and isinstance(fresh.queue_ptr, int)
    torch.testing.assert_close(fresh.queue, moco.queue)


def test_head__is_mocov2_linear_relu_linear_without_batchnorm():
    head = ProjectionHead(12, 16, 4).train()
    layers = [type(m) for m in head.net if not isinstance(m, (nn.Flatten, RunningNorm))]
    assert layers == [nn.Linear, nn.ReLU, nn.Linear]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in head.modules())
    y = torch.randn(5, 3, 2, 2) + 4.0
    other = torch.cat([y[:2], torch.randn(3, 3, 2, 2) * 9])  # same first rows, different batch-mates
    twin = copy.deepcopy(head)
    torch.testing.assert_close(head(y)[:2], twin(other)[:2])  # per sample, in training mode too


def test_running_norm__standardises_with_past_batches_only():
    norm = RunningNorm(2, momentum=0.25).train()
    first = torch.tensor([[1.0, 10.0], [3.0, 14.0]])
    torch.testing.assert_close(norm(first), first / (1 + 1e-5) ** 0.5)  # before any batch: mean 0, var 1
    torch.testing.assert_close(norm.running_mean, torch.tensor([2.0, 12.0]))  # batch 0 moves them all the way
    torch.testing.assert_close(norm.running_var, torch.tensor([2.0, 8.0]))  # unbiased
    second = torch.tensor([[6.0, 12.0], [6.0, 12.0]])
    torch.testing.assert_close(norm(second), torch.tensor([[4.0 / 2**0.5, 0.0]] * 2), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(norm.running_mean, torch.tensor([4.0, 12.0]))  # then by max(0.25, 1/2)
    norm.eval()
    torch.testing.assert_close(norm(torch.tensor([[4.0, 12.0]])), torch.zeros(1, 2))
    assert int(norm.num_batches_tracked) == 2


def test_moco__refuses_a_head_with_batchnorm_or_mismatched_encoder_groups():
    ae = Autoencoder(channels=4, cells_32=0, cells_16=1, decoder_expand=2, bn_group_size=4)
    bn_head = nn.Sequential(nn.Flatten(), nn.Linear(768, 8), nn.BatchNorm1d(8))  # the pre-fix head
    with pytest.raises(ValueError, match="must not contain BatchNorm"):
        MoCo(
            ae.encoder,
            bn_head,
            contrastive_channels=3,
            queue_size=8,
            momentum=0.9,
            temperature=0.2,
            symmetric=True,
            shuffle_bn=True,
            bn_group_size=4,
        )
    with pytest.raises(ValueError, match="bn_group_size 2 does not match"):
        MoCo(
            ae.encoder,
            ProjectionHead(768, 8, 4),
            contrastive_channels=3,
            queue_size=8,
            momentum=0.9,
            temperature=0.2,
            symmetric=True,
            shuffle_bn=True,
            bn_group_size=2,
        )


@pytest.mark.parametrize(("n", "g"), [(16, 2), (16, 4), (32, 8), (24, 3), (64, 8)])
def test_stratified_permutation__no_block_comes_from_one_source_block(n, g):
    gen = torch.Generator().manual_seed(n + g)
    for _ in range(20):
        perm = stratified_permutation(n, g, generator=gen)
        assert sorted(perm.tolist()) == list(range(n))
        groups = n // g
        for block in perm.view(groups, g):
            sources = torch.bincount(block // g, minlength=groups)
            assert int((sources > 0).sum()) >= 2  # never one query group's images alone
            assert int(sources.max()) <= -(-g // groups)  # at most ceil(g / G) from any one


def _bn_groups(fn, x, module):
    """For each row i of fn(x): the set of images whose change alters it (its BatchNorm group, per-sample ops aside).

    ``module``'s state is put back before every call (running statistics of past batches must not differ).
    """
    state = copy.deepcopy(module.state_dict())

    def call(v):
        module.load_state_dict(state)
        return fn(v)

    with torch.no_grad():
        base = call(x)
        touched = [set() for _ in range(len(x))]
        for j in range(len(x)):
            bumped = x.clone()
            bumped[j] = torch.rand_like(bumped[j])
            changed = (call(bumped) - base).abs().amax(dim=1) > 1e-6
            for i in torch.nonzero(changed).flatten().tolist():
                touched[i].add(j)
    return [frozenset(t) for t in touched]


@pytest.mark.parametrize("symmetric", [True, False])
def test_split_bn__no_query_shares_batch_statistics_with_its_positive_key(symmetric):
    """Train mode, one pass each side: the images that set a query's BN statistics are never those of its key."""
    batch, g = 16, 4
    ae, moco = _build(group=g, symmetric=symmetric, queue_size=32)
    ae.train(), moco.train()
    views = 2 if symmetric else 1
    x = torch.rand(views * batch, 3, 32, 32)
    perm = moco.key_permutation(batch, generator=torch.Generator().manual_seed(3))
    query_groups = _bn_groups(lambda v: _query_side(ae, moco, decode=False)(v)[2], x, moco)
    key_groups = _bn_groups(lambda v: moco.keys(v, perm)[0], x, moco)
    for i in range(views * batch):
        assert query_groups[i] == frozenset(range(i // g * g, i // g * g + g))  # contiguous groups of one view
        assert len(key_groups[i]) == g and all(j // batch == i // batch for j in key_groups[i])  # one view per group
    for i in range(batch):  # query i of v1 against its positive: key i of v2 (row B + i), and symmetrically
        pairs = [(i, batch + i), (batch + i, i)] if symmetric else [(i, i)]
        for q, k in pairs:
            positive_sources = frozenset(j % batch for j in key_groups[k])
            query_sources = frozenset(j % batch for j in query_groups[q])
            assert positive_sources != query_sources
            assert len(positive_sources & query_sources) <= -(-g // (batch // g))


def test_split_bn__without_shuffle_keys_share_their_positives_query_group():
    batch, g = 8, 4
    ae, moco = _build(group=g, shuffle_bn=False, symmetric=False, queue_size=8)
    ae.train(), moco.train()
    perm = moco.key_permutation(batch, generator=torch.Generator().manual_seed(0))
    assert torch.equal(perm, torch.arange(batch))
    x = torch.rand(batch, 3, 32, 32)
    queries = _bn_groups(lambda v: _query_side(ae, moco, decode=False)(v)[2], x, moco)
    assert _bn_groups(lambda v: moco.keys(v, perm)[0], x, moco) == queries


def test_keys__one_pass_equals_each_group_alone_and_rows_return_to_input_order():
    batch, g = 12, 4
    _, moco = _build(group=g, symmetric=False, queue_size=12)
    moco.train()
    x = torch.rand(batch, 3, 32, 32)
    perm = moco.key_permutation(batch, generator=torch.Generator().manual_seed(5))
    state = copy.deepcopy(moco.state_dict())
    keys, _ = moco.keys(x, perm)
    moco.encoder_k.apply(lambda m: setattr(m, "group_size", None) if hasattr(m, "group_size") else None)
    for block in perm.view(-1, g):  # the images that shared BN statistics
        moco.load_state_dict(state)
        with torch.no_grad():
            expected = F.normalize(moco.head_k(moco.encoder_k(x[block])[:, :3]), dim=1)
        torch.testing.assert_close(keys[block], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(keys.norm(dim=1), torch.ones(batch))


def test_keys__permutation_is_undone_exactly_in_eval_mode():
    _, moco = _build(group=4, symmetric=False, queue_size=8)
    moco.eval()
    x = torch.rand(8, 3, 32, 32)
    shuffled, _ = moco.keys(x, moco.key_permutation(8, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(shuffled, moco.keys(x, torch.arange(8))[0], rtol=1e-5, atol=1e-6)


def test_query_side__projects_y_only_to_unit_vectors():
    ae, moco = _build()
    side = _query_side(ae, moco)
    x = torch.rand(4, 3, 32, 32)
    z, x_hat, q = side(x)
    assert q.shape == (4, 8) and q.dtype == torch.float32 and x_hat.shape == x.shape
    torch.testing.assert_close(q.norm(dim=1), torch.ones(4))
    side.encoder, side.decoder = nn.Identity(), None  # feed latents directly
    z_changed = z.detach().clone()
    z_changed[:, 3:] += 10.0  # ŷ does not reach the contrastive head
    moco.eval()
    torch.testing.assert_close(side(z_changed)[2], side(z.detach())[2])


@pytest.mark.parametrize("symmetric", [True, False])
def test_contrastive__pairs_views_and_returns_keys_in_enqueue_order(symmetric):
    ae, moco = _build(symmetric=symmetric)
    moco.eval()
    ae.eval()
    x1, x2 = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    queue_before = moco.queue.clone()
    ident = torch.arange(8 if symmetric else 4)
    query = lambda v: _query_side(ae, moco, decode=False)(v)[2]  # noqa: E731
    q1, q2 = query(x1), query(x2)
    k1, k2 = moco.keys(x1, torch.arange(4))[0], moco.keys(x2, torch.arange(4))[0]
    if symmetric:
        x = torch.cat([x1, x2])
        loss, keys = moco.contrastive(query(x), x, ident)
        expected = 0.5 * (
            info_nce(q1, k2, queue_before, temperature=0.2) + info_nce(q2, k1, queue_before, temperature=0.2)
        )
        torch.testing.assert_close(keys, torch.cat([k1, k2]))
    else:
        loss, keys = moco.contrastive(query(x1), x2, ident)
        expected = info_nce(q1, k2, queue_before, temperature=0.2)
        torch.testing.assert_close(keys, k2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(moco.queue, queue_before)  # nothing enqueued before the caller does it
    assert not keys.requires_grad


def _step_grads(alpha):
    ae, moco = _build()
    x = torch.rand(8, 3, 32, 32)
    _, x_hat, q = _query_side(ae, moco)(x)
    recon = reconstruction_loss(x_hat, x)
    nce, _ = moco.contrastive(q, x, moco.key_permutation(4))
    loss = hybrid_loss(recon, nce, alpha=alpha)
    loss.backward()
    has_grad = lambda m: any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())  # noqa: E731
    return (
        loss,
        recon,
        nce,
        {
            "encoder": has_grad(ae.encoder),
            "decoder": has_grad(ae.decoder),
            "head": has_grad(moco.head_q),
            "key": has_grad(moco.encoder_k) or has_grad(moco.head_k),
        },
    )


def test_hybrid_objective__endpoints_reduce_to_the_pure_losses_and_route_gradients():
    loss, recon, _, grads = _step_grads(alpha=1.0)
    assert loss is recon
    assert grads == {"encoder": True, "decoder": True, "head": False, "key": False}
    loss, _, nce, grads = _step_grads(alpha=0.0)
    assert loss is nce
    assert grads == {"encoder": True, "decoder": False, "head": True, "key": False}
    _, _, _, grads = _step_grads(alpha=0.5)
    assert grads == {"encoder": True, "decoder": True, "head": True, "key": False}


def _instance_batch(generator, n=8):
    """Images each with its own random 4x4 colour pattern (blown up to 32x32): an identity views keep."""
    return F.interpolate(torch.rand(n, 3, 4, 4, generator=generator), size=32, mode="nearest")


def _view(x, generator):
    gain = 0.8 + 0.4 * torch.rand(x.shape[0], 1, 1, 1, generator=generator)
    return (gain * x + 0.05 * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def test_hybrid_objective__falls_over_a_few_dozen_steps():
    ae, moco = _build(queue_size=16, momentum=0.9, group=4)
    optim = torch.optim.Adam([*ae.parameters(), *moco.head_q.parameters()], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    history = []
    for _ in range(20):
        x = _instance_batch(g)
        views = torch.cat([_view(x, g), _view(x, g)])
        moco.momentum_update()
        _, x_hat, q = _query_side(ae, moco)(views)
        nce, keys = moco.contrastive(q, views, moco.key_permutation(8, generator=g))
        recon = reconstruction_loss(x_hat, views) / 3072  # per value
        loss = hybrid_loss(recon, nce, alpha=0.5)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        moco.enqueue(keys)
        history.append((loss.item(), recon.item(), nce.item()))
    # step 0 is left out: its negatives are the random initial queue, not real keys
    first = torch.tensor(history[1:6]).mean(dim=0)
    last = torch.tensor(history[-5:]).mean(dim=0)
    assert (last < 0.75 * first).all(), (first.tolist(), last.tolist())


@pytest.mark.parametrize("reaches_y", [True, False])
def test_query_side__recon_reaches_y_controls_the_reconstruction_gradient_into_y(reaches_y):
    ae, moco = _build()
    side = QuerySide(ae, moco.head_q, contrastive_channels=3, decode=True, recon_reaches_y=reaches_y)
    x = torch.rand(8, 3, 32, 32)
    z, x_hat, _ = side(x)
    reconstruction_loss(x_hat, x).backward()
    out = ae.encoder.to_latent[1].weight.grad  # (latent channels, wide, 1, 1): rows 0..2 produce y
    assert out[3:].abs().sum() > 0  # ŷ always gets the reconstruction gradient
    assert bool(out[:3].abs().sum() > 0) is reaches_y
    ae2, _ = _build()
    torch.testing.assert_close(ae2.decoder(z.detach()), x_hat.detach())  # the decoder still reads all of z
