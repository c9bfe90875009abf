"""The experiment dataset: records, splits, on-disk cache, and full experiment graphs through a plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cgc_framework.api import plan_run
from cgc_framework.engine.featurize import build_graphs
from cgc_framework.plugin.records import SkipLog
from cgc_plugins.datasets.experiment import CellPaintingExperiments, ExperimentParams, SplitParams

REPO = Path(__file__).resolve().parents[2]


def _records(**kw):
    return list(CellPaintingExperiments(ExperimentParams(**kw)).records(SkipLog()))


def test_records_carry_compound_dose_targets_and_profile():
    recs = _records()
    r = next(r for r in recs if r.fields["compound_name"] == "imatinib")
    f = r.fields
    assert f["compound_id"].startswith("BRD-K92723993") and f["smiles"] and f["cell_line"] == "A549"
    assert f["dose_um"] in (0.04, 0.12, 0.37, 1.11, 3.33, 10.0) or f["dose_um"] > 0
    assert "ABL1" in f["target"] and f["plate"] == "SQ00015054"
    prof = f["cell_profile"]
    assert prof.treated.shape == prof.control.shape == (454,) and prof.dose_um == f["dose_um"]


@pytest.mark.parametrize("by, key", [("compound", "compound_id"), ("dose", "dose_um"), ("moa", "moa"),
                                     ("cell_line", "cell_line")])
def test_group_splits_are_disjoint_and_seeded(by, key):
    parts = {}
    for part in ("train", "val", "test"):
        parts[part] = _records(split=SplitParams(by=by, seed=3), include_splits=[part])
    groups = {p: {r.fields[key] for r in rs} for p, rs in parts.items()}
    assert sum(len(v) for v in parts.values()) == 360
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["val"])
    again = _records(split=SplitParams(by=by, seed=3), include_splits=["test"])
    assert [r.id for r in again] == [r.id for r in parts["test"]]
    if by == "compound":   # 58 compounds: every part gets some, and a new seed moves groups
        assert all(parts.values())
        other = {r.fields[key] for r in _records(split=SplitParams(by=by, seed=4), include_splits=["test"])}
        assert other != groups["test"]


def test_on_disk_cache_gives_identical_records_and_is_memory_mapped(tmp_path):
    first = _records(cache_dir=tmp_path)
    cached = list(tmp_path.glob("*/values.npy"))
    assert len(cached) == 1
    second = _records(cache_dir=tmp_path)
    assert [r.id for r in first] == [r.id for r in second]
    a, b = first[7].fields["cell_profile"], second[7].fields["cell_profile"]
    np.testing.assert_array_equal(a.treated, b.treated)
    np.testing.assert_array_equal(a.control, b.control)


def test_sample_well_control_summary_draws_a_real_dmso_well():
    ds = CellPaintingExperiments(ExperimentParams(control_summary="sample_well"))
    recs = list(ds.records(SkipLog()))
    prep = ds._prepare(ds.files[0])
    dmso = np.asarray(prep["values"])[prep["meta"]["_control"].to_numpy(bool)]
    c = recs[0].fields["cell_profile"].control
    assert any(np.array_equal(c, row) for row in dmso)


def test_registry_with_cell_builder_and_both_edge_sources_builds_full_experiment_graphs(tmp_path):
    cfg = yaml.safe_load((REPO / "registry.yaml").read_text())
    cfg["data"] = {"dataset": {"name": "cellpainting_experiments", "params": {}}, "max_records": 40}
    cfg["graph"] = {"modalities": {"molecule": {"builder": "rdkit_molecule", "params": {"fragments": "largest"}},
                                   "cell": {"builder": "cellprofiler_profile", "params": {}}},
                    "edge_sources": {"drug_target": {"name": "drug_target", "params": {}},
                                     "cooccurrence": {"name": "cooccurrence", "params": {}}}}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(cfg))
    plan = plan_run(path)
    built = build_graphs(plan, progress=False)
    g = built.graphs[0]
    for t in ("atom", "compound", "compartment", "channel", "protein"):
        assert t in g.node_types
    assert g["compartment"].y.shape == g["compartment"].x.shape
    assert g["compound", "treats", "compartment"].edge_index.shape == (2, 3)
    assert g.dose_um.shape == (1,)
    from torch_geometric.loader import DataLoader
    batch = next(iter(DataLoader(built.graphs, batch_size=8)))
    assert batch.dose_um.shape == (8,) and batch["channel"].y.shape == batch["channel"].x.shape
    assert torch.isfinite(batch["channel"].x).all()


def test_featurization_cache_round_trips_cell_graphs(tmp_path):
    cfg = yaml.safe_load((REPO / "registry.yaml").read_text())
    cfg["data"] = {"dataset": {"name": "cellpainting_experiments", "params": {}}, "max_records": 12,
                   "cache_dir": str(tmp_path / "fcache")}
    cfg["graph"] = {"modalities": {"molecule": {"builder": "rdkit_molecule"},
                                   "cell": {"builder": "cellprofiler_profile"}}}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(cfg))
    first = build_graphs(plan_run(path), progress=False).graphs
    again = build_graphs(plan_run(path), progress=False).graphs   # from the cache
    assert len(list((tmp_path / "fcache").rglob("*.tensors"))) >= 12
    for a, b in zip(first, again):
        assert torch.equal(a["channel"].y, b["channel"].y) and torch.equal(a["compartment"].x, b["compartment"].x)
        assert torch.equal(a["channel", "correlates", "channel"].y, b["channel", "correlates", "channel"].y)
    assert not torch.equal(first[0]["channel"].y, first[1]["channel"].y)
