"""Encoder plugin: heterogeneous GNN encoders."""

from cgc_framework.plugin import hookimpl

from .hgt import HGTEncoder, HGTParams
from .typed_attention import TypedAttentionConv, TypedAttentionEncoder, TypedAttentionParams

__all__ = ["HGTEncoder", "HGTParams", "TypedAttentionConv", "TypedAttentionEncoder", "TypedAttentionParams"]


@hookimpl
def register_encoders(register):
    register("hgt", HGTEncoder, params=HGTParams,
             description="PyG HGTConv stack with per-type input embeddings, residuals and LayerNorm")
    register("typed_attention", TypedAttentionEncoder, params=TypedAttentionParams,
             description="the proposal's typed attention (§2.1.3) as a MessagePassing stack, "
                         "residuals and LayerNorm")
