"""Params of the encoders; light imports only, so validating a config does not import torch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
