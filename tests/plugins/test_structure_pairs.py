"""Shipped path from a structure index to a pretraining run: the ``structure_pairs`` dataset emits
``smiles`` + ``structure_path`` records, ``biopython_protein`` builds residue graphs from real
structures, and ``drug_target`` links the structure's ``protein`` node to the compound."""

from __future__ import annotations

import math

import torch
import yaml

from cgc_framework.api import run
from cgc_framework.engine.config import validate_config
from cgc_framework.plugin.records import Record, SkipLog
from cgc_plugins.datasets.structures import StructurePairsDataset, StructurePairsParams
from cgc_plugins.edges.drug_target import DrugTargetEdges

IMATINIB_ID = "BRD-K92723993"

RUN_YAML = """
run: {name: structures, output_dir: OUT/runs}
data:
  dataset: {name: structure_pairs, params: {}}      # embedded: index + 1iep/1e3g/3w32 + Hub subset
graph:
  modalities:
    molecule: {builder: rdkit_molecule, params: {}}
    protein:
      builder: biopython_protein
      params: {secondary_structure: geometry, cutoff: 8.0, ligands: true}
  edge_sources:
    drug_target: {name: drug_target, params: {}}
model:
  encoder: {name: hgt, params: {hidden_dim: 16, num_layers: 1, heads: 2}}
tasks:
  mask: {name: masked_recovery, params: {mask_rate: 0.3}}
stages: [{name: mask, epochs: 2, weights: {mask: 1.0}}]
optimizer: {lr: 0.001, batch_size: 2}
trainer: {num_workers: 0}
"""


def test_embedded_structure_pairs_records():
    skips = SkipLog()
    ds = StructurePairsDataset()
    recs = list(ds.records(skips))
    by_file = {r.fields["structure_path"].rsplit("/", 1)[-1]: r for r in recs}
    assert set(by_file) == {"1iep.pdb", "1e3g.pdb", "3w32.pdb"}              # ABL1, AR, EGFR
    imatinib = by_file["1iep.pdb"]
    assert imatinib.id == f"{IMATINIB_ID}@1iep.pdb" and imatinib.fields["target"] == "ABL1"
    assert imatinib.fields["uniprot"] == "P00519"
    # the embedded index lists 22 structures; the 19 not shipped are counted, not silently dropped
    assert ds.describe()["structures_missing"] == 19 and len(skips) == 19


def test_structure_pairs_on_the_shared_index(shared_data):
    skips = SkipLog()
    ds = StructurePairsDataset(StructurePairsParams(
        index=shared_data / "proteins/index.csv",
        compound_targets=shared_data / "targets/repurposing_compound_target_edges.tsv",
        genes=["ABL1", "EGFR"], max_compounds_per_structure=5))
    recs = list(ds.records(skips))
    assert len(recs) == 10 and not skips.entries
    assert {r.fields["gene_symbol"] for r in recs} == {"ABL1", "EGFR"}


def test_linking_rule_structure_gene_is_protein_node_zero():
    src = DrugTargetEdges()
    from cgc_framework.plugin.graph import graph_from_dict
    d = graph_from_dict({"residue": {"x": torch.zeros(3, 8)}, "protein": {"x": torch.zeros(1, 0)},
                         "residue|in|protein": {"edge_index": torch.tensor([[0, 1, 2], [0, 0, 0]])}})
    rec = Record("r", {"compound_id": IMATINIB_ID + "-001-06-7", "structure_path": "/x/1iep.pdb"})
    assert src.structure_gene(rec) == "ABL1"                                    # by file name
    assert src.structure_gene(Record("r", {"uniprot": "P00519"})) == "ABL1"    # by UniProt
    src.add_edges(rec, d)
    ei = d["compound", "targets", "protein"].edge_index
    genes = sorted(src.targets(None, IMATINIB_ID))
    assert d["protein"].num_nodes == len(genes) and 0 in ei[1].tolist()         # ABL1 is node 0
    assert src.describe()["structures_linked"] == 1


def test_pretraining_run_links_real_residue_graphs_to_compounds(tmp_path):
    cfg = validate_config(yaml.safe_load(RUN_YAML.replace("OUT", str(tmp_path))))
    res = run(cfg, run_dir=tmp_path / "run", progress=False)
    ids = res.built.record_ids
    assert f"{IMATINIB_ID}@1iep.pdb" in ids and len(ids) == 3
    g = res.built.graphs[ids.index(f"{IMATINIB_ID}@1iep.pdb")]
    assert g["residue"].num_nodes == 548 and g["atom"].num_nodes == 37         # 1iep chains A+B; imatinib
    assert g["ligand"].num_nodes == 8                                           # 2 STI + 6 Cl-
    # compound -> protein node 0 (ABL1, the structure) <- residues: one connected path
    assert 0 in g["compound", "targets", "protein"].edge_index[1].tolist()
    assert set(g["residue", "in", "protein"].edge_index[1].tolist()) == {0}
    for rid in ids:                                                             # every structure linked
        gg = res.built.graphs[ids.index(rid)]
        assert 0 in gg["compound", "targets", "protein"].edge_index[1].tolist(), rid
    assert len(res.metrics) > 0
    assert all(math.isfinite(v) for v in res.metrics.select_dtypes("number").iloc[-1].dropna())
    # the training workers read the packed shard (batches sliced from concatenated tensors)
    assert (res.run_dir / "data" / "shards" / "manifest.json").is_file()
