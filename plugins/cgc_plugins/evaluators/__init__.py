"""Evaluator plugin: transfer and consistency protocols run after pretraining (proposal §2.4)."""

from cgc_framework import hookimpl

from .fewshot import FewShotEvaluator, FewShotParams


@hookimpl
def register_evaluators(register):
    register("few_shot", FewShotEvaluator, params=FewShotParams,
             description="k-shot logistic regression on frozen embeddings vs ECFP4 + LR/RF and the "
                         "untrained encoder, MoleculeNet scaffold split (DeepChem loaders)")
