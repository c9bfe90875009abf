"""The ``target_genes`` edge source: compound -> the expression gene nodes of its targets, on the real
Repurposing Hub compound-target table and small synthetic .h5ad files whose cells carry a SMILES."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cgc_framework.plugin import ConfigError
from tests.plugins.test_expression import write_h5ad
from tests.support import fit_losses

h5py = pytest.importorskip("h5py", reason="reading .h5ad needs h5py (pip install -e '.[expression]')")

GENE = "expression_gene"
# a 6-gene panel of real symbols (the writer's var index); imatinib targets ABL1 and KIT among them,
# gefitinib and erlotinib EGFR, nutlin-3 MDM2; buspirone's targets (HTR1A ...) are none of them,
# ethanol is in no table
PANEL = ["GAPDH", "KIT", "EGFR", "ACTB", "ABL1", "MDM2"]
IMATINIB = "CN1CCN(Cc2ccc(cc2)C(=O)Nc2ccc(C)c(Nc3nccc(n3)-c3cccnc3)c2)CC1"
GEFITINIB = "COc1cc2ncnc(Nc3ccc(F)c(Cl)c3)c2cc1OCCCN1CCOCC1"
ERLOTINIB = "COCCOc1cc2ncnc(Nc3cccc(c3)C#C)c2cc1OCCOC"
NUTLIN3 = "COc1ccc(C2=N[C@H]([C@H](N2C(=O)N2CCNC(=O)C2)c2ccc(Cl)cc2)c2ccc(Cl)cc2)c(OC(C)C)c1"
BUSPIRONE = "O=C1CC2(CCCC2)CC(=O)N1CCCCN1CCN(CC1)c1ncccn1"
SMILES = [IMATINIB, GEFITINIB, ERLOTINIB, NUTLIN3, BUSPIRONE, "CCO", IMATINIB, GEFITINIB]
EXPECTED = [{"ABL1", "KIT"}, {"EGFR"}, {"EGFR"}, {"MDM2"}, set(), set(), {"ABL1", "KIT"}, {"EGFR"}]


def _perturbed(tmp_path: Path) -> Path:
    """8 cells x the 6 panel genes (finite values), each cell carrying a compound's SMILES."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype(np.float32)
    return write_h5ad(tmp_path / "perturbed.h5ad", x, genes=PANEL,
                      extra_obs={"smiles": np.array(SMILES, dtype=object)})


def _plan(registry_yaml: Path, h5ad: Path, edges: str, gene_list: list[str] | None = None, extra=()):
    from cgc_framework.api import plan_run

    genes = f"gene_list: [{', '.join(gene_list)}]" if gene_list else "genes: all"
    return plan_run(registry_yaml, overrides=[
        f"data.dataset={{name: h5ad_cells, params: {{path: {h5ad}, obs_fields: {{smiles: smiles}}}}}}",
        "graph.modalities={molecule: {builder: rdkit_molecule}, expression: {builder: expression_genes, "
        f"params: {{reference: {h5ad}, {genes}, coexpression_k: 2, min_abs_corr: 0.0}}}}}}",
        f"graph.edge_sources={{genes: {edges}}}",
        "evaluations={}", "tasks={mask: {name: masked_recovery, params: {mask_rate: 0.3}}}",
        "stages=[{name: mask, epochs: 1, weights: {mask: 1.0}}]", *extra])


def _targeted(graph, plan) -> set[str]:
    """Gene symbols of the nodes the compound's targets_gene edges point at, read from each node's
    own gene identity (x_cat) and the schema's class names."""
    spec = plan.schema.node_types[GENE]
    names = spec.categorical[[f.name for f in spec.categorical].index("gene")].names
    ei = graph["compound", "targets_gene", GENE].edge_index
    assert torch.all(ei[0] == 0)
    return {names[int(graph[GENE].x_cat[j, 0])] for j in ei[1].tolist()}


