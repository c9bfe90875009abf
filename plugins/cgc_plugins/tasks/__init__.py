"""Pretraining-task plugin: self-supervised objectives (proposal §2.2).

Registered by lazy ``"module:Name"`` references, so discovery does not import torch; the classes
below are imported on first access (``from cgc_plugins.tasks import CausalIntervention``)."""

from importlib import import_module
from typing import Any

from cgc_framework.plugin import hookimpl

_EXPORTS = {
    "CausalIntervention": "causal",
    "CausalParams": "params",
    "ContrastParams": "params",
    "CrossModalContrast": "contrast",
    "MaskedNodeRecovery": "masked_recovery",
    "MaskedRecoveryParams": "params",
}

__all__ = ["CausalIntervention", "CausalParams", "ContrastParams", "CrossModalContrast",
           "MaskedNodeRecovery", "MaskedRecoveryParams"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


@hookimpl
def register_pretraining_tasks(register):
    register("masked_recovery", "cgc_plugins.tasks.masked_recovery:MaskedNodeRecovery",
             params="cgc_plugins.tasks.params:MaskedRecoveryParams",
             description="mask node and edge features of every type; recover them (MSE / cross-entropy)")
    register("contrast", "cgc_plugins.tasks.contrast:CrossModalContrast",
             params="cgc_plugins.tasks.params:ContrastParams",
             description="symmetric InfoNCE: compound vs the profile it produced, leak-free view")
    register("causal", "cgc_plugins.tasks.causal:CausalIntervention",
             params="cgc_plugins.tasks.params:CausalParams",
             description="predict treated cell-node features from control state + compound + dose")
    register("molecule_contrast", "cgc_plugins.tasks.molecule_contrast:MoleculeContrast",
             params="cgc_plugins.tasks.params:MoleculeContrastParams",
             description="NT-Xent between two corrupted views (masked atoms, dropped bonds) of each molecule "
                         "(MolCLR): trains the molecule-level embedding")
    register("molecule_properties", "cgc_plugins.tasks.molecule_properties:MoleculeProperties",
             params="cgc_plugins.tasks.params:MoleculePropertiesParams",
             description="predict RDKit whole-molecule descriptors and ECFP4 bits (rdkit_molecule descriptors / "
                         "fingerprint_bits) from the molecule embedding")
