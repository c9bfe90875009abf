"""Protein modality plugin: the ``protein`` modality (record field ``structure_path``) and the
``biopython_protein`` builder (PDB / mmCIF / AlphaFold DB files -> residue graph).

Registered by lazy ``"module:Name"`` references, so discovery does not import Biopython or torch."""

from cgc_framework.plugin import Modality, hookimpl


def _protein_modality(params: None) -> Modality:
    return Modality(record_field="structure_path",
                    description="protein structures given as PDB / mmCIF / AlphaFold DB file paths")


@hookimpl
def register_modalities(register):
    register("protein", _protein_modality,
             description="protein structures given as PDB / mmCIF / AlphaFold DB file paths")


@hookimpl
def register_graph_builders(register):
    register("biopython_protein", "cgc_plugins.proteins.builder:BiopythonProteinBuilder",
             params="cgc_plugins.proteins.params:BiopythonProteinParams",
             description="structure file -> residue graph (Biopython; DSSP or geometry SS, "
                         "pLDDT, conservation sidecar, KD-tree contacts)")
