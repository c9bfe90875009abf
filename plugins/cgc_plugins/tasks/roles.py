"""Which node and edge types the cross-modal tasks use: the schema's roles, optionally overridden.

The defaults come from the roles the builders and edge sources declared
(:mod:`cgc_framework.plugin.roles`): the ``molecule`` node types, the ``cell_state`` node types and
the treatment edge types. A task's params may name other types explicitly (e.g. the atoms' mean as
well as the compound node).
"""

from __future__ import annotations

from cgc_framework.plugin import EdgeType, GraphSchema
from cgc_framework.plugin.roles import CELL_STATE, MOLECULE

from .params import RoleParams


def resolve_roles(p: RoleParams, schema: GraphSchema, task: str) -> tuple[list[str], list[str], list[EdgeType]]:
    """``(molecule_types, cell_types, treatment_edge_types)``; ``ValueError`` naming what is missing."""
    roles = schema.roles
    if p.molecule_node_types is None:
        molecule = list(roles.require(MOLECULE, task, schema))
    else:
        molecule = list(p.molecule_node_types)
        missing = [t for t in molecule if t not in schema.node_types]
        if missing:
            raise ValueError(f"{task} needs molecule node types {missing}, which the graph schema lacks "
                             f"(node types: {', '.join(schema.node_types) or 'none'}); add a molecule modality "
                             f"or set molecule_node_types")
    if p.cell_node_types is None:
        cell = list(roles.cell_state)
        if not cell:
            raise ValueError(f"{task} needs cell node types with treated features (node types with the role "
                             f"'{CELL_STATE}'); the graph schema has only "
                             f"{', '.join(schema.node_types) or 'no node types'}: add a cell modality")
    else:
        cell = list(p.cell_node_types)
        unknown = [t for t in cell if t not in schema.node_types]
        if unknown:
            raise ValueError(f"{task}: cell_node_types {unknown} are not in the graph schema "
                             f"(node types: {', '.join(schema.node_types)})")
    featureless = [t for t in cell if not schema.node_types[t].continuous_dim]
    if featureless:
        raise ValueError(f"{task}: cell node types {featureless} have no continuous features to treat")
    if p.cooccurrence_edge_types is None:
        treatment = list(roles.treatment) if p.cell_node_types is None else \
            [k for k in schema.edge_types if k in roles.treatment or ((k[0] in cell) != (k[2] in cell))]
    else:
        treatment = [tuple(k) for k in p.cooccurrence_edge_types]  # type: ignore[misc]
        unknown_e = [k for k in treatment if k not in schema.edge_types]
        if unknown_e:
            raise ValueError(f"{task}: cooccurrence_edge_types {unknown_e} are not in the graph schema")
    return molecule, cell, treatment
