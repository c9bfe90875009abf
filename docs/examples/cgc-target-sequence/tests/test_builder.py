import pytest

from cgc_framework.engine.registry import load_registry
from cgc_framework.plugin import RecordError


def builder():
    reg = load_registry()
    info = reg.get("graph_builder", "fasta_target_sequence")
    assert info.distribution == "cgc-target-sequence"
    return reg.create("graph_builder", "fasta_target_sequence", info.params())


def test_first_target_with_a_sequence_is_built():
    b = builder()
    assert b.schema().roles.target_part == ("aa",)  # residues of a protein target
    data = b.schema().conform(b.build("NOT_A_GENE|ABL1|EGFR"))
    b.schema().validate(data)
    assert data["aa"].num_nodes == 293  # 1IEP chain A SEQRES
    assert data["aa", "peptide", "aa"].edge_index.size(1) == 2 * 292


def test_targets_without_a_sequence_are_record_errors():
    with pytest.raises(RecordError, match="none of the targets"):
        builder().build("CACNA1C|CACNB2")
