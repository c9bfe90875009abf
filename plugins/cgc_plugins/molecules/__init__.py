"""Molecule modality plugin: the ``molecule`` modality and the ``rdkit_molecule`` builder.

Registered by lazy ``"module:Name"`` references, so discovery does not import RDKit or torch."""

from cgc_framework.plugin import Modality, hookimpl


def _molecule_modality(params: None) -> Modality:
    return Modality(record_field="smiles", description="small molecules given as SMILES")


@hookimpl
def register_modalities(register):
    register("molecule", _molecule_modality, description="small molecules given as SMILES")


@hookimpl
def register_graph_builders(register):
    register("rdkit_molecule", "cgc_plugins.molecules.rdkit_builder:RDKitMoleculeBuilder",
             params="cgc_plugins.molecules.params:RDKitMoleculeParams",
             description="SMILES -> atom/bond graph (RDKit; OGB-style features with 'other' buckets)")
