"""Pretraining-task plugin: self-supervised objectives."""

from cgc_framework import hookimpl

from .masked_recovery import MaskedNodeRecovery, MaskedRecoveryParams


@hookimpl
def register_pretraining_tasks(register):
    register("masked_recovery", MaskedNodeRecovery, params=MaskedRecoveryParams,
             description="mask node features of every type; recover them (MSE / cross-entropy)")
