"""The expression modality: reading .h5ad (both AnnData layouts, dense and sparse, missing and
non-finite values), the gene panel (HVGs, a gene list with unknown genes, every file gene accounted
for), the gene graph and its roles, masked recovery on it, the PBMC file, and embedding maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cgc_framework.engine.embedding_map import chance_agreement, knn_agreement, read_labels, write_map
from cgc_framework.plugin import DataError, RecordError, SkipLog
from cgc_plugins.expression.builder import NODE_TYPE, ExpressionGeneBuilder
from cgc_plugins.expression.dataset import H5adCells
from cgc_plugins.expression.h5ad import H5adMatrix
from cgc_plugins.expression.panel import ExpressionProfile
from cgc_plugins.expression.params import ExpressionGraphParams, H5adCellsParams
from tests.support import fit_losses

h5py = pytest.importorskip("h5py", reason="reading .h5ad needs h5py (pip install -e '.[expression]')")

GENES = ["G0", "G1", "G2", "G3", "G4", "G5"]
CELLS = [f"cell{i}" for i in range(8)]
TYPES = ["T", "B", "T", "B", "T", "B", "T", None]          # the last cell's type is missing (code -1)


def _matrix() -> np.ndarray:
    """8 cells x 6 genes: G1 = 2 * G0 (co-expressed), G2 = -G0, G3 constant, G4/G5 noise; cell 3 has a
    NaN and an inf, cell 7 is all NaN."""
    rng = np.random.default_rng(0)
    g0 = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=np.float32)
    x = np.stack([g0, 2 * g0, -g0, np.full(8, 5.0), rng.normal(size=8), rng.normal(size=8)], axis=1).astype(np.float32)
    x[3, 4] = np.nan
    x[3, 5] = np.inf
    x[7, :] = np.nan
    return x


def write_h5ad(path: Path, x: np.ndarray, *, layout: str = "encoded", sparse: bool = False,
               hv: list[bool] | None = None, extra_obs: dict[str, np.ndarray] | None = None,
               genes: list[str] | None = None) -> Path:
    """A small .h5ad in AnnData's encoded layout (anndata >= 0.8) or its legacy layout (compound obs/var);
    ``extra_obs``: more obs columns, ``genes``: the var index instead of G0..G5 (encoded layout)."""
    hv = hv if hv is not None else [True, True, True, True, False, True]
    cats = ["B", "T"]
    codes = np.array([-1 if t is None else cats.index(t) for t in TYPES], dtype=np.int8)
    s = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        if layout == "encoded":
            f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
            if sparse:
                from scipy.sparse import csr_matrix

                m = csr_matrix(np.nan_to_num(x, nan=0.0, posinf=0.0) * (np.abs(x) > 2.5))  # zeros become implicit
                g = f.create_group("X")
                g.attrs["encoding-type"], g.attrs["encoding-version"] = "csr_matrix", "0.1.0"
                g.attrs["shape"] = np.array(x.shape)
                g["data"], g["indices"], g["indptr"] = m.data, m.indices, m.indptr
            else:
                f["X"] = x
                f["X"].attrs["encoding-type"], f["X"].attrs["encoding-version"] = "array", "0.2.0"
            frames = (("obs", CELLS, {"n_genes": np.arange(8), **(extra_obs or {})}),
                      ("var", genes or GENES, {"highly_variable": np.array(hv)}))
            for name, index, cols in frames:
                g = f.create_group(name)
                g.attrs["encoding-type"], g.attrs["encoding-version"] = "dataframe", "0.2.0"
                g.attrs["_index"] = "_index"
                order = list(cols) + (["cell_type"] if name == "obs" else [])
                g.attrs["column-order"] = np.array(order, dtype=object).astype(s)
                d = g.create_dataset("_index", data=np.array(index, dtype=object), dtype=s)
                d.attrs["encoding-type"], d.attrs["encoding-version"] = "string-array", "0.2.0"
                for c, v in cols.items():
                    text = v.dtype.kind in "OU"
                    g.create_dataset(c, data=v.astype(object) if text else v, dtype=s if text else None)
                    g[c].attrs["encoding-type"] = "string-array" if text else "array"
                    g[c].attrs["encoding-version"] = "0.2.0"
                if name == "obs":
                    c = g.create_group("cell_type")
                    c.attrs["encoding-type"], c.attrs["encoding-version"] = "categorical", "0.2.0"
                    c.attrs["ordered"] = False
                    c["codes"] = codes
                    d = c.create_dataset("categories", data=np.array(cats, dtype=object), dtype=s)
                    d.attrs["encoding-type"], d.attrs["encoding-version"] = "string-array", "0.2.0"
                    c["codes"].attrs["encoding-type"], c["codes"].attrs["encoding-version"] = "array", "0.2.0"
        else:  # legacy: what scanpy's pbmc68k_reduced uses
            f["X"] = x
            obs = np.zeros(8, dtype=[("index", "S8"), ("cell_type", "i1"), ("n_genes", "<i8")])
            obs["index"], obs["cell_type"], obs["n_genes"] = CELLS, codes, np.arange(8)
            f["obs"] = obs
            var = np.zeros(6, dtype=[("index", "S4"), ("highly_variable", "?")])
            var["index"], var["highly_variable"] = GENES, hv
            f["var"] = var
            f.create_group("uns")["cell_type_categories"] = np.array(cats, dtype="S1")
    return path


@pytest.fixture
def h5ad(tmp_path) -> Path:
    return write_h5ad(tmp_path / "cells.h5ad", _matrix())


def _builder(path: Path, **kw) -> ExpressionGeneBuilder:
    return ExpressionGeneBuilder(ExpressionGraphParams(reference=path, reader="h5py", **kw))


def _records(path: Path, **kw):
    skips = SkipLog()
    ds = H5adCells(H5adCellsParams(path=path, reader="h5py", obs_fields={"cell_type": "cell_type"}, **kw))
    return list(ds.records(skips)), skips, ds


# -- reading ------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["encoded", "legacy"])
def test_both_anndata_layouts_read_the_same_matrix_names_and_categories(tmp_path, layout):
    x = _matrix()
    with H5adMatrix(write_h5ad(tmp_path / "a.h5ad", x, layout=layout), reader="h5py") as m:
        assert (m.n_obs, m.n_vars, m.var_names) == (8, 6, GENES)
        assert list(m.obs.index) == CELLS
        assert list(m.obs["cell_type"].astype(object).where(m.obs["cell_type"].notna(), None)) == TYPES
        got = np.concatenate([b for _, b in m.chunks(3)])      # chunked reads join to the whole matrix
        np.testing.assert_array_equal(got, x)                  # NaN and inf as stored


def test_a_sparse_csr_matrix_is_densified_per_chunk(tmp_path):
    x = _matrix()
    with H5adMatrix(write_h5ad(tmp_path / "s.h5ad", x, sparse=True), reader="h5py") as m:
        want = np.nan_to_num(x, nan=0.0, posinf=0.0) * (np.abs(x) > 2.5)
        np.testing.assert_array_equal(m.rows(2, 7), want[2:7].astype(np.float32))
        assert m.rows(7, 99).shape == (1, 6)


@pytest.mark.parametrize("sparse", [False, True])
def test_the_anndata_reader_agrees_with_the_h5py_reader(tmp_path, sparse):
    pytest.importorskip("anndata", reason="the anndata reader needs anndata (pip install anndata)")
    h5ad = write_h5ad(tmp_path / "c.h5ad", _matrix(), sparse=sparse)
    with H5adMatrix(h5ad, reader="anndata") as a, H5adMatrix(h5ad, reader="h5py") as b:
        assert a.var_names == b.var_names and list(a.obs.index) == list(b.obs.index)
        np.testing.assert_array_equal(a.rows(0, 8), b.rows(0, 8))


def test_bad_files_and_matrices_are_named(tmp_path, h5ad):
    not_h5 = tmp_path / "x.h5ad"
    not_h5.write_text("hello")
    with pytest.raises(DataError, match=r"x.h5ad: not an HDF5 \(.h5ad\) file"):
        H5adCells(H5adCellsParams(path=not_h5, reader="h5py"))
    with pytest.raises(DataError, match="has no raw matrix .*use matrix: X"):
        H5adCells(H5adCellsParams(path=h5ad, matrix="raw.X", reader="h5py"))
    with pytest.raises(DataError, match=r"obs has no column\(s\) 'celltype' \(obs_fields\); its columns: n_genes, cell_type"):
        H5adCells(H5adCellsParams(path=h5ad, obs_fields={"celltype": "cell_type"}, reader="h5py"))
    with pytest.raises(ValueError, match="matrix must be 'X', 'raw.X' or 'layers/<name>'"):
        H5adCellsParams(path=h5ad, matrix="counts")


# -- dataset ------------------------------------------------------------------------------------

def test_cells_become_records_non_finite_values_are_counted_and_an_all_nan_cell_skipped(h5ad):
    recs, skips, ds = _records(h5ad)
    assert [r.id for r in recs] == CELLS[:7]
    assert [r.fields["cell_type"] for r in recs] == TYPES[:7]
    assert recs[0].fields["cell_id"] == "cell0"
    prof = recs[3].fields["expression_profile"]
    assert isinstance(prof, ExpressionProfile) and prof.genes == tuple(GENES)
    assert np.isnan(prof.values[4]) and np.isinf(prof.values[5])
    [skip] = skips.entries
    assert (skip.record_id, skip.component) == ("cell7", "h5ad_cells")
    assert skip.reason == "no finite value among its 6 genes (every value NaN or inf)"
    assert ds.counts == {"cells": 8, "kept": 7, "no finite value": 1, "non-finite values": 8,
                         "cells with non-finite values": 2}
    assert "non-finite values: 8" in ds.describe()["cells"]
    assert len(_records(h5ad, max_cells=3)[0]) == 3


# -- gene panel and graph -------------------------------------------------------------------------

def test_highly_variable_genes_form_the_panel_and_every_other_gene_is_listed(h5ad):
    b = _builder(h5ad)
    assert b.panel.genes == ["G0", "G1", "G2", "G3", "G5"]
    assert b.panel.left_out == {"G4": "not highly variable (var['highly_variable'] is false)"}
    report = pd.DataFrame(b.gene_report())
    assert sorted(report.gene) == sorted(GENES) and set(report.status) == {"used", "left out"}
    assert "1 not highly variable" in b.describe()["genes left out"]


def test_a_gene_list_with_unknown_genes_reports_them(h5ad, tmp_path):
    listing = tmp_path / "genes.txt"
    listing.write_text("# my panel\nG2\nCD3E\nG0\n\nG1  # a comment\nMS4A1\n")
    b = _builder(h5ad, gene_file=listing, coexpression_k=2, min_abs_corr=0.9)
    assert b.panel.genes == ["G2", "G0", "G1"]
    assert b.panel.unknown == ["CD3E", "MS4A1"]
    assert b.describe()["unknown genes (not in the file)"] == "2: CD3E, MS4A1"
    assert {g: why for g, why in b.panel.left_out.items()} == {g: "not in the configured gene list" for g in
                                                               ("G3", "G4", "G5")}
    rows = {r["gene"]: r["status"] for r in b.gene_report()}
    assert rows == {"G2": "used", "G0": "used", "G1": "used", "G3": "left out", "G4": "left out", "G5": "left out",
                    "CD3E": "unknown", "MS4A1": "unknown"}
    with pytest.raises(ValueError, match="none of the listed genes is in the file's gene table"):
        _builder(h5ad, gene_list=["CD3E"])


def test_the_gene_graph_carries_values_flags_identity_and_coexpression(h5ad):
    b = _builder(h5ad, genes="all", coexpression_k=2, min_abs_corr=0.9, clip=6.0)
    schema = b.schema()
    assert schema.roles.cell_state == (NODE_TYPE,)
    recs, _, _ = _records(h5ad)
    g = schema.conform(b.build(recs[3].fields["expression_profile"]))
    schema.validate(g)
    x = g[NODE_TYPE].x
    # cell 3: G0 = 4, G1 = 8 clipped to 6, G2 = -4, G3 = 5, G4 NaN -> 0 unmeasured, G5 inf -> 0 unmeasured
    assert x[:, 0].tolist() == [4.0, 6.0, -4.0, 5.0, 0.0, 0.0]
    assert x[:, 1].tolist() == [1, 1, 1, 1, 0, 0]
    assert torch.equal(g[NODE_TYPE].y, x)                          # one state per cell: x == y
    assert g[NODE_TYPE].x_cat[:, 0].tolist() == list(range(6))     # learned gene identity
    ei = g[NODE_TYPE, "coexpressed", NODE_TYPE].edge_index.t().tolist()
    # the three perfectly (anti-)correlated genes are linked both ways; G3 is constant: no edge
    assert {(a, c) for a, c in ei} >= {(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)}
    assert all(3 not in e for e in ei)
    w = g[NODE_TYPE, "coexpressed", NODE_TYPE].edge_attr[:, 0]
    assert w[[ei.index([0, 2])]].item() == pytest.approx(-1.0, abs=1e-5)
    from cgc_framework.plugin import value_slots

    [slots] = value_slots(schema, g, schema.roles.cell_state, measured_in=("x", "y"))
    assert list(slots.name) == ["G0", "G1", "G2", "G3"]            # measured values named by gene


def test_a_paired_control_state_and_bad_profiles(h5ad):
    b = _builder(h5ad, genes="all", coexpression_k=0)
    genes = tuple(GENES)
    g = b.build(ExpressionProfile(genes, np.ones(6, np.float32), "c", control=np.zeros(6, np.float32)))
    assert g[NODE_TYPE].x[:, 0].tolist() == [0.0] * 6 and g[NODE_TYPE].y[:, 0].tolist() == [1.0] * 6
    # a profile over other genes: the panel genes it lacks are unmeasured
    g = b.build(ExpressionProfile(("G5", "X", "G0"), np.array([5, 9, 1], np.float32), "c"))
    assert g[NODE_TYPE].x[:, 1].tolist() == [1, 0, 0, 0, 0, 1] and g[NODE_TYPE].x[[0, 5], 0].tolist() == [1, 5]
    with pytest.raises(RecordError, match="cell c: none of the 6 panel genes has a finite value"):
        b.build(ExpressionProfile(genes, np.full(6, np.nan, np.float32), "c"))
    with pytest.raises(RecordError, match="cell c: 5 values for 6 gene names"):
        b.build(ExpressionProfile(genes, np.ones(5, np.float32), "c"))
    with pytest.raises(RecordError, match="must be an ExpressionProfile"):
        b.build([1.0, 2.0])


def test_an_edge_table_replaces_coexpression_and_outside_genes_are_counted(h5ad, tmp_path):
    table = tmp_path / "edges.csv"
    table.write_text("gene_a,gene_b,weight\nG0,G3,0.5\nG3,G5,0.25\nG0,CD3E,1\nG4,G0,1\n")
    b = _builder(h5ad, edge_table=table)                           # panel: HVGs, G4 left out
    ei = b._edge_index.t().tolist()
    assert sorted(map(tuple, ei)) == [(0, 3), (3, 0), (3, 4), (4, 3)]
    assert "2 rows naming a gene outside the panel left out" in b.describe()["edges"]
    assert b.panel.unknown == ["CD3E"]


def test_composed_run_builds_every_cell_with_roles_and_views(h5ad, registry_yaml):
    from cgc_framework.api import plan_run
    from cgc_framework.engine.featurize import build_graphs
    from cgc_framework.plugin.roles import treated_view

    plan = plan_run(registry_yaml, overrides=[
        f"data.dataset={{name: h5ad_cells, params: {{path: {h5ad}, obs_fields: {{cell_type: cell_type}}}}}}",
        f"graph.modalities={{expression: {{builder: expression_genes, params: {{reference: {h5ad}, genes: all}}}}}}",
        "graph.edge_sources={}", "evaluations={}", "tasks={mask: {name: masked_recovery, params: {}}}",
        "stages=[{name: mask, epochs: 1, weights: {mask: 1.0}}]"])
    built = build_graphs(plan, progress=False)
    assert built.record_ids == CELLS[:7] and [e.record_id for e in built.skips.entries] == ["cell7"]
    assert plan.roles.cell_state == (NODE_TYPE,)
    view = treated_view(built.graphs[0], plan.roles.cell_state, plan.roles.treatment)
    assert torch.equal(view[NODE_TYPE].x, built.graphs[0][NODE_TYPE].y)


def test_cells_that_carry_a_compound_join_the_molecule_modality_through_treatment_edges(tmp_path, registry_yaml):
    from cgc_framework.api import plan_run
    from cgc_framework.engine.featurize import build_graphs
    from cgc_framework.plugin.roles import control_view

    smiles = np.array(["CCO", "c1ccccc1O", "", "CCN", "CCC", "not-a-smiles", "CO", "CC"], dtype=object)
    path = write_h5ad(tmp_path / "perturbed.h5ad", _matrix(),
                      extra_obs={"smiles": smiles, "dose": np.array([1.0, 10, 1, 1, 1, 1, 1, 1])})
    plan = plan_run(registry_yaml, overrides=[
        f"data.dataset={{name: h5ad_cells, params: {{path: {path}, obs_fields: {{smiles: smiles, dose: dose_um}}}}}}",
        "graph.modalities={molecule: {builder: rdkit_molecule}, expression: {builder: expression_genes, "
        f"params: {{reference: {path}, genes: all}}}}}}",
        "graph.edge_sources={cooccurrence: {name: cooccurrence, params: {cell_node_type: expression_gene}}}",
        "evaluations={}", "tasks={mask: {name: masked_recovery, params: {}}}",
        "stages=[{name: mask, epochs: 1, weights: {mask: 1.0}}]"])
    assert set(plan.roles.treatment) == {("compound", "treats", NODE_TYPE), (NODE_TYPE, "treated_by", "compound")}
    built = build_graphs(plan, progress=False)
    assert built.record_ids == ["cell0", "cell1", "cell3", "cell4", "cell6"]
    why = {e.record_id: e.component for e in built.skips.entries}
    assert why == {"cell2": "rdkit_molecule", "cell5": "rdkit_molecule", "cell7": "h5ad_cells"}
    g = built.graphs[1]
    assert g["compound"].num_nodes == 1 and g["compound", "treats", NODE_TYPE].edge_index.size(1) == 6
    assert float(g.dose_um) == 10.0
    assert control_view(g, plan.roles.treatment)["compound", "treats", NODE_TYPE].edge_index.size(1) == 0


def test_masked_recovery_trains_on_expression_graphs(h5ad):
    from torch_geometric.loader import DataLoader

    from cgc_plugins.encoders.hgt import HGTEncoder
    from cgc_plugins.encoders.params import HGTParams
    from cgc_plugins.tasks.masked_recovery import MaskedNodeRecovery
    from cgc_plugins.tasks.params import MaskedRecoveryParams

    torch.manual_seed(0)
    b = _builder(h5ad, genes="all", coexpression_k=2, min_abs_corr=0.5)
    schema = b.schema()
    recs, _, _ = _records(h5ad)
    graphs = [schema.conform(b.build(r.fields["expression_profile"])) for r in recs] * 4
    enc = HGTEncoder(HGTParams(hidden_dim=16, num_layers=1, heads=2), schema=schema)
    task = MaskedNodeRecovery(MaskedRecoveryParams(mask_rate=0.3), schema=schema, hidden_dim=16)
    batch = next(iter(DataLoader(graphs, batch_size=len(graphs))))
    losses, out = fit_losses(task, enc, batch)
    assert f"{NODE_TYPE}_loss" in out.logs and f"{NODE_TYPE}-coexpressed-{NODE_TYPE}_loss" in out.logs
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


# -- the PBMC file --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pbmc() -> Path:
    import os

    root = os.environ.get("CGC_SHARED_DATA")
    path = Path(root or "") / "transcriptomics" / "10x_pbmc68k_reduced.h5ad"
    if not root or not path.is_file():
        pytest.skip("needs transcriptomics/10x_pbmc68k_reduced.h5ad of ../shared/data (scanpy's pbmc68k_reduced): "
                    "set CGC_SHARED_DATA to that directory")
    return path


def test_pbmc_builds_all_700_cells_with_every_gene_used_or_left_out(pbmc):
    skips = SkipLog()
    ds = H5adCells(H5adCellsParams(path=pbmc, obs_fields={"bulk_labels": "cell_type"}, reader="h5py"))
    recs = list(ds.records(skips))
    assert len(recs) == 700 and not len(skips)
    assert ds.describe()["sha256"] == "e71d41e737c941559b7c57c9243bdb3d2c889c2adfdf00e3422ac6b46783676f"
    counts = pd.Series([r.fields["cell_type"] for r in recs]).value_counts()
    assert len(counts) == 10 and counts["Dendritic"] == 240 and counts["CD4+/CD45RA+/CD25- Naive T"] == 8
    b = ExpressionGeneBuilder(ExpressionGraphParams(reference=pbmc, reader="h5py"))
    assert len(b.panel.genes) == 309 and len(b.panel.left_out) == 456 and not b.panel.unknown
    assert len(b.panel.genes) + len(b.panel.left_out) == 765
    schema = b.schema()
    graphs = [schema.conform(b.build(r.fields["expression_profile"])) for r in recs]
    schema.validate(graphs[0])
    assert all(g[NODE_TYPE].num_nodes == 309 for g in graphs)
    assert all(float(g[NODE_TYPE].x[:, 1].min()) == 1.0 for g in graphs)   # no missing value in this file
    assert b._edge_index.size(1) == 3598                                    # 1799 co-expression pairs, both ways


# -- embedding maps -------------------------------------------------------------------------------

def test_knn_agreement_and_its_chance_level():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 30)
    centers = np.eye(3)[np.repeat([0, 1, 2], 30)] * 10
    assert knn_agreement(centers + rng.normal(size=(90, 3)) * 0.1, labels, k=5) == 1.0
    assert chance_agreement(labels) == pytest.approx(3 * 30 * 29 / (90 * 89))
    noise = knn_agreement(rng.normal(size=(90, 8)), labels, k=5)
    assert abs(noise - chance_agreement(labels)) < 0.12


def test_the_map_writes_png_coordinates_and_scores(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.repeat(["x", "y"], 20)
    good = np.eye(2)[np.repeat([0, 1], 20)] * 5 + rng.normal(size=(40, 2)) * 0.1
    ids = pd.DataFrame({"record_id": [f"r{i}" for i in range(40)]})
    res = write_map({"pretrained": good, "untrained": rng.normal(size=(40, 4))}, ids, labels, tmp_path / "m",
                    method="pca", k=5)
    assert res.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and res.method == "pca"
    coords = pd.read_csv(res.csv)
    assert list(coords.columns) == ["record_id", "label", "pretrained_x", "pretrained_y", "untrained_x", "untrained_y"]
    assert len(coords) == 40 and list(coords.label[:2]) == ["x", "x"]
    scores = pd.read_csv(res.scores_csv).set_index("model")
    assert scores.loc["pretrained", "knn_agreement"] == 1.0 and scores.loc["untrained", "knn_agreement"] < 0.8
    assert scores.loc["pretrained", "chance"] == pytest.approx(2 * 20 * 19 / (40 * 39))


def test_labels_join_on_a_shared_column_and_bad_tables_are_named(tmp_path):
    from cgc_framework.plugin.errors import CGCError

    ids = pd.DataFrame({"row": [1, 2, 3, 4], "smiles": ["CCO", "CCN", "CCC", "CO"]})
    lab = tmp_path / "labels.csv"
    lab.write_text("smiles,moa\nCCO,a\nCCN,\nCCC,b\nCCO,z\nC#N,c\n")
    rows, labels, stats = read_labels(lab, ids, "moa")
    assert rows.tolist() == [0, 2] and labels.tolist() == ["a", "b"]
    assert stats == {"key": "smiles", "unlabelled": 2, "unmatched": 1, "duplicates": 1}
    with pytest.raises(CGCError, match=r"labels.csv: no column 'class' \(--label-column\); its columns: smiles, moa"):
        read_labels(lab, ids, "class")
    with pytest.raises(CGCError, match="shares no key column with the embeddings"):
        read_labels(lab, ids[["row"]], "moa")


def test_cgc_embed_map_writes_the_files_beside_the_untrained_map(tmp_path):
    from cgc_framework.cli import embed_main

    lab = tmp_path / "labels.csv"
    lab.write_text("smiles,moa\nCCO,alcohol\nCCCO,alcohol\nCCCCO,alcohol\nc1ccccc1O,aromatic\nc1ccccc1N,aromatic\n"
                   "c1ccccc1C,aromatic\n")
    out = tmp_path / "emb.csv"
    smiles = ["CCO", "CCCO", "CCCCO", "c1ccccc1O", "c1ccccc1N", "c1ccccc1C", "CCN"]
    assert embed_main(["--model", "default", "--smiles", *smiles, "--out", str(out), "--map", str(lab),
                       "--label-column", "moa", "--map-method", "pca"]) == 0
    scores = pd.read_csv(tmp_path / "emb.map.scores.csv")
    assert list(scores.model) == ["pretrained", "untrained"] and set(scores.n_points) == {6}
    assert (tmp_path / "emb.map.png").stat().st_size > 1000
    coords = pd.read_csv(tmp_path / "emb.map.csv")
    assert list(coords.smiles) == smiles[:6] and set(coords.label) == {"alcohol", "aromatic"}
    assert embed_main(["--model", "default", "--smiles", "CCO", "--out", str(out), "--map", str(lab),
                       "--label-column", "nope"]) == 2
