"""Evaluator plugin: transfer and consistency protocols run after pretraining (proposal §2.4).

Registered by lazy ``"module:Name"`` references, so discovery does not import torch, pandas,
scikit-learn, RDKit or DeepChem."""

from cgc_framework.plugin import hookimpl


@hookimpl
def register_evaluators(register):
    register("causal_consistency", "cgc_plugins.evaluators.causal_consistency:CausalConsistency",
             params="cgc_plugins.evaluators.params:CausalConsistencyParams",
             description="counterfactual accuracy of the causal head on held-out wells (MSE, Pearson, Spearman "
                         "per feature/well) vs control / per-dose mean / ECFP4 nearest neighbour; ICS of "
                         "same-target compounds vs random pairs with a permutation test")
    register("ood_response", "cgc_plugins.evaluators.ood:OODResponse",
             params="cgc_plugins.evaluators.params:OODParams",
             description="response prediction in- vs out-of-distribution: held-out doses, novel MoAs, "
                         "another cell context (e.g. A549 -> MCF-7 BBBC021), with the same baselines")
    register("do_check", "cgc_plugins.evaluators.do_check:DoCheck",
             params="cgc_plugins.evaluators.params:DoCheckParams",
             description="do-calculus check on scm_cellpainting: the model's interventional error vs a "
                         "correlational ridge regressor and the analytic truth, with a verdict")
    register("cell_state", "cgc_plugins.evaluators.cell_state:CellStateClassification",
             params="cgc_plugins.evaluators.params:CellStateParams",
             description="cell-state classification (injury class, MoA, cell type) from 0/1/5/10/20 labelled wells "
                         "per class: cell-level embeddings vs raw features and PCA, logistic regression")
    register("few_shot", "cgc_plugins.evaluators.fewshot:FewShotEvaluator",
             params="cgc_plugins.evaluators.params:FewShotParams",
             description="k-shot logistic regression on frozen embeddings vs ECFP4 + LR/RF and the "
                         "untrained encoder, MoleculeNet scaffold split (DeepChem loaders)")
    register("zero_shot", "cgc_plugins.evaluators.zeroshot:ZeroShotEvaluator",
             params="cgc_plugins.evaluators.params:ZeroShotParams",
             description="k = 0: molecule->profile retrieval top-1/5/10 on held-out compounds (CLOOME) and the "
                         "predicted top-dose response magnitude as a label-free toxicity score (AUROC)")
    register("scaffold_benchmark", "cgc_plugins.evaluators.scaffold:ScaffoldBenchmark",
             params="cgc_plugins.evaluators.params:ScaffoldParams",
             description="Hu et al. 2020 protocol: full-data linear probe and fine-tuning (pretrained "
                         "vs from scratch) vs ECFP4, scaffold split, beside the literature averages")
