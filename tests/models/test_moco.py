"""MoCo on y: queue, momentum update, shuffle-BN keys, the contrastive step and the hybrid objective."""
import pytest
import torch
import torch.nn.functional as F

from hybridmi.losses import hybrid_loss, info_nce, reconstruction_loss
from hybridmi.models.autoencoder import Autoencoder
from hybridmi.models.moco import MoCo, ProjectionHead


def _build(*, queue_size=16, momentum=0.9, symmetric=True, shuffle_bn=True, bn_splits=4, seed=0):
    torch.manual_seed(seed)
    ae = Autoencoder(channels=4, cells_32=1, cells_16=1, decoder_expand=2)
    head = ProjectionHead(3 * 16 * 16, 32, 8)
    moco = MoCo(ae.encoder, head, contrastive_channels=3, queue_size=queue_size, momentum=momentum,
                temperature=0.2, symmetric=symmetric, shuffle_bn=shuffle_bn, bn_splits=bn_splits)
    return ae, moco


def test_moco__queue_starts_with_unit_columns_and_pointer_zero():
    _, moco = _build(queue_size=16)
    assert moco.queue.shape == (8, 16) and int(moco.queue_ptr) == 0
    torch.testing.assert_close(moco.queue.norm(dim=0), torch.ones(16))


def test_enqueue__writes_keys_at_the_pointer_only_and_wraps():
    _, moco = _build(queue_size=8)
    before = moco.queue.clone()
    keys = [F.normalize(torch.randn(2, 8), dim=1) for _ in range(5)]
    assert not any(torch.allclose(before[:, i], keys[0][j]) for i in range(8) for j in range(2))
    moco.enqueue(keys[0])
    torch.testing.assert_close(moco.queue[:, 0:2], keys[0].T)
    torch.testing.assert_close(moco.queue[:, 2:], before[:, 2:])
    assert int(moco.queue_ptr) == 2
    for k in keys[1:4]:
        moco.enqueue(k)
    assert int(moco.queue_ptr) == 0
    torch.testing.assert_close(moco.queue[:, 6:8], keys[3].T)
    moco.enqueue(keys[4])  # wraps: overwrites the oldest keys, keeps the rest
    torch.testing.assert_close(moco.queue[:, 0:2], keys[4].T)
    torch.testing.assert_close(moco.queue[:, 2:4], keys[1].T)


def test_enqueue__rejects_a_batch_that_does_not_divide_the_queue():
    _, moco = _build(queue_size=16)
    with pytest.raises(ValueError, match="queue size 16 is not a multiple of the 6 keys"):
        moco.enqueue(torch.zeros(6, 8))


def test_check_batch_size__counts_two_keys_per_image_when_symmetric():
    _, symmetric = _build(queue_size=12, symmetric=True)
    _, single = _build(queue_size=12, symmetric=False)
    single.check_batch_size(4)
    symmetric.check_batch_size(3)
    with pytest.raises(ValueError, match="queue size 12 is not a multiple of 8 keys per step"):
        symmetric.check_batch_size(4)


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
    assert all(p_q.data_ptr() != p_k.data_ptr() for p_q, p_k in zip(moco.encoder_q.parameters(), moco.encoder_k.parameters()))


def test_keys__shuffle_bn_is_undone_exactly_in_eval_mode():
    _, moco = _build(bn_splits=4)
    moco.eval()
    x = torch.rand(10, 3, 32, 32)  # 10 images in 4 splits of 3, 3, 2, 2
    shuffled = moco.keys(x, generator=torch.Generator().manual_seed(1))
    moco.shuffle_bn = False
    plain = moco.keys(x)
    torch.testing.assert_close(shuffled, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(shuffled.norm(dim=1), torch.ones(10))


def test_keys__each_split_gets_its_own_batch_statistics_in_train_mode():
    _, moco = _build(bn_splits=3)
    moco.train()
    x = torch.rand(8, 3, 32, 32)
    keys = moco.keys(x, generator=torch.Generator().manual_seed(5))
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(5))
    for part in perm.tensor_split(3):  # the images that shared BN statistics
        with torch.no_grad():
            expected = F.normalize(moco.head_k(moco.encoder_k(x[part])[:, :3]), dim=1)
        torch.testing.assert_close(keys[part], expected, rtol=1e-4, atol=1e-5)
    moco.shuffle_bn = False
    whole_batch = moco.keys(x)
    assert not torch.allclose(keys, whole_batch, atol=1e-3)


