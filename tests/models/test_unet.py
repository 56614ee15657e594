import pytest
import torch

from hybridmi.models.unet import AttnBlock, UNet, timestep_embedding


def tiny(**kw):
    args = dict(in_channels=6, channels=8, channel_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], dropout=0.0)
    return UNet(**(args | kw))


def test_timestep_embedding__sin_then_cos_with_known_values():
    emb = timestep_embedding(torch.tensor([0, 1]), 8)
    assert emb.shape == (2, 8)
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert emb[1, 0].item() == pytest.approx(torch.sin(torch.tensor(1.0)).item())  # frequency 1 first


def test_unet__predicts_eps_of_the_input_shape_and_depends_on_t():
    torch.manual_seed(0)
    model = tiny().eval()
    x = torch.randn(3, 6, 16, 16)
    out0, out1 = model(x, torch.zeros(3, dtype=torch.long)), model(x, torch.full((3,), 500))
    assert out0.shape == x.shape
    assert not torch.allclose(out0, out1)


@pytest.mark.parametrize("mult,attn,blocks", [([1, 2, 2], [8], 2), ([1], [16], 1), ([1, 1, 2, 2], [4, 2], 1)])
def test_unet__builds_every_level_layout(mult, attn, blocks):
    model = tiny(channel_mult=mult, attn_resolutions=attn, num_res_blocks=blocks)
    n_attn = sum(isinstance(m, AttnBlock) for m in model.modules())
    assert n_attn == 1 + len(attn) * (2 * blocks + 1)  # middle + each attention level down and up
    assert model(torch.randn(2, 6, 16, 16), torch.tensor([3, 7])).shape == (2, 6, 16, 16)


def test_unet__learns_a_fixed_batch():
    torch.manual_seed(0)
    model = tiny()
    x, t = torch.randn(8, 6, 16, 16), torch.randint(0, 1000, (8,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = (model(x, t) - 0.5 * x).square().mean()  # a target the network can fit
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_unet__rejects_bad_sizes():
    with pytest.raises(ValueError, match="resolution 16 cannot be halved 5"):
        tiny(channel_mult=[1, 1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"\(B, C, 16, 16\).*\(1, 6, 8, 8\)"):
        tiny()(torch.zeros(1, 6, 8, 8), torch.zeros(1))
