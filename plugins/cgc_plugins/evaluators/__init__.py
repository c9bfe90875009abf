"""Evaluator plugin: transfer and consistency protocols run after pretraining (proposal §2.4)."""

from cgc_framework.plugin import hookimpl

from .causal_consistency import CausalConsistency, CausalConsistencyParams
from .do_check import DoCheck, DoCheckParams
from .fewshot import FewShotEvaluator, FewShotParams
from .ood import OODParams, OODResponse
from .scaffold import ScaffoldBenchmark, ScaffoldParams
from .zeroshot import ZeroShotEvaluator, ZeroShotParams


@hookimpl
def register_evaluators(register):
    register("causal_consistency", CausalConsistency, params=CausalConsistencyParams,
             description="counterfactual accuracy of the causal head on held-out wells (MSE, Pearson, Spearman "
                         "per feature/well) vs control / per-dose mean / ECFP4 nearest neighbour; ICS of "
                         "same-target compounds vs random pairs with a permutation test")
    register("ood_response", OODResponse, params=OODParams,
             description="response prediction in- vs out-of-distribution: held-out doses, novel MoAs, "
                         "another cell context (e.g. A549 -> MCF-7 BBBC021), with the same baselines")
    register("do_check", DoCheck, params=DoCheckParams,
             description="do-calculus check on scm_cellpainting: the model's interventional error vs a "
                         "correlational ridge regressor and the analytic truth, with a verdict")
    register("few_shot", FewShotEvaluator, params=FewShotParams,
             description="k-shot logistic regression on frozen embeddings vs ECFP4 + LR/RF and the "
                         "untrained encoder, MoleculeNet scaffold split (DeepChem loaders)")
    register("zero_shot", ZeroShotEvaluator, params=ZeroShotParams,
             description="k = 0: molecule->profile retrieval top-1/5/10 on held-out compounds (CLOOME) and the "
                         "predicted top-dose response magnitude as a label-free toxicity score (AUROC)")
    register("scaffold_benchmark", ScaffoldBenchmark, params=ScaffoldParams,
             description="Hu et al. 2020 protocol: full-data linear probe and fine-tuning (pretrained "
                         "vs from scratch) vs ECFP4, scaffold split, beside the literature averages")