def test_query__projects_y_only_to_unit_vectors():
    ae, moco = _build()
    z = ae.encode(torch.rand(4, 3, 32, 32))
    q = moco.query(z)
    assert q.shape == (4, 8) and q.dtype == torch.float32
    torch.testing.assert_close(q.norm(dim=1), torch.ones(4))
    z_changed = z.detach().clone()
    z_changed[:, 3:] += 10.0  # ŷ does not reach the contrastive head
    moco.eval()
    torch.testing.assert_close(moco.query(z_changed), moco.query(z.detach()))


def test_infonce__uses_the_current_queue():
    _, moco = _build(queue_size=2)
    moco.queue.copy_(torch.eye(8)[:, :2])
    q, k = torch.eye(8)[2:4], torch.eye(8)[2:4]
    assert moco.infonce(q, k).item() == pytest.approx(info_nce(q, k, torch.eye(8)[:, :2], temperature=0.2).item())


@pytest.mark.parametrize("symmetric", [True, False])
def test_forward_contrastive__pairs_views_and_returns_keys_in_enqueue_order(symmetric):
    ae, moco = _build(symmetric=symmetric)
    moco.eval()
    ae.eval()
    x1, x2 = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    z1, z2 = ae.encode(x1), ae.encode(x2)
    queue_before = moco.queue.clone()
    loss, keys = moco.forward_contrastive(z1, z2, x1, x2)
    k1, k2, q1, q2 = moco.keys(x1), moco.keys(x2), moco.query(z1), moco.query(z2)
    if symmetric:
        expected = 0.5 * (info_nce(q1, k2, queue_before, temperature=0.2) + info_nce(q2, k1, queue_before, temperature=0.2))
        torch.testing.assert_close(keys, torch.cat([k2, k1]))
    else:
        expected = info_nce(q1, k2, queue_before, temperature=0.2)
        torch.testing.assert_close(keys, k2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(moco.queue, queue_before)  # nothing enqueued before the caller does it
    assert not keys.requires_grad


def _step_grads(alpha):
    ae, moco = _build()
    x1, x2 = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    (z1, x_hat1), (z2, x_hat2) = ae(x1), ae(x2)
    recon = 0.5 * (reconstruction_loss(x_hat1, x1) + reconstruction_loss(x_hat2, x2))
    nce, _ = moco.forward_contrastive(z1, z2, x1, x2)
    loss = hybrid_loss(recon, nce, alpha=alpha)
    loss.backward()
    has_grad = lambda m: any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())  # noqa: E731
    return loss, recon, nce, {"encoder": has_grad(ae.encoder), "decoder": has_grad(ae.decoder), "head": has_grad(moco.head_q),
                              "key": has_grad(moco.encoder_k) or has_grad(moco.head_k)}


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
    ae, moco = _build(queue_size=16, momentum=0.9, bn_splits=2)
    moco.check_batch_size(8)
    optim = torch.optim.Adam([*ae.parameters(), *moco.head_q.parameters()], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    history = []
    for _ in range(20):
        x = _instance_batch(g)
        v1, v2 = _view(x, g), _view(x, g)
        (z1, x_hat1), (z2, x_hat2) = ae(v1), ae(v2)
        moco.momentum_update()
        nce, keys = moco.forward_contrastive(z1, z2, v1, v2)
        recon = 0.5 * (reconstruction_loss(x_hat1, v1) + reconstruction_loss(x_hat2, v2)) / 3072  # per value
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
