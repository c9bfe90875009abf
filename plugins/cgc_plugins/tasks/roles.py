"""Which node and edge types play which role, with defaults from ``docs/graph-conventions.md``.

Cross-modal tasks need to know which node types are the *molecule* side (embedded as the compound),
which are the *cell* side (carry control state in ``x`` and treated state in ``y``) and which edge
types are cross-scale co-occurrence edges (to drop from views that must not leak the pairing).
"""

from __future__ import annotations

import copy

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch_geometric.data import HeteroData

from cgc_framework.graph import EdgeType, GraphSchema, readout

CELL_NODE_TYPES = ("compartment", "channel", "cell_object", "nucleus_object")
MOLECULE_NODE_TYPES = ("compound",)


class RoleParams(BaseModel):
    """Node/edge type roles shared by the contrast and causal tasks (``null`` = the default)."""

    model_config = ConfigDict(extra="forbid")

    molecule_node_types: list[str] = Field(
        list(MOLECULE_NODE_TYPES), min_length=1,
        description="node types whose per-graph mean embedding is the molecule embedding "
                    "(`compound`: one node per graph; add `atom` for the atom mean too)")
    cell_node_types: list[str] | None = Field(
        None, description="cell node types (control state in x, treated state in y); default: those of "
                          + ", ".join(CELL_NODE_TYPES) + " present in the schema")
    cooccurrence_edge_types: list[tuple[str, str, str]] | None = Field(
        None, description="edge types dropped from views that must not connect a compound to its "
                          "profile; default: every edge type with exactly one end in a cell node type")


def resolve_roles(p: RoleParams, schema: GraphSchema, task: str) -> tuple[list[str], list[str], list[EdgeType]]:
    """``(molecule_types, cell_types, cooccurrence_edge_types)``; ``ValueError`` naming what is missing."""
    missing = [t for t in p.molecule_node_types if t not in schema.node_types]
    if missing:
        raise ValueError(f"{task} needs molecule node types {missing}, which the graph schema lacks "
                         f"(node types: {', '.join(schema.node_types) or 'none'}); add a molecule modality "
                         f"or set molecule_node_types")
    if p.cell_node_types is None:
        cell = [t for t in CELL_NODE_TYPES if t in schema.node_types]
    else:
        cell = list(p.cell_node_types)
        unknown = [t for t in cell if t not in schema.node_types]
        if unknown:
            raise ValueError(f"{task}: cell_node_types {unknown} are not in the graph schema "
                             f"(node types: {', '.join(schema.node_types)})")
    if not cell:
        raise ValueError(f"{task} needs cell node types with treated features (one of "
                         f"{', '.join(CELL_NODE_TYPES)}); the graph schema has only "
                         f"{', '.join(schema.node_types) or 'no node types'}: add a cell modality")
    featureless = [t for t in cell if not schema.node_types[t].continuous_dim]
    if featureless:
        raise ValueError(f"{task}: cell node types {featureless} have no continuous features to treat")
    if p.cooccurrence_edge_types is None:
        cooc = [k for k in schema.edge_types if (k[0] in cell) != (k[2] in cell)]
    else:
        cooc = [tuple(k) for k in p.cooccurrence_edge_types]
        unknown = [k for k in cooc if k not in schema.edge_types]
        if unknown:
            raise ValueError(f"{task}: cooccurrence_edge_types {unknown} are not in the graph schema")
    return list(p.molecule_node_types), cell, cooc  # type: ignore[return-value]


def require_treated(batch: HeteroData, cell_types: list[str], task: str) -> None:
    for t in cell_types:
        if t in batch.node_types and batch[t].num_nodes and batch[t].get("y") is None:
            raise ValueError(f"{task}: cell node type '{t}' has no treated features `y` in this batch; "
                             f"the cell builder must set y (treated state, same shape as x)")


def drop_edge_types(batch: HeteroData, edge_types: list[EdgeType]) -> HeteroData:
    """A shallow copy of ``batch`` whose ``edge_types`` have no edges (tensors shared, not copied)."""
    view = copy.copy(batch)  # new stores, same tensors: setting attributes leaves `batch` intact
    for k in edge_types:
        if k in view.edge_types:
            s = view[k]
            s.edge_index = s.edge_index[:, :0]
            for attr in ("edge_attr", "edge_attr_cat", "edge_mask"):
                if attr in s:
                    s[attr] = s[attr][:0]
    return view


def mean_readout(z: dict[str, Tensor], batch: HeteroData, node_types: list[str]) -> Tensor:
    """Per-graph mean over ``node_types`` of each type's mean embedding; types with no node in a
    graph are left out of that graph's mean. Returns ``[num_graphs, D]``."""
    total, count = None, None
    for t in node_types:
        r = readout(z[t], batch, t)  # [B, D]
        b = batch[t].get("batch")
        n = r.size(0)
        if b is None:
            present = torch.full((n,), float(z[t].size(0) > 0), device=r.device)
        else:
            present = (torch.bincount(b, minlength=n)[:n] > 0).to(r.dtype)
        total = r if total is None else total + r
        count = present if count is None else count + present
    assert total is not None and count is not None
    return total / count.clamp(min=1).unsqueeze(-1)
