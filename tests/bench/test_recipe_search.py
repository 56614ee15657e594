"""bench/recipe_search.py: every variant is a valid config and gets the equal (FLOP-scaled) step budget."""

import pytest

from bench.flops import image_flops, preset
from bench.recipe_search import BASE_STEPS, VARIANTS, steps_for


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variants__are_valid_cpu_preset_overrides(name):
    preset("cpu", VARIANTS[name][0])


def test_steps_for__equal_steps_unless_the_step_is_dearer():
    assert steps_for([]) == BASE_STEPS
    assert steps_for(["objective.alpha=0.0"]) == BASE_STEPS  # cheaper: equal steps, not more
    wide = ["model.proj_hidden=2048"]
    ratio = image_flops(preset("cpu"), count_batch=16) / image_flops(preset("cpu", wide), count_batch=16)
    assert ratio < 1 and steps_for(wide) == round(BASE_STEPS * ratio)
