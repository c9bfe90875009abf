"""Roles: what a node or edge type *is* to tasks, views, readouts and evaluators.

Node and edge type names belong to the plugin that declares them (``compound`` to the molecule
builder, ``compartment`` to the cell builder). Everything else that must know "which types are the
molecule" or "which types carry a cell's control and treated state" reads the **role** the declaring
component gave the type in its schema fragment, never the name::

    NodeTypeSpec(features, name="compound", role=MOLECULE)               # a molecule builder
    NodeTypeSpec(features, name="compartment", role=CELL_STATE)          # a cell builder
    EdgeTypeSpec(features, src="compound", rel="treats", dst="compartment", role=TREATMENT)

Roles travel with the schema into ``schema.json`` and every checkpoint, so a model rebuilt from a
checkpoint knows them too. A third-party modality declares its roles the same way and is covered
by the views and the leakage guard without any configuration.

Node roles (:data:`NODE_ROLES`):

``molecule``
    One node per molecule of the graph (the compound). The molecule-level embedding is the
    encoder's readout of these types (:meth:`cgc_framework.plugin.contracts.Encoder.readout`).
``molecule_part``
    The parts of a molecule a molecule encoder passes messages between (atoms).
``target`` / ``target_part``
    A protein target of a compound and its parts (residues, ligands of its structure).
``cell_state``
    Nodes that describe the state of the cell under study: the **control** (pre-intervention)
    state in ``x`` and, when the data has it, the **treated** state in ``y`` (same shape as ``x``).
    Cell morphology compartments, expression genes, image objects. The cell-level embedding is the
    readout of these types; tasks never feed ``y`` to the encoder except in the treated view.

Edge roles (:data:`EDGE_ROLES`):

``treatment``
    Edges that join an intervention (compound, dose) to the cell it was applied to (co-occurrence in
    the experiment). They carry the answer to "which compound produced this profile", so every view
    that must not leak the pairing drops them (:func:`control_view`, :func:`treated_view`).

:meth:`Roles.of` derives the sets a task needs from a schema. Treatment edges are the edge types
declared ``treatment`` **plus** every edge type with exactly one end in a ``cell_state`` type (an
edge between a cell-state node and anything else links that cell to something outside it; an
undeclared one is treated as a treatment edge, the safe side).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor
    from torch_geometric.data import HeteroData

    from cgc_framework.plugin.graph import EdgeType, GraphSchema

MOLECULE = "molecule"
MOLECULE_PART = "molecule_part"
TARGET = "target"
TARGET_PART = "target_part"
CELL_STATE = "cell_state"
TREATMENT = "treatment"

NODE_ROLES: dict[str, str] = {
    MOLECULE: "one node per molecule; the molecule-level readout pools these types",
    MOLECULE_PART: "parts of a molecule (atoms) that molecule encoders pass messages between",
    TARGET: "one node per protein target (a drug target, its structure)",
    TARGET_PART: "parts of a protein target (residues, bound ligands)",
    CELL_STATE: "cell-state nodes: control state in x, treated state in y (same shape) when measured",
}
"""Every node role, with what it means (``""``: no role)."""

EDGE_ROLES: dict[str, str] = {
    TREATMENT: "joins an intervention (compound, dose) to the treated cell; dropped by leak-free views",
}
"""Every edge role, with what it means (``""``: no role)."""


@dataclass(frozen=True)
class Roles:
    """The node and edge types of a schema, by role (see the module docstring).

    Attributes:
        molecule: node types with role ``molecule``, in schema order.
        molecule_part: node types with role ``molecule_part``.
        target: node types with role ``target``.
        target_part: node types with role ``target_part``.
        cell_state: node types with role ``cell_state``.
        treatment: edge types a leak-free view drops: declared ``treatment`` plus every edge type
            with exactly one end in a ``cell_state`` type.
    """

    molecule: tuple[str, ...] = ()
    molecule_part: tuple[str, ...] = ()
    target: tuple[str, ...] = ()
    target_part: tuple[str, ...] = ()
    cell_state: tuple[str, ...] = ()
    treatment: tuple[EdgeType, ...] = ()

    @classmethod
    def of(cls, schema: GraphSchema) -> Roles:
        """The roles declared in ``schema`` (and the treatment edges they imply)."""
        check_roles({n: s.role for n, s in schema.node_types.items()},
                    {k: s.role for k, s in schema.edge_types.items()})
        by_role: dict[str, list[str]] = {r: [] for r in NODE_ROLES}
        for name, spec in schema.node_types.items():
            if spec.role:
                by_role[spec.role].append(name)
        cell = set(by_role[CELL_STATE])
        treatment = [k for k, s in schema.edge_types.items()
                     if s.role == TREATMENT or ((k[0] in cell) != (k[2] in cell))]
        return cls(tuple(by_role[MOLECULE]), tuple(by_role[MOLECULE_PART]), tuple(by_role[TARGET]),
                   tuple(by_role[TARGET_PART]), tuple(by_role[CELL_STATE]), tuple(treatment))

    def node_types(self, role: str) -> tuple[str, ...]:
        """The node types of ``role`` (one of :data:`NODE_ROLES`)."""
        if role not in NODE_ROLES:
            raise ValueError(f"unknown node role {role!r}; roles: {', '.join(NODE_ROLES)}")
        return getattr(self, role)

    def require(self, role: str, who: str, schema: GraphSchema) -> tuple[str, ...]:
        """The node types of ``role``; ``ValueError`` naming ``who`` needs them when there are none."""
        types = self.node_types(role)
        if not types:
            declared = ", ".join(f"{n} ({s.role or 'no role'})" for n, s in schema.node_types.items())
            raise ValueError(f"{who} needs node types with the role '{role}' ({NODE_ROLES[role]}); the "
                             f"graph schema declares none (node types: {declared or 'none'}). Add a "
                             f"modality whose builder declares that role")
        return types


def check_roles(node_roles: dict[str, str], edge_roles: dict[EdgeType, str], where: str = "") -> None:
    """``ValueError`` for a role that is not one of :data:`NODE_ROLES` / :data:`EDGE_ROLES`."""
    for name, role in node_roles.items():
        if role and role not in NODE_ROLES:
            raise ValueError(f"node type {name!r} has unknown role {role!r}{where}; "
                             f"node roles: {', '.join(NODE_ROLES)} (or '' for none)")
    for key, role in edge_roles.items():
        if role and role not in EDGE_ROLES:
            raise ValueError(f"edge type {key!r} has unknown role {role!r}{where}; "
                             f"edge roles: {', '.join(EDGE_ROLES)} (or '' for none)")


# -- views ---------------------------------------------------------------------------------------

def drop_edge_types(batch: HeteroData, edge_types: Sequence[EdgeType]) -> HeteroData:
    """A shallow copy of ``batch`` whose ``edge_types`` have no edges (tensors shared, not copied;
    ``batch`` itself is left intact)."""
    view = copy.copy(batch)  # new stores, same tensors: setting attributes leaves `batch` intact
    for k in edge_types:
        if k in view.edge_types:
            s = view[k]
            s.edge_index = s.edge_index[:, :0]
            for attr in ("edge_attr", "edge_attr_cat", "edge_mask"):
                if attr in s:
                    s[attr] = s[attr][:0]
    return view


def control_view(batch: HeteroData, treatment: Sequence[EdgeType]) -> HeteroData:
    """The batch without its treatment edges: cell-state nodes encode the pre-intervention state
    alone, and a molecule's embedding does not depend on the cell it was applied to."""
    return drop_edge_types(batch, treatment)


