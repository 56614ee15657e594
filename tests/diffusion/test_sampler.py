import pytest
import torch

from hybridmi.diffusion.sampler import ddim_sample, ddim_step
from hybridmi.diffusion.schedule import alphas_cumprod, make_betas

BETAS = make_betas("linear", 1000, beta_start=1e-4, beta_end=0.02)
ABAR = alphas_cumprod(BETAS)
MU = torch.tensor([-1.0, 0.5, 2.0])
SIGMA = torch.tensor([0.5, 1.0, 2.0])


def gaussian_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The exact E[ε | x_t] for data x_0 ~ N(MU, SIGMA²) per dimension, x: (B, 3)."""
    a = ABAR.float()[t][:, None]
    return (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * SIGMA**2 + 1 - a)


@pytest.mark.parametrize("eta,steps", [(0.0, 100), (1.0, 1000), (0.5, 250)])
def test_ddim_sample__exact_eps_model_reproduces_gaussian_data(eta, steps):
    gen = torch.Generator().manual_seed(0)
    x = ddim_sample(
        gaussian_eps, (10000, 3), alphas_cumprod=ABAR, steps=steps, eta=eta, spacing="uniform", generator=gen
    )
    assert ((x.mean(0) - MU).abs() / SIGMA).max() < 0.06  # standard error 0.01 σ
    assert torch.allclose(x.std(0), SIGMA, rtol=0.05)


def test_ddim_sample__eta0_is_deterministic_and_seeded():
    def run(seed):
        return ddim_sample(
            gaussian_eps,
            (64, 3),
            alphas_cumprod=ABAR,
            steps=20,
            eta=0.0,
            spacing="quadratic",
            generator=torch.Generator().manual_seed(seed),
        )

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_ddim_sample__visits_timesteps_descending_from_seeded_start_noise():
    calls = []

    def model(x, t):
        calls.append(t[0].item())
        return gaussian_eps(x, t)

    out = ddim_sample(
        model,
        (4, 3),
        alphas_cumprod=ABAR,
        steps=10,
        eta=0.0,
        spacing="uniform",
        generator=torch.Generator().manual_seed(5),
    )
    assert calls == list(range(900, -1, -100))
    x = torch.randn((4, 3), generator=torch.Generator().manual_seed(5))  # x_T from the same seed
    abar = ABAR.float()
    for t in range(900, -1, -100):
        x = ddim_step(
            x, gaussian_eps(x, torch.full((4,), t)), abar[t], abar[t - 100] if t else 1.0, eta=0.0, noise=None
        )
    assert torch.allclose(out, x, atol=1e-6)


def test_ddim_step__eta1_equals_the_ddpm_posterior_step():
    x_t, eps, noise = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(0)).unbind(0)
    t = 500
    a_t, a_prev, beta = ABAR[t].float(), ABAR[t - 1].float(), BETAS[t].float()
    # DDPM (Ho et al., Alg. 2): x_{t-1} = (x_t − β/sqrt(1 − ᾱ_t) ε)/sqrt(1 − β) + sqrt(β̃) z, β̃ = β (1 − ᾱ_{t-1})/(1 − ᾱ_t)
    ddpm = (x_t - beta / (1 - a_t).sqrt() * eps) / (1 - beta).sqrt() + (beta * (1 - a_prev) / (1 - a_t)).sqrt() * noise
    assert torch.allclose(ddim_step(x_t, eps, a_t, a_prev, eta=1.0, noise=noise), ddpm, atol=1e-5)


def test_ddim_sample__s_equals_t_with_eta1_is_ancestral_ddpm():
    torch.manual_seed(0)
    w = torch.randn(3, 3) * 0.1

    def model(x, t):  # an arbitrary t-dependent ε-model
        return torch.tanh(x @ w) + t.float()[:, None] / 1000

    shape, abar, betas = (5, 3), ABAR.float(), BETAS.float()
    out = ddim_sample(
        model,
        shape,
        alphas_cumprod=ABAR,
        steps=1000,
        eta=1.0,
        spacing="uniform",
        generator=torch.Generator().manual_seed(7),
    )
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(shape, generator=gen)
    for t in range(999, -1, -1):
        eps = model(x, torch.full((5,), t))
        a_prev = abar[t - 1] if t > 0 else torch.tensor(1.0)
        var = betas[t] * (1 - a_prev) / (1 - abar[t])
        x = (x - betas[t] / (1 - abar[t]).sqrt() * eps) / (1 - betas[t]).sqrt() + var.sqrt() * torch.randn(
            shape, generator=gen
        )
    assert torch.allclose(out, x, rtol=1e-4, atol=1e-4)


def test_ddim_step__rejects_missing_noise_and_negative_eta():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="noise"):
        ddim_step(x, x, 0.5, 0.6, eta=0.5, noise=None)
