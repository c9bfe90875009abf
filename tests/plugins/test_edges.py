"""Cross-scale edge sources: drug-target (Repurposing Hub + JUMP-Target) and co-occurrence (dose)."""

from __future__ import annotations

import math

import pytest
import torch

from cgc_framework.plugin.records import Record, RecordError
from cgc_plugins.edges.cooccurrence import CooccurrenceEdges
from cgc_plugins.edges.drug_target import DrugTargetEdges, DrugTargetParams

IMATINIB = {"compound_id": "BRD-K92723993-001-06-7", "inchikey": "KTUFNOKKBVMGRW"}
HUB_TARGETS = ["ABL1", "CSF1R", "DDR1", "KIT", "NTRK1", "PDGFRA", "PDGFRB", "RET"]


def _graph(n_cells: int = 3):
    from torch_geometric.data import HeteroData
    d = HeteroData()
    d["compound"].x = torch.zeros(1, 0)
    d["compound"].num_nodes = 1
    d["compartment"].x = torch.zeros(n_cells, 70)
    d["compartment"].num_nodes = n_cells
    return d


def test_imatinib_gets_its_repurposing_hub_targets_with_confidence_and_structures():
    src = DrugTargetEdges()
    d = _graph()
    src.add_edges(Record("r", IMATINIB), d)
    assert d["protein"].num_nodes == 8
    ei = d["compound", "targets", "protein"].edge_index
    assert ei.tolist() == [[0] * 8, list(range(8))]
    # only the Hub lists imatinib (JUMP-Target-1 does not): 1 of 2 sources
    assert d["compound", "targets", "protein"].edge_attr.squeeze(1).tolist() == [0.5] * 8
    genes = sorted(src.targets(IMATINIB["inchikey"], None))
    assert genes == HUB_TARGETS
    has = dict(zip(genes, d["compound", "targets", "protein"].edge_attr_cat.squeeze(1).tolist()))
    assert has["ABL1"] == 1 and has["NTRK1"] == 1 and has["KIT"] == 0   # 1iep.pdb, AlphaFold NTRK1
    assert torch.equal(d["protein", "targeted_by", "compound"].edge_index, ei.flip(0))
    # the join works on the Broad id alone too, and only_with_structure keeps ABL1 + NTRK1
    assert sorted(src.targets(None, "BRD-K92723993-001-06-7")) == HUB_TARGETS
    only = DrugTargetEdges(DrugTargetParams(only_with_structure=True))
    assert sorted(only.targets(IMATINIB["inchikey"], None)) == ["ABL1", "NTRK1"]


def test_jump_target_pair_from_the_embedded_tables():
    # gabapentin-enacarbil: JUMP-Target-1 single target CACNB4 (not on the embedded LINCS plate's Hub subset)
    t = DrugTargetEdges().targets("TZDUHAJSIBHXDL-UHFFFAOYSA-N", "BRD-A86665761-001-01-1")
    assert t == {"CACNB4": 0.5}


@pytest.mark.shared_data
def test_full_tables_agree_on_a_pair_and_confidence_is_one(shared_data):
    src = DrugTargetEdges(DrugTargetParams(
        repurposing_edges=shared_data / "targets/repurposing_compound_target_edges.tsv",
        jump_target=shared_data / "cellpainting/annotations/"
                                  "JUMP-Target-1_compound_metadata_single_target_v2024-04-07_fc15616.tsv",
        proteins_index=shared_data / "proteins/index.csv"))
    assert len(src.by_key14) > 4000
    t = src.targets("TZDUHAJSIBHXDL-UHFFFAOYSA-N", "BRD-A86665761-001-01-1")
    # the Hub says CACNA1G, JUMP-Target chose CACNB4: each pair is listed by 1 of 2 sources
    assert t == {"CACNA1G": 0.5, "CACNB4": 0.5}
    # a pair both tables list gets confidence 1.0
    both = [k for k, genes in src.by_key14.items() if any(len(s) == 2 for s in genes.values())]
    assert both and max(src.targets(both[0], None).values()) == 1.0


def test_compound_without_targets_stays_usable():
    src = DrugTargetEdges()
    d = _graph()
    src.add_edges(Record("r", {"compound_id": "DMSO", "inchikey": None}), d)
    assert d["protein"].num_nodes == 0 and d["compound", "targets", "protein"].edge_index.shape == (2, 0)
    assert src.describe()["with_targets"] == 0 and src.describe()["records"] == 1


def test_cooccurrence_edges_carry_log10_dose_and_set_dose_um():
    d = _graph(3)
    CooccurrenceEdges().add_edges(Record("r", {"dose_um": 3.33}), d)
    e = d["compound", "treats", "compartment"]
    assert e.edge_index.tolist() == [[0, 0, 0], [0, 1, 2]]
    assert e.edge_attr.squeeze(1).tolist() == pytest.approx([math.log10(3.33)] * 3)
    assert d["compartment", "treated_by", "compound"].edge_index.tolist() == [[0, 1, 2], [0, 0, 0]]
    assert d.dose_um.tolist() == pytest.approx([3.33])


@pytest.mark.parametrize("dose", [None, 0.0, float("nan"), -1.0])
def test_cooccurrence_rejects_records_without_a_positive_dose(dose):
    with pytest.raises(RecordError, match="positive dose"):
        CooccurrenceEdges().add_edges(Record("r", {"dose_um": dose}), _graph())
