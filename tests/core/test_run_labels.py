"""Labels a run already has, keyed by graph (``cgc-embed --map-run-labels``): record fields and
evaluation tables, skipped and repeated records, a run whose data changed, and the command."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from cgc_framework.engine.run_labels import run_dir_of, run_labels
from cgc_framework.plugin.errors import CGCError

ROWS = [("m1", "CCO", "alcohol"), ("m2", "CCCO", "alcohol"), ("m3", "not-a-smiles", "broken"),
        ("m4", "c1ccccc1O", "phenol"), ("m2", "CCCCO", "repeat"), ("m5", "c1ccccc1N", ""), ("m6", "CCCCCO", "alcohol")]
"""id, SMILES, moa: m3 is rejected by the molecule builder, the second m2 by the record checks, m5
has no moa -> graphs m1, m2, m4, m5, m6."""


def _run_dir(tmp_path: Path, registry_yaml: Path) -> Path:
    """A run directory as cgc-run writes it (config.resolved.yaml, skipped_records.csv, the graphs,
    an evaluation table keyed by record_id), built from a small molecule corpus."""
    from cgc_framework.api import plan_run
    from cgc_framework.engine.featurize import build_graphs
    from cgc_framework.plugin.graph import graph_to_dict

    table = tmp_path / "corpus.csv"
    pd.DataFrame(ROWS, columns=["id", "smiles", "moa"]).to_csv(table, index=False)
    plan = plan_run(registry_yaml, overrides=[
        f"data.dataset={{name: smiles_corpus, params: {{paths: [{table}], id_column: id, property_columns: [moa]}}}}",
        "graph.modalities={molecule: {builder: rdkit_molecule}}", "graph.edge_sources={}", "evaluations={}",
        "tasks={mask: {name: masked_recovery, params: {}}}", "stages=[{name: mask, epochs: 1, weights: {mask: 1.0}}]"])
    built = build_graphs(plan, progress=False, workers=0)
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(plan.resolved(), sort_keys=False))
    built.skips.write_csv(run / "skipped_records.csv")
    torch.save([graph_to_dict(g) for g in built.graphs], run / "data" / "graphs.pt")
    (run / "evaluations" / "probe").mkdir(parents=True)
    pd.DataFrame({"record_id": ["m4", "m1", "m1"], "score_band": ["high", "low", "ignored"]}).to_csv(
        run / "evaluations" / "probe" / "per_record.csv", index=False)
    assert built.record_ids == ["m1", "m2", "m4", "m5", "m6"]
    return run


def test_run_labels_key_record_fields_and_evaluation_columns_by_graph(tmp_path, registry_yaml):
    run = _run_dir(tmp_path, registry_yaml)
    moa = run_labels(run, "moa")
    assert list(moa.graph) == [0, 1, 2, 3, 4] and list(moa.record_id) == ["m1", "m2", "m4", "m5", "m6"]
    assert list(moa.moa) == ["alcohol", "alcohol", "phenol", "", "alcohol"]     # the first m2 kept; m5 has none
    assert set(moa.label_source) == {"record field"}
    band = run_labels(run, "score_band")                                        # not a field: the evaluation table
    assert list(band.score_band) == ["low", "", "high", "", ""]
    assert set(band.label_source) == {"evaluations/probe/per_record.csv"}
    with pytest.raises(CGCError, match=r"no label column 'cell_type' \(--map-run-labels\) in the run's records or "
                                       r"its evaluation tables\. Record fields: compound_id, moa, smiles.*evaluations/probe/"
                                       r"per_record\.csv: record_id, score_band"):
        run_labels(run, "cell_type")


def test_a_run_whose_data_changed_or_that_is_no_run_is_named(tmp_path, registry_yaml):
    run = _run_dir(tmp_path, registry_yaml)
    with pytest.raises(CGCError, match="no config.resolved.yaml, so not a cgc-run output directory"):
        run_labels(tmp_path, "moa")
    pd.DataFrame(ROWS + [("m7", "CCN", "amine")], columns=["id", "smiles", "moa"]).to_csv(tmp_path / "corpus.csv",
                                                                                          index=False)
    with pytest.raises(CGCError, match=r"its dataset now gives 6 records that were not skipped, but the run built 5 "
                                       r"graphs.*give a labels table keyed by graph with --map instead"):
        run_labels(run, "moa")
    assert run_dir_of(run / "checkpoints" / "final.pt") == run and run_dir_of(tmp_path / "x.pt") is None


def test_cgc_embed_colours_the_map_by_the_runs_labels(tmp_path, registry_yaml):
    from cgc_framework.cli import embed_main

    run = _run_dir(tmp_path, registry_yaml)
    out = tmp_path / "emb.csv"
    graphs = str(run / "data" / "graphs.pt")
    assert embed_main(["--model", "default", "--graphs", graphs, "--run", str(run), "--out", str(out),
                       "--map-run-labels", "moa", "--map-method", "pca"]) == 0
    coords = pd.read_csv(tmp_path / "emb.map.csv")
    assert list(coords.graph) == [0, 1, 2, 4] and list(coords.label) == ["alcohol", "alcohol", "phenol", "alcohol"]
    scores = pd.read_csv(tmp_path / "emb.map.scores.csv")
    assert list(scores.model) == ["pretrained", "untrained"] and set(scores.n_points) == {4}
    # shipped weights are in no run directory; a column the run lacks; SMILES rows are not the run's graphs
    assert embed_main(["--model", "default", "--graphs", graphs, "--out", str(out), "--map-run-labels", "moa"]) == 2
    assert embed_main(["--model", "default", "--graphs", graphs, "--run", str(run), "--out", str(out),
                       "--map-run-labels", "nope"]) == 2
    assert embed_main(["--model", "default", "--smiles", "CCO", "CCN", "--run", str(run), "--out", str(out),
                       "--map-run-labels", "moa"]) == 2


def test_a_sharded_run_keys_labels_by_the_ids_its_shards_hold(tmp_path, registry_yaml):
    """A real cgc-run writes shards with each graph's record id: labels follow them, even after the
    data file gained a record (the re-read records only give the fields)."""
    from cgc_framework.api import run

    table = tmp_path / "corpus.csv"
    pd.DataFrame(ROWS, columns=["id", "smiles", "moa"]).to_csv(table, index=False)
    res = run(registry_yaml, overrides=[
        f"data.dataset={{name: smiles_corpus, params: {{paths: [{table}], id_column: id, property_columns: [moa]}}}}",
        "graph.modalities={molecule: {builder: rdkit_molecule}}", "graph.edge_sources={}", "evaluations={}",
        "model.encoder={name: molecule_gin, params: {hidden_dim: 8, num_layers: 1}}", "trainer.num_workers=0",
        "tasks={mask: {name: masked_recovery, params: {}}}", "stages=[{name: mask, epochs: 1, weights: {mask: 1.0}}]",
        "data.shard_size=2"], run_dir=tmp_path / "run", progress=False)
    assert len(list((res.run_dir / "data" / "shards").glob("shard-*.pt"))) == 4   # 7 records, 2 per shard
    pd.DataFrame([ROWS[0], ("m0", "CCN", "amine"), *ROWS[1:]], columns=["id", "smiles", "moa"]).to_csv(table, index=False)
    moa = run_labels(res.run_dir, "moa")
    assert list(moa.record_id) == ["m1", "m2", "m4", "m5", "m6"]
    assert list(moa.moa) == ["alcohol", "alcohol", "phenol", "", "alcohol"]
