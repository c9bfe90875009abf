"""Evaluator plugin: transfer and consistency protocols run after pretraining (proposal §2.4)."""

from cgc_framework import hookimpl

from .fewshot import FewShotEvaluator, FewShotParams
from .scaffold import ScaffoldBenchmark, ScaffoldParams


@hookimpl
def register_evaluators(register):
    register("few_shot", FewShotEvaluator, params=FewShotParams,
             description="k-shot logistic regression on frozen embeddings vs ECFP4 + LR/RF and the "
                         "untrained encoder, MoleculeNet scaffold split (DeepChem loaders)")
    register("scaffold_benchmark", ScaffoldBenchmark, params=ScaffoldParams,
             description="Hu et al. 2020 protocol: full-data linear probe and fine-tuning (pretrained "
                         "vs from scratch) vs ECFP4, scaffold split, beside the literature averages")
