"""Pretraining-task plugin: self-supervised objectives (proposal §2.2)."""

from cgc_framework.plugin import hookimpl

from .causal import CausalIntervention, CausalParams
from .contrast import ContrastParams, CrossModalContrast
from .masked_recovery import MaskedNodeRecovery, MaskedRecoveryParams

__all__ = ["CausalIntervention", "CausalParams", "ContrastParams", "CrossModalContrast",
           "MaskedNodeRecovery", "MaskedRecoveryParams"]


@hookimpl
def register_pretraining_tasks(register):
    register("masked_recovery", MaskedNodeRecovery, params=MaskedRecoveryParams,
             description="mask node and edge features of every type; recover them (MSE / cross-entropy)")
    register("contrast", CrossModalContrast, params=ContrastParams,
             description="symmetric InfoNCE: compound vs the profile it produced, leak-free view")
    register("causal", CausalIntervention, params=CausalParams,
             description="predict treated cell-node features from control state + compound + dose")
