"""Encoder plugin: heterogeneous GNN encoders."""

from cgc_framework import hookimpl

from .hgt import HGTEncoder, HGTParams


@hookimpl
def register_encoders(register):
    register("hgt", HGTEncoder, params=HGTParams,
             description="PyG HGTConv stack with per-type input embeddings, residuals and LayerNorm")
