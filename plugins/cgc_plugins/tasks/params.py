"""Params of the pretraining tasks; light imports only, so validating a config does not import
torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RoleParams(BaseModel):
    """Node/edge types of the contrast and causal tasks (``null`` = from the schema's roles)."""

    model_config = ConfigDict(extra="forbid")

    molecule_node_types: list[str] | None = Field(
        None, min_length=1,
        description="node types whose readout is the molecule embedding; default: the schema's "
                    "'molecule'-role types (the compound node)")
    cell_node_types: list[str] | None = Field(
        None, min_length=1,
        description="cell node types (control state in x, treated state in y); default: the schema's "
                    "'cell_state'-role types")
    cooccurrence_edge_types: list[tuple[str, str, str]] | None = Field(
        None, min_length=1, description="edge types dropped from views that must not connect a compound to its profile, "
                          "as [src, rel, dst] triples, e.g. [[compound, treats, compartment], "
                          "[compartment, treated_by, compound]]; default: the schema's treatment edges "
                          "(declared 'treatment' or with exactly one end in a cell-state type); an empty list "
                          "is refused (the contrast view would see the pairing)")


class MaskedRecoveryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mask_rate: float = Field(0.15, gt=0, lt=1, description="fraction of nodes masked per type")
    node_types: list[str] | None = Field(
        None, description="node types to mask (default: every type that has input features)")
    edge_mask_rate: float | None = Field(
        None, gt=0, lt=1, description="fraction of edges masked per type (default: mask_rate)")
    edge_types: list[tuple[str, str, str]] | None = Field(
        None, description="edge types to mask (default: every type that has edge features; [] = none)")
    weighting: Literal["normalized", "mean"] = Field(
        "normalized", description="normalized: each term (a type's continuous columns, each categorical column) "
                                  "is divided by the loss of the best constant prediction on the same masked "
                                  "targets (their variance / the entropy of their classes), so a term whose "
                                  "targets are nearly constant weighs nothing and trivially predictable terms "
                                  "do not dominate; terms with constant targets are dropped. mean: the plain "
                                  "mean of the per-type losses")


class ContrastParams(RoleParams):
    temperature: float = Field(0.1, gt=0, description="InfoNCE temperature tau (initial value if learned)")
    learn_temperature: bool = Field(False, description="learn tau (as log(1/tau)), CLIP style")
    projection_dim: int = Field(64, gt=0, description="width of the projection heads' output")
    compound_key: str | None = Field(
        None, description="graph attribute (int per graph) identifying the compound, for "
                          "deduplicating positives; default: a hash of the molecule subgraph")
    dose_aware: bool = Field(
        False, description="the molecule side is the intervention (compound, dose): its projection reads the "
                           "molecule embedding and a continuous log-dose encoding, so one compound is not asked "
                           "to match its profiles at every dose")
    dose_dim: int = Field(16, gt=0, description="width of the dose encoding (dose_aware)")
    dose_attr: str = Field("dose_um", description="graph attribute holding the dose in uM (dose_aware)")
    profile: Literal["treated", "response"] = Field(
        "treated", description="what the profile side encodes: the treated state y (treated), or the response "
                               "y - x with the context categoricals (response: the plate's control context, "
                               "which says nothing about the compound, is removed)")
    min_activity: float | None = Field(
        None, ge=0, le=1, description="informative pairs only: graphs whose `activity` attribute (the well's "
                                      "percentile among its plate's DMSO wells) is below this are left out of the "
                                      "loss (as queries and as negatives); 0.95 = wells distinguishable from DMSO. "
                                      "null = every graph")
    activity_attr: str = Field("activity", description="graph attribute holding the activity percentile")


DEFAULT_DOSES_UM = [0.04, 0.12, 0.37, 1.11, 3.33, 10.0, 20.0]


class CausalParams(RoleParams):
    dose_encoding: Literal["continuous", "anchors"] = Field(
        "continuous", description="continuous: an MLP of log10 dose and low-frequency Fourier features of it, "
                                  "defined (and trained) for every positive dose; anchors: learned vectors at "
                                  "dose_anchors_um interpolated in log10 dose (held-out doses get ~no gradient)")
    dose_anchors_um: list[float] = Field(
        DEFAULT_DOSES_UM, min_length=1, description="anchor doses (uM) of the interpolated dose encoding")
    dose_dim: int = Field(16, gt=0, description="width of the dose encoding")
    head: Literal["mlp", "low_rank"] = Field(
        "mlp", description="mlp: change_i = MLP([z_i, z_I]); low_rank: change_i = sum_r a_r(z_I) B_r(z_i) + "
                           "b(z_I0, z_i): a rank-R response whose direction per node comes from the control state "
                           "and whose coefficients come from the intervention")
    rank: int = Field(8, gt=0, description="R of the low-rank head")
    context_readout: bool = Field(
        True, description="the intervention embedding also reads the control-state cell graph (plate context, "
                          "cell line, time point), so one compound may act differently in another context")
    masked_loss: bool = Field(
        True, description="score only value slots measured in both states (present flags 1), not the flags "
                          "themselves nor absent slots (0 = 0 everywhere)")
    molecule_dropout: float = Field(
        0.0, ge=0, lt=1, description="training only: the compound embedding of each graph is zeroed with this "
                                     "probability, so the head also learns the compound-free response at a dose "
                                     "in a context and the compound path learns deviations from it (a shrinkage "
                                     "toward the average compound for few training compounds)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in the intervention and head MLPs (training)")
    dose_attr: str = Field("dose_um", description="graph attribute holding the dose in uM")
    drop_cooccurrence: bool = Field(
        True, description="encode z_i without co-occurrence edges (pure control state)")
    predict_delta: bool = Field(True, description="predict y - x and add x (else predict y directly)")

    @field_validator("dose_anchors_um")
    @classmethod
    def _positive_increasing(cls, v: list[float]) -> list[float]:
        if any(d <= 0 for d in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("dose_anchors_um must be positive and strictly increasing")
        return v


class MoleculeContrastParams(BaseModel):
    """``molecule_contrast``: NT-Xent between two corrupted views of each molecule (MolCLR)."""

    model_config = ConfigDict(extra="forbid")

    atom_mask_rate: float = Field(0.25, ge=0, lt=1, description="fraction of atoms masked in each view (MolCLR: 0.25)")
    bond_drop_rate: float = Field(0.25, ge=0, lt=1, description="fraction of bonds removed in each view (MolCLR: 0.25)")
    temperature: float = Field(0.1, gt=0, description="NT-Xent temperature tau")
    projection_dim: int = Field(128, gt=0, description="width of the projection head's output")


class MoleculePropertiesParams(BaseModel):
    """``molecule_properties``: predict whole-molecule descriptors and ECFP4 bits from the molecule embedding."""

    model_config = ConfigDict(extra="forbid")

    descriptor_weight: float = Field(1.0, ge=0, description="weight of the descriptor regression (0: off)")
    num_descriptors: int = Field(20, gt=0, description="D (rdkit_molecule's descriptors: 20)")
    fingerprint_weight: float = Field(1.0, ge=0, description="weight of the fingerprint-bit classification (0: off)")
    fingerprint_bits: int = Field(1024, gt=0, multiple_of=8, description="rdkit_molecule's fingerprint_bits")

    @field_validator("fingerprint_weight")
    @classmethod
    def _something_to_predict(cls, v: float, info) -> float:
        if v == 0 and info.data.get("descriptor_weight", 1.0) == 0:
            raise ValueError("descriptor_weight and fingerprint_weight are both 0: nothing to predict")
        return v
