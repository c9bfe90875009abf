"""Params of the pretraining tasks; light imports only, so validating a config does not import
torch."""

from __future__ import annotations

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


class ContrastParams(RoleParams):
    temperature: float = Field(0.1, gt=0, description="InfoNCE temperature tau (initial value if learned)")
    learn_temperature: bool = Field(False, description="learn tau (as log(1/tau)), CLIP style")
    projection_dim: int = Field(64, gt=0, description="width of the projection heads' output")
    compound_key: str | None = Field(
        None, description="graph attribute (int per graph) identifying the compound, for "
                          "deduplicating positives; default: a hash of the molecule subgraph")


DEFAULT_DOSES_UM = [0.04, 0.12, 0.37, 1.11, 3.33, 10.0, 20.0]


class CausalParams(RoleParams):
    dose_anchors_um: list[float] = Field(
        DEFAULT_DOSES_UM, min_length=1, description="anchor doses (uM) of the interpolated dose encoding")
    dose_dim: int = Field(16, gt=0, description="width of the dose encoding")
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
