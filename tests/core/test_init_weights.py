"""Starting a run from other weights (`model.init`), and the pretrained weights the package ships."""

from __future__ import annotations

import json

import pytest
import torch

from cgc_framework import load_pretrained
from cgc_framework.api import plan_run, run
from cgc_framework.engine.checkpoint import CheckpointError, build_model, init_from, load_checkpoint, resolve_checkpoint
from cgc_framework.engine.registry import load_registry
from cgc_framework.plugin import ConfigError, GraphSchema
from cgc_plugins.molecules.features import molecule_schema
from tests.graph_fixtures import experiment_schema
from tests.support import MACHINERY

GIN = {"name": "molecule_gin", "params": {"hidden_dim": 16, "num_layers": 2, "heads": 2}}
COMPONENTS = {"encoder": GIN, "tasks": {"mask": {"name": "masked_recovery", "params": {}}}}


def test_init_from_copies_the_tensors_whose_name_and_shape_match():
    registry = load_registry()
    torch.manual_seed(0)
    small = build_model(COMPONENTS, GraphSchema().merge(molecule_schema()), registry)   # molecules only
    torch.manual_seed(1)
    big = build_model(COMPONENTS, experiment_schema(8), registry)                     # + cell compartments
    report = init_from(big, {"model": small.state_dict()}, ["encoder"])
    theirs, mine = small.state_dict(), big.state_dict()
    shared = [k for k in mine if k.startswith("encoder.") and k in theirs and theirs[k].shape == mine[k].shape]
    assert report["loaded"] == len(shared) > 10
    assert all(torch.equal(mine[k], theirs[k]) for k in shared)
    assert "encoder.embed.node.compartment.linear.weight" in report["not_in_checkpoint"]
    assert all(not k.startswith("tasks.") for k in report["not_in_checkpoint"] + report["shape_mismatch"])


def test_an_unknown_init_checkpoint_is_a_config_error_naming_the_pretrained_models(registry_yaml):
    with pytest.raises(ConfigError, match=r"model.init.checkpoint: nope.pt: no such checkpoint file, and no "
                                          r"pretrained model of that name \(pretrained models: default\)"):
        plan_run(registry_yaml, overrides=["model.init={checkpoint: nope.pt}"])
    with pytest.raises(CheckpointError, match="no pretrained model of that name"):
        resolve_checkpoint("nope", load_registry())


@pytest.mark.slow
def test_a_run_starts_from_another_runs_weights(tmp_path, registry_yaml):
    enc = f"model.encoder={json.dumps(GIN)}"
    first = run(registry_yaml, run_dir=tmp_path / "a", progress=False, overrides=[
        *MACHINERY, enc, "trainer.num_workers=0", "stages=[{name: mask, epochs: 1, weights: {mask: 1.0}}]"])
    second = run(registry_yaml, run_dir=tmp_path / "b", progress=False, overrides=[
        *MACHINERY, enc, "trainer.num_workers=0", f"model.init={{checkpoint: {first.checkpoints[-1]}}}",
        "stages=[{name: as_initialised, epochs: 0, weights: {mask: 1.0}}]"])
    a, b = load_checkpoint(first.checkpoints[-1])["model"], load_checkpoint(second.checkpoints[-1])["model"]
    encoder = [k for k in a if k.startswith("encoder.")]
    assert all(torch.equal(a[k], b[k]) for k in encoder)           # every encoder tensor copied, none trained
    assert not all(torch.equal(a[k], b[k]) for k in a if k.startswith("tasks."))  # heads are fresh
    report = json.loads((second.run_dir / "init.json").read_text())
    assert report["loaded"] == len(encoder) and report["shape_mismatch"] == [] == report["not_in_checkpoint"]
    assert second.metrics.empty and "as_initialised" in (second.run_dir / "summary.md").read_text()


def test_the_shipped_default_weights_load_safely_and_embed(tmp_path):
    path = resolve_checkpoint("default", load_registry())
    assert path.stat().st_size <= 25 * 2 ** 20                      # ships in the wheel
    ckpt = torch.load(path, map_location="cpu", weights_only=True)   # plain tensors and values only
    assert "optimizer" not in ckpt and ckpt["encoder"]["name"] == "molecule_gin"
    pre = load_pretrained("default")
    emb = pre.embed_smiles(["CCO", "c1ccccc1O"])
    assert emb.shape == (2, pre.hidden_dim) and torch.isfinite(emb).all()
    assert not torch.allclose(emb[0], emb[1])
    card = path.parent / "MODEL_CARD.md"
    assert card.is_file() and "moses" in card.read_text().lower()
