"""A GIN molecule encoder inside the heterogeneous model (Hu et al., 2020, "Strategies for
Pre-training Graph Neural Networks"), composed with cross-type layers.

The molecular subgraph is encoded the way molecule GNNs that transfer well do it; the rest of
the experiment graph (targets, cell compartments) is encoded by the proposal's cross-type layers,
which carry information between molecules, proteins and cells::

    h_v^0     = input embedding of atom v (categorical atom vocabularies + mass)
    e_uv      = embedding of bond (u, v) (bond vocabularies)
    h_v^{l+1} = BN( MLP^l( (1 + eps) h_v^l + sum_{u in N(v)} ReLU(h_u^l + e_uv) ) )   (GINEConv)
                followed by ReLU except after the last layer, and dropout
    z_mol     = POOL over the molecule's atoms of h^L    (sum, mean or attention)
    z_other   = cross-type layers (HGT / typed attention) over every node type, with the atoms and
                molecules entering as h^L and z_mol

Output: ``{node_type: [N_t, hidden_dim]}``. The atoms' and the molecule's outputs are the GIN's
(``h^L`` and ``z_mol``), so a molecule's embedding (the readout of the ``molecule``-role types)
is the same whether the molecule comes from a SMILES or from an experiment graph, and every
cell-aware task that reads it (contrast, causal) trains these same GIN weights. The other node
types (targets, cell compartments) get the cross-type layers' output.

Node and edge types are found by role (:mod:`cgc_framework.plugin.roles`): the one
``molecule_part`` type (atoms), the edge types between two of its nodes (bonds, whose features
feed GINEConv), the ``molecule`` types (one node per molecule) and the edge types from atoms to
them (membership, which define which atoms a molecule pools).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import GINEConv
from torch_geometric.utils import scatter, softmax

from cgc_framework.plugin import EdgeType, Encoder, GraphSchema, SchemaInputEmbedding
from cgc_framework.plugin.input_embedding import FeatureEmbedding, edge_key
from cgc_framework.plugin.roles import MOLECULE, MOLECULE_PART

from .layers import cross_type_stack
from .params import MoleculeGINParams


def _mlp(d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))


class MoleculeGINEncoder(Encoder):
    """GINEConv over the molecular subgraph + cross-type layers over the whole graph (see the module
    docstring). Registered as ``molecule_gin``.

    Args:
        params: :class:`~cgc_plugins.encoders.params.MoleculeGINParams`.
        schema: the run's graph schema; it must declare exactly one ``molecule_part`` node type with
            bond edge types between its nodes, and ``molecule`` node types its atoms are members of.
    """

    def __init__(self, params: MoleculeGINParams | None, schema: GraphSchema):
        super().__init__()
        p = self.params = params or MoleculeGINParams()
        roles = schema.roles
        parts = roles.require(MOLECULE_PART, "molecule_gin", schema)
        if len(parts) != 1:
            raise ValueError(f"molecule_gin encodes one molecule_part node type (atoms); the schema declares "
                             f"{list(parts)}")
        self.atom = parts[0]
        self.molecules = list(roles.require(MOLECULE, "molecule_gin", schema))
        self.bonds: list[EdgeType] = [k for k in schema.edge_types if k[0] == self.atom and k[2] == self.atom]
        if not self.bonds:
            raise ValueError(f"molecule_gin needs bond edge types between '{self.atom}' nodes; the schema has "
                             f"none (edge types: {', '.join('|'.join(k) for k in schema.edge_types)})")
        self.membership: list[EdgeType] = [k for k in schema.edge_types
                                           if k[0] == self.atom and k[2] in self.molecules]
        self.hidden_dim = d = p.hidden_dim
        gin_types = {self.atom, *self.molecules}
        inject = [k for k in schema.edge_types if k not in self.bonds and not (k[0] in gin_types and k[2] in gin_types)]
        # input embeddings; cross-type edge features (doses, drug-target confidence) enter here
        self.embed = SchemaInputEmbedding(schema, d, edge_features=inject if p.edge_features else False)
        self.bond_embed = nn.ModuleDict({edge_key(k): FeatureEmbedding(schema.edge_types[k], d) for k in self.bonds})
        self.convs = nn.ModuleList(GINEConv(_mlp(d), train_eps=False) for _ in range(p.num_layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(d) for _ in range(p.num_layers))
        self.dropout = nn.Dropout(p.dropout)
        self.gate = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1)) if p.pooling == "attention" else None
        self.others = [t for t in schema.node_types if t not in gin_types]
        self.cross = (cross_type_stack(p.cross, schema.metadata(), d, p.cross_layers, p.heads, p.dropout)
                      if p.cross != "none" and p.cross_layers > 0 and self.others else None)

    # -- the molecular subgraph -----------------------------------------------------------------

    def _bonds(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        """All bond edges ``[2, E]`` and their embeddings ``[E, D]`` (every bond edge type)."""
        index, attr = [], []
        for k in self.bonds:
            if k not in data.edge_types:
                continue
            s = data[k]
            index.append(s.edge_index)
            attr.append(self.bond_embed[edge_key(k)](s.edge_attr, s.edge_attr_cat, s.get("edge_mask")))
        if not index:
            dev = self.convs[0].nn[0].weight.device
            return torch.zeros(2, 0, dtype=torch.long, device=dev), torch.zeros(0, self.hidden_dim, device=dev)
        return torch.cat(index, 1), torch.cat(attr, 0)

    def encode_atoms(self, h_atom: Tensor, data: HeteroData) -> Tensor:
        """``h^L``: ``[N_atoms, D]`` after the GIN layers."""
        edge_index, edge_attr = self._bonds(data)
        x = h_atom
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = norm(conv(x, edge_index, edge_attr))
            if i < len(self.convs) - 1:
                x = torch.relu(x)
            x = self.dropout(x)
        return x

    def pool(self, x: Tensor, data: HeteroData, molecule: str, h_molecule: Tensor) -> Tensor:
        """``z_mol``: ``[N_molecule, D]``, the pooled atoms of each molecule node (by membership
        edges; without them, the atoms of the molecule's graph). A molecule type with input
        features adds its input embedding ``h_molecule``."""
        n_mol = h_molecule.size(0)
        edges = [data[k].edge_index for k in self.membership if k[2] == molecule and k in data.edge_types]
        if edges:
            ei = torch.cat(edges, 1)
            src, dst = ei[0], ei[1]
        else:  # no membership edges: one molecule per graph, pooled by graph
            ab = data[self.atom].get("batch")
            src = torch.arange(x.size(0), device=x.device)
            dst = torch.zeros_like(src) if ab is None else ab
        msg = x[src]
        if self.params.pooling == "attention":
            w = softmax(self.gate(msg).squeeze(-1), dst, num_nodes=n_mol)  # [E]
            z = scatter(msg * w.unsqueeze(-1), dst, dim=0, dim_size=n_mol, reduce="sum")
        else:
            z = scatter(msg, dst, dim=0, dim_size=n_mol, reduce=self.params.pooling)
        has_features = bool(self.embed.node[molecule].linear is not None or len(self.embed.node[molecule].embeddings))
        return z + h_molecule if has_features else z

    # -- the whole graph --------------------------------------------------------------------------

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        h = self.embed(data)
        atoms = self.encode_atoms(h[self.atom], data)
        z = {self.atom: atoms}
        for m in self.molecules:
            z[m] = self.pool(atoms, data, m, h[m])
        if self.cross is None:
            return {**h, **z}
        out = self.cross({**h, **z}, data.edge_index_dict)
        return {t: z[t] if t in z else out[t] for t in out}


__all__ = ["MoleculeGINEncoder"]
