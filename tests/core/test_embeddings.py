"""Embeddings API and ``cgc-embed``: checkpoint -> molecule-level and cell-level embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pytest
import torch

from cgc_framework.api import run
from cgc_framework.cli import embed_main
from cgc_framework.engine.config import CGCConfig
from cgc_framework.engine.pretrained import load_graphs, load_pretrained
from cgc_framework.plugin.records import RecordError
from cgc_plugins.datasets.lincs import EMBEDDED_COMPOUNDS
from tests.graph_fixtures import FixtureCellPlugin, lincs_experiment_graphs, three_stage_config

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = CGCConfig.model_validate(three_stage_config(epochs=(1, 1, 1), batch_size=32))
    res = run(cfg, run_dir=tmp_path_factory.mktemp("run") / "r", progress=False,
              extra_plugins=(FixtureCellPlugin(limit=64),))
    return res.run_dir


def test_molecule_embeddings_from_smiles_match_the_experiment_graphs(trained):
    pre = load_pretrained(trained / "checkpoints" / "final.pt", extra_plugins=(FixtureCellPlugin(),))
    assert pre.builders["molecule"]["name"] == "rdkit_molecule"  # read from config.resolved.yaml
    assert pre.builders["fixture_cell"]["name"] == "fixture_cell_profile"
    emb = pre.embed_smiles(SMILES + [SMILES[0]])
    assert emb.shape == (4, 16) and torch.isfinite(emb).all()
    assert torch.allclose(emb[0], emb[3]) and not torch.allclose(emb[0], emb[1])
    # a compound's embedding does not depend on the experiment it came from
    graphs = load_graphs(trained / "data" / "shards")[:5]
    from_graphs = pre.embed_graphs(graphs, "molecule")
    smiles = pd.read_csv(EMBEDDED_COMPOUNDS).dropna(subset=["smiles"])
    _, _, ids = lincs_experiment_graphs(8)
    lookup = dict(zip(smiles.broad_sample, smiles.smiles))
    from_smiles = pre.embed_smiles([lookup[ids[i]] for i in range(5)])
    assert torch.allclose(from_graphs, from_smiles, atol=1e-5)
    with pytest.raises(RecordError, match="invalid SMILES"):
        pre.embed_smiles(["not-a-smiles"])


def test_embedding_a_lazy_sequence_reads_it_a_window_at_a_time(trained):
    """``embed_graphs`` over a sequence that is not packed (e.g. shards read lazily) holds at most 16
    batches of its graphs at once, and gives the embeddings of the whole list."""
    pre = load_pretrained(trained / "checkpoints" / "final.pt", extra_plugins=(FixtureCellPlugin(),))
    graphs = list(load_graphs(trained / "data" / "shards"))
    graphs = (graphs * (40 // len(graphs) + 1))[:40]

    class Lazy(Sequence):
        read = 0

        def __len__(self):
            return len(graphs)

        def __getitem__(self, i):
            Lazy.read += 1
            return graphs[i]

        def __iter__(self):
            raise AssertionError("the whole sequence was materialized")

    encoder, read_at_first_batch = pre.model.encoder, []
    forward = encoder.forward
    encoder.forward = lambda *a, **k: (read_at_first_batch.append(Lazy.read), forward(*a, **k))[1]
    try:
        lazy = pre.embed_graphs(Lazy(), "molecule", batch_size=2)
    finally:
        del encoder.forward
    assert read_at_first_batch[0] == 2 * 16 and Lazy.read == 40
    assert torch.allclose(lazy, pre.embed_graphs(graphs, "molecule", batch_size=2), atol=1e-6)


def test_cell_embeddings_of_profiles_through_the_registered_builder(trained):
    pre = load_pretrained(trained / "checkpoints" / "final.pt", extra_plugins=(FixtureCellPlugin(),))
    graphs = load_graphs(trained / "data" / "shards")[:6]
    treated = pre.embed_graphs(graphs, "cell")
    control = pre.embed_graphs(graphs, "cell", state="control")
    assert treated.shape == control.shape == (6, 16)
    # treated profiles differ per well; the control state differs only through the co-occurrence edges
    assert torch.cdist(treated, treated).fill_diagonal_(1).min() > 1e-4
    assert not torch.allclose(treated, control)
    # the same profiles built from raw values by the checkpoint's cell builder
    by_builder = pre.embed_profiles(list(range(6)), modality="fixture_cell")
    assert torch.allclose(by_builder, treated, atol=1e-5)
    # a different stage's checkpoint gives different embeddings
    early = load_pretrained(trained / "checkpoints" / "stage1_mask.pt", extra_plugins=(FixtureCellPlugin(),))
    assert not torch.allclose(early.embed_graphs(graphs, "cell"), treated)


def test_cgc_embed_cli(trained, tmp_path, capsys):
    out = tmp_path / "emb.csv"
    ckpt = str(trained / "checkpoints" / "final.pt")
    assert embed_main([ckpt, "--smiles", *SMILES, "not-a-smiles", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert table.smiles.tolist() == SMILES and list(table.columns[2:]) == [f"e{i}" for i in range(16)]
    assert table.row.tolist() == list(range(1, len(SMILES) + 1))  # the argument positions: a row id
    assert "1 invalid SMILES skipped" in capsys.readouterr().out
    pre = load_pretrained(ckpt)
    assert torch.allclose(torch.tensor(table.iloc[:, 2:].to_numpy(), dtype=torch.float32),
                          pre.embed_smiles(SMILES), atol=1e-5)
    cells = tmp_path / "cells.csv"
    assert embed_main([ckpt, "--graphs", str(trained / "data" / "shards"), "--level", "cell",
                       "--out", str(cells)]) == 0
    assert pd.read_csv(cells).shape == (64, 17)
    assert embed_main([str(tmp_path / "missing.pt"), "--smiles", "CCO", "--out", str(out)]) == 2
