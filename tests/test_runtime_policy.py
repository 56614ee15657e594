"""runtime.compute_policy: bf16 only where the device has it natively, the measured layout table, forced settings."""

import pytest
import torch

from hybridmi import runtime
from hybridmi.runtime import CHANNELS_LAST, compute_policy, native_bf16

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend the CPU reports these capability flags."""

    def set_flags(**flags):
        monkeypatch.setattr(runtime.torch._C._cpu, "_get_cpu_capability", lambda: flags)

    return set_flags


def test_native_bf16__needs_avx512_bf16_or_amx_on_a_cpu_and_is_always_there_on_cuda(cpu_flags):
    cpu_flags(avx2=True, avx512_bf16=False, amx_bf16=False)
    assert not native_bf16(CPU) and native_bf16(CUDA)
    cpu_flags(avx512_bf16=True)
    assert native_bf16(CPU)
    cpu_flags(amx_bf16=True)
    assert native_bf16(CPU)


def test_auto__is_fp32_on_an_emulating_cpu_and_bf16_on_a_native_one_with_the_measured_layouts(cpu_flags):
    cpu_flags(avx2=True)
    for network in ("autoencoder", "unet", "inception"):
        policy = compute_policy(network, CPU)
        assert policy.dtype is None and policy.channels_last == CHANNELS_LAST["cpu", "fp32"][network]
    cpu_flags(avx512_bf16=True)
    policy = compute_policy("unet", CPU)
    assert policy.dtype is torch.bfloat16 and policy.channels_last == CHANNELS_LAST["cpu", "bf16"]["unet"]
    assert policy.describe()["precision"] == "bf16"


def test_forced_settings__win_over_the_device_and_fp32_callers_stay_fp32(cpu_flags):
    cpu_flags(avx512_bf16=True)
    assert compute_policy("inception", CPU, precision="fp32").dtype is None  # FID: always fp32
    assert compute_policy("unet", CPU, precision="fp32", channels_last=False).describe() == {
        "precision": "fp32",
        "channels_last": False,
    }
    cpu_flags()
    assert compute_policy("autoencoder", CPU, precision="bf16", channels_last=True).dtype is torch.bfloat16
    assert compute_policy("autoencoder", CUDA).describe() == {"precision": "bf16", "channels_last": True}


def test_layout__changes_only_four_dimensional_tensors():
    policy = compute_policy("autoencoder", CPU, precision="fp32", channels_last=True)
    x = policy.layout(torch.zeros(2, 3, 4, 5))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert policy.layout(torch.zeros(2, 3)).is_contiguous()
