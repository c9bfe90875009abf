"""registry.yaml is validated into typed objects; every error names the key, the value, the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cgc_framework.api import plan_run
from cgc_framework.engine.config import CGCConfig, load_config
from cgc_framework.plugin.errors import ConfigError, UnknownComponentError


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def default_dict(registry_yaml: Path) -> dict:
    return yaml.safe_load(registry_yaml.read_text())


def dump(tmp_path: Path, data: dict) -> Path:
    return write(tmp_path, yaml.safe_dump(data))


def test_default_registry_validates_into_typed_objects(registry_yaml):
    cfg = load_config(registry_yaml)
    assert isinstance(cfg, CGCConfig)
    assert cfg.model.encoder.name == "hgt"
    assert [s.name for s in cfg.stages][0] == "mask"
    assert cfg.optimizer.name == "adam"
    plan = plan_run(registry_yaml)
    assert "atom" in plan.schema.node_types
    assert ("atom", "bond", "atom") in plan.schema.edge_types
    assert plan.encoder.params.hidden_dim == cfg.model.encoder.params["hidden_dim"]


def test_malformed_yaml_names_line_and_column(tmp_path):
    p = write(tmp_path, "run:\n  name: x\n  seed: [1, 2\nstages: []\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert f"{p}:4:" in msg and "malformed YAML" in msg


def test_duplicate_keys_are_rejected_with_both_lines(tmp_path, registry_yaml):
    p = write(tmp_path, registry_yaml.read_text() + "\nrun:\n  seed: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "duplicate key 'run'" in str(e.value) and "first defined on line" in str(e.value)


def test_unknown_key_lists_allowed_keys_and_closest(tmp_path, registry_yaml):
    d = default_dict(registry_yaml)
    d["optimizer"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError) as e:
        load_config(dump(tmp_path, d))
    msg = str(e.value)
    assert "optimizer.learning_rate: unknown key 'learning_rate'" in msg
    assert "Allowed keys: name, lr, weight_decay" in msg


def test_wrong_type_and_out_of_range_name_path_and_value(tmp_path, registry_yaml):
    d = default_dict(registry_yaml)
    d["optimizer"]["lr"] = -0.5
    d["trainer"]["num_workers"] = "two"
    d["stages"][0]["epochs"] = -1   # 0 is allowed: a stage that evaluates weights as they are
    with pytest.raises(ConfigError) as e:
        load_config(dump(tmp_path, d))
    problems = e.value.problems
    assert any(p.startswith("optimizer.lr:") and "greater than 0" in p and "-0.5" in p for p in problems)
    assert any(p.startswith("trainer.num_workers:") and "'two'" in p for p in problems)
    assert any(p.startswith("stages[0].epochs:") for p in problems)
    assert len(problems) == 3


def test_stage_weight_must_name_a_task(tmp_path, registry_yaml):
    d = default_dict(registry_yaml)
    d["stages"][0]["weights"] = {"mask": 1.0, "maks": 0.5}
    with pytest.raises(ConfigError) as e:
        load_config(dump(tmp_path, d))
    assert "unknown task key 'maks'" in str(e.value) and "Did you mean 'mask'" in str(e.value)


def test_unknown_component_names_kind_available_and_closest(tmp_path, registry_yaml):
    d = default_dict(registry_yaml)
    d["model"]["encoder"]["name"] = "hgtt"
    with pytest.raises(UnknownComponentError) as e:
        plan_run(dump(tmp_path, d))
    msg = str(e.value)
    assert "model.encoder.name: unknown encoder 'hgtt'" in msg
    assert "Available encoders: " in msg and "Did you mean 'hgt'?" in msg


def test_component_params_are_validated_by_the_component_schema(tmp_path, registry_yaml):
    d = default_dict(registry_yaml)
    d["model"]["encoder"]["params"] = {"hidden_dim": "wide", "layers": 3}
    d["tasks"]["mask"]["params"] = {"mask_rate": 1.5}
    with pytest.raises(ConfigError) as e:
        plan_run(dump(tmp_path, d))
    problems = e.value.problems
    assert any(p.startswith("model.encoder.params.hidden_dim:") and "'wide'" in p for p in problems)
    assert any(p.startswith("model.encoder.params.layers: unknown key 'layers'")
               and "num_layers" in p for p in problems)
    assert any(p.startswith("tasks.mask.params.mask_rate:") and "1.5" in p for p in problems)


def test_missing_data_file_names_key_and_path(tmp_path, registry_yaml):
    d = default_dict(registry_yaml)
    d["data"]["dataset"]["params"] = {"profiles": ["no_such_plate.csv.gz"]}
    with pytest.raises(ConfigError) as e:
        plan_run(dump(tmp_path, d))
    msg = str(e.value)
    assert "data.dataset.params.profiles[0]" in msg
    assert str(tmp_path / "no_such_plate.csv.gz") in msg  # resolved against the YAML's directory


def test_overrides_apply_before_validation(registry_yaml):
    cfg = load_config(registry_yaml, ["trainer.num_workers=0", "stages.0.epochs=2", "optimizer.lr=0.01"])
    assert (cfg.trainer.num_workers, cfg.stages[0].epochs, cfg.optimizer.lr) == (0, 2, 0.01)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(registry_yaml, ["trainer.num_workers"])


def test_config_hash_is_stable_sensitive_and_ignores_how_it_runs(registry_yaml, tmp_path):
    a = plan_run(registry_yaml).config_hash()
    assert a == plan_run(registry_yaml).config_hash()
    assert a != plan_run(registry_yaml, overrides=["run.seed=1"]).config_hash()
    assert a == plan_run(registry_yaml, overrides=["trainer.num_workers=2"]).config_hash()
    # the resolved config (validated params, absolute paths) is the same run from anywhere
    resolved = tmp_path / "elsewhere" / "config.resolved.yaml"
    resolved.parent.mkdir()
    resolved.write_text(yaml.safe_dump(plan_run(registry_yaml).resolved()))
    assert plan_run(resolved).config_hash() == a


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="empty"):
        load_config(write(tmp_path, ""))
