"""Config validation: every bad value is rejected before work starts, with one line naming the field."""

from pathlib import Path

import pytest
import yaml

from hybridmi.config import ConfigError, load_config, write_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("preset", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_presets__validate(preset):
    cfg = load_config(CONFIGS / preset)
    assert cfg.model.latent_channels == 6 and cfg.model.contrastive_channels == 3


@pytest.mark.parametrize(
    ("override", "field", "reason"),
    [
        ("objective.alpha=1.5", "objective.alpha", "less than or equal to 1"),
        ("objective.alpha=-0.1", "objective.alpha", "greater than or equal to 0"),
        ("model.contrastive_channels=6", "model.contrastive_channels", "does not split"),
        ("model.contrastive_channels=0", "model.contrastive_channels", "greater than or equal to 1"),
        ("model.colour=3", "model.colour", "unknown key"),
        ("train.batch_size=abc", "train.batch_size", "valid integer"),
        ("objective.queue_size=1000", "objective.queue_size", "not a multiple"),
        ("data.source=imagenet", "data.source", "Input should be"),
        ("data.source=folder", "data.root", "required"),
        ("objective.bn_splits=5", "objective.bn_splits", "does not split"),
        ("train.on_nonfinite=skip_step", "train.on_nonfinite", "unknown key"),
        ("train.device=cpu", "train.device", "unknown key"),
        ("train.time_budget_minutes=0", "train.time_budget_minutes", "greater than 0"),
        ("objective.autoencoder_views=crop", "objective.autoencoder_views", "Input should be"),
        # Values that used to pass here and fail after training.
        ("sampling.steps=5000", "sampling.steps", "exceeds the 1000 training timesteps"),
        ("diffusion.beta_start=0.05", "diffusion.beta_start", "must be below diffusion.beta_end"),
        ("train.time_budget_minutes=.inf", "train.time_budget_minutes", "finite number"),
        ("objective.temperature=.inf", "objective.temperature", "finite number"),
        ("optim.lr=.nan", "optim.lr", "finite number"),
        ("monitoring.push_interval_s=.inf", "monitoring.push_interval_s", "finite number"),
    ],
)
def test_bad_value__rejected_with_one_line_naming_the_field(override, field, reason):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "smoke.yaml", [override])
    message = str(err.value)
    assert "\n" not in message
    assert field in message and reason in message


def test_override__typed_by_yaml():
    cfg = load_config(None, ["optim.lr=3e-4", "runtime.compile=true", "eval.probe_features=[z]"])
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.runtime.compile is True and cfg.eval.probe_features == ["z"]


def test_override__malformed_is_rejected():
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(None, ["optim.lr"])


def test_missing_file__rejected(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_written_config__round_trips(tmp_path):
    cfg = load_config(CONFIGS / "smoke.yaml", ["objective.alpha=0.25"])
    path = write_config(cfg, tmp_path)
    again = load_config(path)
    assert again == cfg and again.hash() == cfg.hash()
    assert yaml.safe_load(path.read_text())["objective"]["alpha"] == 0.25


def test_every_float_field__refuses_infinity():
    from hybridmi.config import Config

    floats = [
        f"{section}.{name}"
        for section, field in Config.model_fields.items()
        if hasattr(field.annotation, "model_fields")
        for name, sub in field.annotation.model_fields.items()
        if sub.annotation in (float, float | None, list[float])
    ]
    assert len(floats) > 20
    for dotted in floats:
        value = "[.inf]" if dotted == "eval.probe_weight_decays" else ".inf"  # a list of floats
        with pytest.raises(ConfigError, match="finite number"):
            load_config(None, [f"{dotted}={value}"])


def test_alias_bomb__refused_in_one_short_line_without_expanding(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10^9 leaves once expanded
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\n")
    assert bomb.stat().st_size < 1000
    with pytest.raises(ConfigError, match="YAML aliases are not allowed") as err:
        load_config(bomb)
    assert len(str(err.value)) < 200


def test_oversized_file_and_value__bounded(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="a config is at most"):
        load_config(big)
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.batch_size=" + "9" * 100_000 + "x"])
    assert len(str(err.value)) < 300
