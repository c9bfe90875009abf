"""The ``target_sequence`` modality: amino-acid sequences of a compound's target proteins."""

from cgc_framework.plugin import Modality, hookimpl

from .builder import FastaSequenceBuilder, FastaSequenceParams


def _modality(params: None) -> Modality:
    # The LINCS dataset's records carry the compound's targets as gene symbols, "EGFR|ERBB2".
    return Modality(record_field="target", description="target protein sequences, by gene symbol")


@hookimpl
def register_modalities(register):
    register("target_sequence", _modality, description="target protein sequences, by gene symbol")


@hookimpl
def register_graph_builders(register):
    register("fasta_target_sequence", FastaSequenceBuilder, params=FastaSequenceParams,
             description="gene symbols -> residue chain of the first target with a sequence in a FASTA file")
