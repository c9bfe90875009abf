"""The GIN molecule encoder inside the heterogeneous model, and the molecule-level tasks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch_geometric.data import Batch, HeteroData
from torch_geometric.loader import DataLoader

from cgc_framework.plugin import GraphSchema
from cgc_plugins.encoders import MoleculeGINEncoder, MoleculeGINParams
from cgc_plugins.molecules.descriptors import NAMES
from cgc_plugins.molecules.features import molecule_schema
from cgc_plugins.molecules.params import RDKitMoleculeParams
from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder
from cgc_plugins.tasks.masked_recovery import MaskedNodeRecovery
from cgc_plugins.tasks.molecule_contrast import MoleculeContrast
from cgc_plugins.tasks.molecule_properties import MoleculeProperties
from cgc_plugins.tasks.params import MaskedRecoveryParams, MoleculePropertiesParams
from tests.graph_fixtures import lincs_experiment_graphs

SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1O", "CCN(CC)CC", "O=C(O)c1ccncc1", "Clc1ccc(Cl)cc1", "CCOC(=O)C"]


@pytest.fixture(scope="module")
def molecules():
    schema = GraphSchema().merge(molecule_schema())
    builder = RDKitMoleculeBuilder(RDKitMoleculeParams(descriptors=True, fingerprint_bits=256))
    return schema, [schema.conform(builder.build(s)) for s in SMILES]


def _encoder(schema, **kw):
    torch.manual_seed(0)
    return MoleculeGINEncoder(MoleculeGINParams(hidden_dim=32, num_layers=3, **kw), schema).eval()


def _permuted(g: HeteroData, perm: torch.Tensor) -> HeteroData:
    """The same molecule with its atoms renumbered: new atom i is old atom perm[i]."""
    out = copy.copy(g)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    out["atom"].x, out["atom"].x_cat = g["atom"].x[perm], g["atom"].x_cat[perm]
    for k in g.edge_types:
        ei = g[k].edge_index.clone()
        if k[0] == "atom":
            ei[0] = inv[ei[0]]
        if k[2] == "atom":
            ei[1] = inv[ei[1]]
        out[k].edge_index = ei
    return out


@pytest.mark.parametrize("pooling", ["sum", "mean", "attention"])
def test_shapes_and_a_readout_invariant_to_atom_order(molecules, pooling):
    schema, graphs = molecules
    enc = _encoder(schema, pooling=pooling)
    batch = Batch.from_data_list(graphs)
    z = enc(batch)
    assert {t: tuple(v.shape) for t, v in z.items()} == {"atom": (batch["atom"].num_nodes, 32),
                                                          "compound": (len(SMILES), 32)}
    emb = enc.readout(z, batch, ["compound"])
    assert emb.shape == (len(SMILES), 32)
    g = graphs[0]
    perm = torch.randperm(g["atom"].num_nodes, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = enc.readout(enc(g), g, ["compound"])
        b = enc.readout(enc(_permuted(g, perm)), g, ["compound"])
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(emb[0], emb[1])            # different molecules, different embeddings


def test_bond_features_enter_the_gin_layers(molecules):
    schema, graphs = molecules
    enc = _encoder(schema)
    g = graphs[0]
    other = copy.copy(g)
    cat = g["atom", "bond", "atom"].edge_attr_cat.clone()
    cat[:, 0] = (cat[:, 0] + 1) % schema.edge_types[("atom", "bond", "atom")].cardinalities[0]  # other bond types
    other["atom", "bond", "atom"].edge_attr_cat = cat
    with torch.no_grad():
        a, b = enc.readout(enc(g), g, ["compound"]), enc.readout(enc(other), other, ["compound"])
    assert (a - b).abs().max() > 1e-3


def test_in_the_experiment_graph_cells_get_the_cross_layers_and_molecules_the_gin():
    schema, graphs, _ = lincs_experiment_graphs(8)
    torch.manual_seed(0)
    enc = MoleculeGINEncoder(MoleculeGINParams(hidden_dim=32, num_layers=2, heads=2), schema).eval()
    batch = next(iter(DataLoader(graphs, batch_size=4)))
    z = enc(batch)
    assert set(z) == set(schema.node_types) and all(v.size(1) == 32 for v in z.values())
    assert enc.cross is not None and enc.others == ["compartment"]
    mol_only = copy.copy(batch)  # the molecule's embedding does not depend on the cell nodes
    mol_only["compartment"].x = torch.randn_like(batch["compartment"].x)
    with torch.no_grad():
        assert torch.allclose(enc(mol_only)["compound"], z["compound"])
        assert not torch.allclose(enc(mol_only)["compartment"], z["compartment"])


def test_the_schema_must_declare_atoms_and_bonds():
    from cgc_framework.plugin import NodeTypeSpec

    with pytest.raises(ValueError, match="needs node types with the role 'molecule_part'"):
        MoleculeGINEncoder(None, GraphSchema.of([NodeTypeSpec((), name="compound", role="molecule")]))


def test_molecule_tasks_train_and_log(molecules):
    schema, graphs = molecules
    batch = Batch.from_data_list(graphs)
    assert batch.mol_descriptors.shape == (len(SMILES), len(NAMES)) and batch.mol_fingerprint.shape == (len(SMILES), 32)
    enc = _encoder(schema).train()
    tasks = [MoleculeProperties(MoleculePropertiesParams(fingerprint_bits=256), schema, 32),
             MoleculeContrast(None, schema, 32), MaskedNodeRecovery(MaskedRecoveryParams(), schema, 32)]
    params = list(enc.parameters()) + [p for t in tasks for p in t.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    torch.manual_seed(0)
    first = last = None
    for _ in range(40):
        outs = [t(batch, enc) for t in tasks]
        loss = sum(o.loss for o in outs)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.detach())
        last = float(loss.detach())
    assert last < 0.7 * first
    logs = {k for o in outs for k in o.logs}
    assert {"descriptor_r2", "fingerprint_bce", "top1", "atom_loss", "atom_relative"} <= logs


def test_normalized_masking_drops_constant_targets():
    """A term whose masked targets are all the same class has nothing to learn: it is left out."""
    from cgc_plugins.tasks.masked_recovery import _Head

    head = _Head(4, 0, (3, 5))
    z = torch.randn(6, 4)
    constant = torch.zeros(6, 2, dtype=torch.long)                   # both columns constant
    assert head.loss(z, torch.zeros(6, 0), constant, normalized=True) is None
    varied = torch.tensor([[0, 1], [0, 2], [0, 3], [0, 4], [0, 0], [0, 1]])  # first column constant
    loss, raw = head.loss(z, torch.zeros(6, 0), varied, normalized=True)
    ce_second = torch.nn.functional.cross_entropy(head.categorical[1](z), varied[:, 1])
    p = torch.bincount(varied[:, 1], minlength=5).float() / 6
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    assert torch.allclose(loss, ce_second / entropy, atol=1e-6)       # only the varying column counts
    assert torch.isfinite(raw)
