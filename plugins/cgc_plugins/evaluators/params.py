"""Params of the evaluators (and the constants their schemas need); light imports only, so
validating a config does not import torch, pandas, scikit-learn, RDKit or DeepChem."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cgc_framework.plugin.params import ExistingPath

CLASSIFICATION_SETS = ("tox21", "toxcast", "sider", "clintox", "bbbp", "hiv", "bace", "muv")
TOXICITY_SETS = ("tox21", "toxcast", "sider", "clintox")


class DatasetRef(BaseModel):
    """A dataset component by registry name and params (as under ``data.dataset`` in the YAML)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


RESPONSE_BASELINES = ("control", "per_dose_mean", "fingerprint_nn", "ecfp_ridge", "same_compound_interpolation")
Baseline = Literal[RESPONSE_BASELINES]  # type: ignore[valid-type]


class CausalConsistencyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: str = Field("test", description="held-out part of the run's dataset split to predict")
    task: str | None = Field(None, description="key of the causal head in `tasks:` (default: the one with predict())")
    max_wells: int | None = Field(None, gt=0, description="seeded subsample of evaluated wells (CPU budgets)")
    baselines: list[Baseline] = Field(  # type: ignore[valid-type]
        ["control", "per_dose_mean", "fingerprint_nn", "ecfp_ridge"],
        description="response baselines scored beside the model (docs/evaluation.md)")
    ablations: list[Literal["zero", "shuffle"]] = Field(
        ["zero", "shuffle"], description="molecule ablations of the model: compound embedding zeroed / shuffled")
    columns: Literal["complete", "covered"] = Field(
        "complete", description="scored slots: measured in every well (complete) or in at least one training "
                                "and one evaluated well (covered; pooled sources with different stain sets)")
    ics: bool = Field(True, description="compute the intervention consistency score")
    ics_dose_um: float = Field(10.0, gt=0, description="dose of the do() interventions compared by ICS (uM)")
    n_permutations: int = Field(1000, ge=1, description="permutations of the ICS test")
    batch_size: int = Field(64, gt=0)


class DoCheckParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str | None = Field(None, description="key of the causal head (default: the one with predict())")
    reference_plates: list[int] = Field([0, 1], min_length=1, description="plates whose control states are intervened on")
    doses_um: list[float] | None = Field(None, description="query doses (default: the SCM's doses)")
    ridge_alpha: float = Field(1.0, gt=0)
    tolerance: float = Field(0.5, gt=0, description="largest model MSE / mean squared true effect for 'identified'")
    batch_size: int = Field(64, gt=0)


Method = Literal["pretrained", "untrained", "ecfp_lr", "ecfp_rf", "minimol"]


class FewShotParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasets: list[Literal[CLASSIFICATION_SETS]] = Field(["bbbp"], min_length=1)  # type: ignore[valid-type]
    k: list[int] = Field([1, 5, 10, 20], min_length=1, description="labelled examples per class")
    draws: int = Field(10, ge=1, description="random support sets per k")
    methods: list[Method] = Field(["pretrained", "untrained", "ecfp_lr", "ecfp_rf"], min_length=1)
    data_dir: ExistingPath | None = Field(None, description="MoleculeNet CSVs; default: DeepChem downloads")
    max_tasks: int | None = Field(None, gt=0, description="first N tasks per set (ToxCast has 617)")
    split: Literal["test", "valid"] = Field(
        "test", description="the scaffold split scored: test (reported results) or valid (model development: "
                            "choose settings here, never on test); the leakage guard holds out the test split and, "
                            "with valid, the valid split too")
    reuse_baselines: bool = Field(
        True, description="reuse the rows of untrained / ecfp_lr / ecfp_rf from an earlier evaluation "
                          "with identical inputs (kept beside DeepChem's featurized splits); a sweep then "
                          "fits them once per seed instead of once per trial")

    def model_post_init(self, _: object) -> None:
        if any(k < 1 for k in self.k):
            raise ValueError(f"k must be >= 1 (k = 0 is the zero-shot evaluator), got {self.k}")


class OODParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suite: Literal["dose", "cell_context", "moa", "custom"]
    baselines: list[Baseline] | None = Field(  # type: ignore[valid-type]
        None, description="response baselines (default: control, per_dose_mean, fingerprint_nn, ecfp_ridge, and "
                          "same_compound_interpolation on the OOD part of the dose suite)")
    ablations: list[Literal["zero", "shuffle"]] = Field(["zero", "shuffle"])
    columns: Literal["complete", "covered"] = "complete"
    id_split: str | None = Field("val", description="in-distribution part of the run's dataset (null: none)")
    ood_split: str = Field("test", description="OOD part of the run's dataset (unless ood_dataset is given)")
    ood_dataset: DatasetRef | None = Field(
        None, description="dataset whose records are the OOD wells (cell_context: e.g. BBBC021 MCF-7)")
    task: str | None = Field(None, description="key of the causal head (default: the one with predict())")
    max_wells: int | None = Field(None, gt=0, description="seeded subsample per part (CPU budgets)")
    batch_size: int = Field(64, gt=0)

    def model_post_init(self, _: object) -> None:
        if self.suite == "cell_context" and self.ood_dataset is None:
            raise ValueError("suite cell_context needs ood_dataset (the other cell context's wells)")


class ScaffoldParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasets: list[Literal[CLASSIFICATION_SETS]] = Field(list(CLASSIFICATION_SETS), min_length=1)  # type: ignore[valid-type]
    protocols: list[Literal["linear_probe", "finetune", "finetune_lp", "ecfp_lr", "minimol_lr"]] = Field(
        ["linear_probe", "finetune", "ecfp_lr"],
        description="finetune_lp: fine-tuning whose head starts from the linear probe (LP-FT); "
                    "minimol_lr: frozen MiniMol embeddings + logistic regression (the [baselines] extra)")
    finetune_init: list[Literal["pretrained", "scratch"]] = ["pretrained", "scratch"]
    epochs: int = Field(10, gt=0, description="fine-tuning epochs (Hu et al.: 100)")
    batch_size: int = Field(32, gt=0)
    lr: float = Field(1e-3, gt=0)
    max_train: int | None = Field(None, gt=0, description="subsample the training split (CPU budgets)")
    data_dir: ExistingPath | None = None


class ZeroShotParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retrieval: bool = Field(True, description="(a) molecule -> profile retrieval on the held-out compounds")
    top_k: list[int] = Field([1, 5, 10], min_length=1, description="retrieval cut-offs (top-1% is added)")
    toxicity: bool = Field(True, description="(b) predicted response magnitude at a trained dose")
    toxicity_dose_um: float | None = Field(
        None, gt=0, description="probe dose of (b); default: the highest dose at which at least half of the "
                                "training compounds were measured (a dose the model was trained on)")
    toxicity_sets: list[Literal[TOXICITY_SETS]] = Field(  # type: ignore[valid-type]
        ["tox21", "clintox", "sider"], description="MoleculeNet label sources for (b); [] = scores only")
    data_dir: ExistingPath | None = Field(None, description="MoleculeNet CSVs; default: DeepChem downloads")
    min_labelled: int = Field(10, ge=2, description="fewest matched, labelled compounds to score a task")
    min_per_class: int = Field(3, ge=1, description="fewest matched compounds of each class to score a task")
    max_profiles: int | None = Field(None, gt=0, description="cap on the active wells retrieval reads (seeded subsample)")
    batch_size: int = Field(64, gt=0)

    def model_post_init(self, _: object) -> None:
        if any(k < 1 for k in self.top_k):
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")


class CellStateParams(BaseModel):
    """``cell_state``: cell-state classification from few labelled wells (docs/evaluation.md)."""

    model_config = ConfigDict(extra="forbid")

    label_field: str = Field("moa", description="record field holding the class (injury class, MoA, cell type)")
    dataset: DatasetRef | None = Field(None, description="dataset to classify (default: the run's dataset)")
    include_splits: list[str] | None = Field(None, description="parts of the run's dataset (default: all)")
    exclude_labels: list[str] = Field(["Control", "DMSO", "control", "negcon"],
                                      description="labels that are not cell states to classify (controls)")
    per: str | None = Field("source", description="record field splitting the records into separate problems "
                                                  "(e.g. one per source); null = one problem")
    only: list[str] | None = Field(None, description="evaluate only these values of `per`")
    group_field: str = Field("compound_id", description="wells sharing this field are never in support and test")
    k: list[int] = Field([0, 1, 5, 10, 20], min_length=1, description="labelled wells per class (0: retrieval)")
    draws: int = Field(10, ge=1, description="support sets per k >= 1")
    min_per_class: int = Field(3, ge=2, description="classes with fewer labelled wells are not evaluated")
    state: Literal["response", "treated"] = Field(
        "response", description="raw features: the response y - x (robust z vs the plate's DMSO) or the treated y")
    pca_components: int = Field(50, gt=0)
    batch_size: int = Field(64, gt=0)

    def model_post_init(self, _: object) -> None:
        if any(k < 0 for k in self.k):
            raise ValueError(f"k must be >= 0, got {self.k}")