def treated_view(batch: HeteroData, cell_state: Sequence[str], treatment: Sequence[EdgeType],
                 who: str = "treated view") -> HeteroData:
    """The leak-free profile view: treatment edges dropped and every cell-state type carries its
    treated features ``y`` as ``x``. ``ValueError`` when a cell-state type with nodes has no ``y``."""
    require_treated(batch, cell_state, who)
    view = control_view(batch, treatment)
    for t in cell_state:
        if t in view.node_types and view[t].get("y") is not None:
            view[t].x = view[t].y
    return view


def require_treated(batch: HeteroData, cell_state: Sequence[str], who: str) -> None:
    """``ValueError`` naming ``who`` when a cell-state type with nodes in ``batch`` lacks ``y``."""
    for t in cell_state:
        if t in batch.node_types and batch[t].num_nodes and batch[t].get("y") is None:
            raise ValueError(f"{who}: cell-state node type '{t}' has no treated features `y` in this batch; "
                             f"its builder must set y (treated state, same shape as x)")


# -- readouts ------------------------------------------------------------------------------------

def mean_readout(z: dict[str, Tensor], batch: HeteroData, node_types: Sequence[str]) -> Tensor:
    """Per graph, the mean over ``node_types`` of each type's mean node embedding; a type with no
    node in a graph is left out of that graph's mean (a graph with none of them gets zeros).

    Args:
        z: ``{node_type: [N_t, D]}`` node embeddings of ``batch``.
        batch: a graph or a PyG batch of graphs.
    Returns:
        ``[num_graphs, D]``.
    """
    import torch

    from cgc_framework.plugin.graph import readout

    total: Tensor | None = None
    count: Tensor | None = None
    for t in node_types:
        r = readout(z[t], batch, t)  # [B, D]
        b = batch[t].get("batch")
        n = r.size(0)
        if b is None:
            present = torch.full((n,), float(z[t].size(0) > 0), device=r.device, dtype=r.dtype)
        else:
            present = (torch.bincount(b, minlength=n)[:n] > 0).to(r.dtype)
        total = r if total is None else total + r
        count = present if count is None else count + present
    if total is None or count is None:
        raise ValueError("mean_readout needs at least one node type")
    return total / count.clamp(min=1).unsqueeze(-1)


__all__ = ["CELL_STATE", "EDGE_ROLES", "MOLECULE", "MOLECULE_PART", "NODE_ROLES", "TARGET", "TARGET_PART",
           "Roles", "TREATMENT", "check_roles", "control_view", "drop_edge_types", "mean_readout",
           "require_treated", "treated_view"]