def test_target_gene_edges_land_on_the_genes_the_hub_lists_and_misses_are_counted(tmp_path, registry_yaml,
                                                                                  shared_data):
    from cgc_framework.engine.featurize import build_graphs
    from cgc_framework.plugin.roles import control_view

    table = shared_data / "targets" / "repurposing_compound_target_edges.tsv"
    h5ad = _perturbed(tmp_path)
    # the panel in another order than the file: nodes follow the panel, edges follow each node's identity
    order = ["MDM2", "ABL1", "ACTB", "EGFR", "KIT", "GAPDH"]
    plan = _plan(registry_yaml, h5ad, f"{{name: target_genes, params: {{repurposing_edges: {table}, "
                                      f"use_embedded: false}}}}", gene_list=order)
    treat = {("compound", "targets_gene", GENE), (GENE, "gene_targeted_by", "compound")}
    assert treat <= set(plan.roles.treatment)
    built = build_graphs(plan, progress=False, workers=0)
    assert len(built.graphs) == 8 and not built.skips.entries
    for g, want in zip(built.graphs, EXPECTED):
        assert _targeted(g, plan) == want
        e = g["compound", "targets_gene", GENE]
        assert e.edge_attr.shape == (len(want), 1) and torch.all(e.edge_attr == 1.0)   # one table: confidence 1
        assert torch.equal(g[GENE, "gene_targeted_by", "compound"].edge_index, e.edge_index.flip(0))
        assert control_view(g, plan.roles.treatment)["compound", "targets_gene", GENE].edge_index.size(1) == 0
    imatinib = built.graphs[0]
    assert [order[j] for j in imatinib["compound", "targets_gene", GENE].edge_index[1].tolist()] == ["ABL1", "KIT"]
    (_, source), = plan.edge_sources.values()
    info = source.describe()
    assert info["records"] == 8 and info["with_compound"] == 8 and info["with_target_genes"] == 6
    assert info["no_target_gene_in_panel"] == 2 and info["compounds_in_tables"] == 7 and info["edges"] == 8
    why = info["compounds without a target gene in the panel (first 20: why)"]
    assert len(why) == 2
    assert any("HTR1A" in w and "none in the 6-gene panel" in w for w in why.values())
    assert any("not in the tables (repurposing_hub: repurposing_compound_target_edges.tsv)" in w
               for w in why.values())


def test_the_embedded_tables_link_imatinib_to_abl1_and_kit(tmp_path, registry_yaml):
    from cgc_framework.engine.featurize import build_graphs

    plan = _plan(registry_yaml, _perturbed(tmp_path), "{name: target_genes}")
    built = build_graphs(plan, progress=False, workers=0)
    assert _targeted(built.graphs[0], plan) == {"ABL1", "KIT"}
    # imatinib: the Hub subset lists it, JUMP-Target-1 does not -> 1 of 2 tables
    assert built.graphs[0]["compound", "targets_gene", GENE].edge_attr.squeeze(1).tolist() == [0.5, 0.5]


def test_target_genes_without_gene_nodes_is_a_config_problem_naming_the_fix(registry_yaml):
    from cgc_framework.api import plan_run

    with pytest.raises(ConfigError, match=r"graph\.edge_sources\.genes: target_genes links compounds to "
                                          r"'expression_gene' nodes, which no graph builder declares .*configure "
                                          r"the expression modality"):
        plan_run(registry_yaml, overrides=["graph.edge_sources={genes: {name: target_genes}}", "evaluations={}"])
    with pytest.raises(ConfigError, match="gene_node_tpye"):
        plan_run(registry_yaml, overrides=["graph.edge_sources={genes: {name: target_genes, "
                                           "params: {gene_node_tpye: x}}}", "evaluations={}"])


def test_an_unbound_source_says_how_to_bind_it():
    from torch_geometric.data import HeteroData

    from cgc_framework.plugin.records import Record
    from cgc_plugins.edges.target_genes import TargetGeneEdges

    with pytest.raises(RuntimeError, match="not bound to the builders' schema"):
        TargetGeneEdges().add_edges(Record("r", {"smiles": IMATINIB}), HeteroData())


def test_masked_recovery_trains_on_cells_carrying_a_compound_and_expression(tmp_path, registry_yaml, shared_data):
    from torch_geometric.loader import DataLoader

    from cgc_framework.engine.featurize import build_graphs

    table = shared_data / "targets" / "repurposing_compound_target_edges.tsv"
    plan = _plan(registry_yaml, _perturbed(tmp_path), f"{{name: target_genes, params: {{repurposing_edges: "
                                                      f"{table}}}}}",
                 extra=["model.encoder={name: hgt, params: {hidden_dim: 16, num_layers: 2, heads: 2}}"])
    graphs = list(build_graphs(plan, progress=False, workers=0).graphs) * 4
    torch.manual_seed(0)
    enc = plan.registry.create("encoder", "hgt", plan.encoder.params, schema=plan.schema)
    task = plan.registry.create("pretraining_task", "masked_recovery", plan.tasks["mask"].params,
                                schema=plan.schema, hidden_dim=enc.hidden_dim)
    batch = next(iter(DataLoader(graphs, batch_size=len(graphs))))
    assert batch["compound", "targets_gene", GENE].edge_index.size(1) == 4 * 8   # both modalities and the links
    losses, out = fit_losses(task, enc, batch)
    assert f"{GENE}_loss" in out.logs and "atom_loss" in out.logs
    assert np.isfinite(losses).all() and np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
