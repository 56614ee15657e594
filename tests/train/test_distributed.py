"""The distributed layer's pure parts: where a process sits, how a batch splits, rows of augmentation draws."""

from __future__ import annotations

import pytest
import torch

from hybridmi.config import ConfigError, load_config
from hybridmi.data.augment import apply_flips, apply_moco, draw_flips, draw_moco_params
from hybridmi.train.distributed import Ranks, local_rank_count, rank_device


def test_ranks_from_env__reads_torchrun_variables_and_defaults_to_one_process():
    assert Ranks.from_env({}) == Ranks(rank=0, world_size=1, local_rank=0)
    launched = Ranks.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (launched.rank, launched.world_size, launched.local_rank, launched.distributed, launched.main) == (
        3,
        4,
        1,
        True,
        False,
    )
    assert Ranks.from_env({"RANK": "0", "WORLD_SIZE": "1"}).distributed is False
    assert Ranks.from_env({"RANK": "2", "WORLD_SIZE": "4"}).local_rank == 2  # one node: the local rank is the rank


@pytest.mark.parametrize(
    "env, match",
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a non-negative integer"),
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 but RANK is not set"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "rank 2 of world size 2"),
    ],
)
def test_ranks_from_env__rejects_a_bad_launch_in_one_line(env, match):
    with pytest.raises(ValueError, match=match):
        Ranks.from_env(env)


def test_with_ranks__auto_ranks_resolved_at_launch_must_split_the_batch_and_its_bn_groups():
    cfg = load_config(None, ["train.batch_size=24", "objective.bn_splits=3", "objective.queue_size=96"])
    assert cfg.with_ranks(3).train.ranks == 3
    with pytest.raises(ConfigError, match="train.batch_size 24 does not split evenly over train.ranks 5"):
        cfg.with_ranks(5)
    with pytest.raises(ConfigError, match="objective.bn_splits 3 is not a multiple of train.ranks 2"):
        cfg.with_ranks(2)  # 12 images per rank: one group of 8 and a half


def test_config__train_ranks_must_split_the_batch_and_its_bn_groups():
    assert load_config(None, ["train.ranks=2"]).train.ranks == 2
    assert load_config(None, []).train.ranks == "auto"
    with pytest.raises(ConfigError, match="objective.bn_splits 8 is not a multiple of train.ranks 16"):
        load_config(None, ["train.ranks=16"])
    with pytest.raises(ConfigError, match="train.batch_size 256 does not split evenly over train.ranks 3"):
        load_config(None, ["train.ranks=3"])
    with pytest.raises(ConfigError, match="train.ranks must be 'auto' or a positive integer"):
        load_config(None, ["train.ranks=0"])
    assert load_config(None, ["train.ranks=16", "objective.alpha=1.0"]).train.ranks == 16  # no MoCo, no BN groups


def test_local_rank_count__auto_is_one_process_without_cuda():
    cpu = torch.device("cpu")
    assert local_rank_count("auto", cpu) == 1
    assert local_rank_count(3, cpu) == 3  # gloo ranks
    assert rank_device(cpu, Ranks(rank=1, world_size=2, local_rank=1)) == cpu


def test_augmentation_rows__a_rank_applying_its_rows_of_the_draws_gets_those_rows_of_the_one_process_views():
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    params = draw_moco_params(8, 32, generator=torch.Generator().manual_seed(5), device=images.device)
    whole = apply_moco(images, params)
    for rows in (slice(0, 4), slice(4, 8)):
        assert torch.equal(apply_moco(images[rows], params[rows]), whole[rows])
    flips = draw_flips(8, generator=torch.Generator().manual_seed(6), device=images.device)
    flipped = apply_flips(images, flips)
    assert torch.equal(apply_flips(images[4:], flips[4:]), flipped[4:])
    with pytest.raises(ValueError, match="4 parameter rows for 8 images"):
        apply_moco(images, params[:4])
