"""Params of the encoders; light imports only, so validating a config does not import torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class HGTParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden_dim: int = Field(64, gt=0, description="width of every node embedding")
    num_layers: int = Field(2, gt=0)
    heads: int = Field(4, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    edge_features: bool = Field(
        True, description="add the mean embedding of incoming edges' features to each node's input "
                          "embedding (see cgc_framework.plugin.input_embedding); HGTConv itself takes no edge features")


class TypedAttentionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden_dim: int = Field(64, gt=0, description="width of every node embedding")
    num_layers: int = Field(2, gt=0)
    heads: int = Field(1, gt=0, description="1 = the proposal's single-head formula")
    negative_slope: float = Field(0.2, ge=0, description="LeakyReLU slope inside the attention score")
    dropout: float = Field(0.0, ge=0, lt=1)
    edge_features: bool = Field(
        True, description="add the mean embedding of incoming edges' features to each node's input "
                          "embedding (see cgc_framework.plugin.input_embedding); the layer itself is edge-feature free")


class MoleculeGINParams(BaseModel):
    """``molecule_gin``: GINEConv over atoms and bonds (Hu et al. 2020: 5 layers, 300 wide) +
    cross-type layers over the rest of the experiment graph."""

    model_config = ConfigDict(extra="forbid")

    hidden_dim: int = Field(300, gt=0, description="width of every node embedding (Hu et al.: 300)")
    num_layers: int = Field(5, gt=0, description="GINEConv layers over the molecular subgraph (Hu et al.: 5)")
    pooling: Literal["sum", "mean", "attention"] = Field(
        "sum", description="how a molecule node pools its atoms' final embeddings")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each GIN and cross-type layer")
    cross: Literal["hgt", "typed_attention", "none"] = Field(
        "hgt", description="cross-type layers carrying information between molecules, targets and cells")
    cross_layers: int = Field(2, ge=0, description="number of cross-type layers")
    heads: int = Field(4, gt=0, description="attention heads of the cross-type layers (divide hidden_dim)")
    edge_features: bool = Field(
        True, description="inject cross-type edge features (dose, drug-target confidence) into the input "
                          "embedding of their destination nodes; bond features always enter GINEConv")

    @model_validator(mode="after")
    def _heads_divide(self) -> "MoleculeGINParams":
        if self.cross != "none" and self.hidden_dim % self.heads:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must be divisible by heads ({self.heads})")
        return self
