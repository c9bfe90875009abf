"""Encoder plugin: heterogeneous GNN encoders.

Registered by lazy ``"module:Name"`` references, so discovery does not import torch; the classes
below are imported on first access (``from cgc_plugins.encoders import HGTEncoder``)."""

from importlib import import_module
from typing import Any

from cgc_framework.plugin import hookimpl

_EXPORTS = {
    "MoleculeGINEncoder": "gin",
    "MoleculeGINParams": "params",
    "HGTEncoder": "hgt",
    "HGTParams": "params",
    "TypedAttentionConv": "typed_attention",
    "TypedAttentionEncoder": "typed_attention",
    "TypedAttentionParams": "params",
}

__all__ = ["MoleculeGINEncoder", "MoleculeGINParams", "HGTEncoder", "HGTParams",
            "TypedAttentionConv", "TypedAttentionEncoder", "TypedAttentionParams"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


@hookimpl
def register_encoders(register):
    register("hgt", "cgc_plugins.encoders.hgt:HGTEncoder", params="cgc_plugins.encoders.params:HGTParams",
             description="PyG HGTConv stack with per-type input embeddings, residuals and LayerNorm")
    register("typed_attention", "cgc_plugins.encoders.typed_attention:TypedAttentionEncoder",
             params="cgc_plugins.encoders.params:TypedAttentionParams",
             description="the proposal's typed attention (§2.1.3) as a MessagePassing stack, "
                         "residuals and LayerNorm")
    register("molecule_gin", "cgc_plugins.encoders.gin:MoleculeGINEncoder",
             params="cgc_plugins.encoders.params:MoleculeGINParams",
             description="GINEConv over atoms and bonds (Hu et al. 2020) with a sum/mean/attention molecule "
                         "readout, composed with HGT or typed-attention layers over targets and cells")
