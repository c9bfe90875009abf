"""Test fixture: conformant experiment graphs from the embedded LINCS plate (real data).

This is *not* the cell-profile builder (issue 5 owns that); it is the smallest faithful stand-in
that follows ``docs/graph-conventions.md`` so encoder and task tests run on real molecules and real
Cell Painting profiles:

- molecule subgraph: ``cgc_plugins.molecules.rdkit_builder.mol_to_graph`` (``atom``, ``compound``);
- ``compartment`` nodes (Cells, Cytoplasm, Nuclei; 3 per graph): ``x`` = the plate's DMSO median of
  the first ``dim`` features whose name starts with that compartment (control state), ``y`` = the
  treated well's values of the same features; both clipped to [-5, 5] (robust z-scores);
- ``(compartment, contains, compartment)``: Cells -> Cytoplasm, Cells -> Nuclei, both directions;
- ``(compound, treats, compartment)`` / ``(compartment, treated_by, compound)``: co-occurrence,
  edge feature log10(dose in uM);
- ``data.dose_um`` ``[1]``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import torch
from rdkit import Chem, RDLogger
from torch_geometric.data import HeteroData

from cgc_framework import hookimpl
from cgc_framework.plugin.graph import EdgeTypeSpec, FeatureSpec, GraphSchema, NodeTypeSpec
from cgc_framework.plugin.roles import CELL_STATE
from cgc_plugins.datasets.lincs import EMBEDDED_COMPOUNDS, EMBEDDED_PROFILES
from cgc_plugins.molecules.features import molecule_schema
from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder

COMPARTMENTS = ("Cells", "Cytoplasm", "Nuclei")
CONTAINS = [(0, 1), (0, 2)]  # Cells contains Cytoplasm, Nuclei


def cell_schema(dim: int) -> GraphSchema:
    compartment = NodeTypeSpec((FeatureSpec.continuous("profile", dim=dim, unit="robust z"),),
                               name="compartment", description="Cells / Cytoplasm / Nuclei", role=CELL_STATE)
    dose = (FeatureSpec.continuous("log10_dose", unit="log10 uM"),)
    edges = [EdgeTypeSpec((), src="compartment", rel="contains", dst="compartment"),
             EdgeTypeSpec(dose, src="compound", rel="treats", dst="compartment"),
             EdgeTypeSpec(dose, src="compartment", rel="treated_by", dst="compound")]
    return GraphSchema.of([compartment], edges)


def experiment_schema(dim: int = 8) -> GraphSchema:
    return molecule_schema().merge(cell_schema(dim))


@lru_cache(maxsize=4)
def _lincs(dim: int) -> tuple[GraphSchema, tuple[HeteroData, ...], tuple[str, ...]]:
    RDLogger.DisableLog("rdApp.*")
    df = pd.read_csv(EMBEDDED_PROFILES)
    smiles = pd.read_csv(EMBEDDED_COMPOUNDS, usecols=["broad_sample", "smiles"]).dropna()
    smiles = dict(zip(smiles.broad_sample, smiles.smiles))
    cols = [[c for c in df.columns if c.startswith(p + "_")][:dim] for p in COMPARTMENTS]
    control = df[df.Metadata_broad_sample == "DMSO"]
    x = torch.tensor(np.stack([control[c].median().to_numpy() for c in cols]), dtype=torch.float32)
    x = x.clamp(-5, 5)  # [3, dim]
    schema = experiment_schema(dim)
    builder = RDKitMoleculeBuilder()
    graphs, ids = [], []
    contains = torch.tensor(CONTAINS + [(b, a) for a, b in CONTAINS], dtype=torch.long).t()  # [2, 4]
    for _, row in df[df.Metadata_broad_sample != "DMSO"].iterrows():
        smi = smiles.get(row.Metadata_broad_sample)
        dose = float(row.Metadata_mmoles_per_liter)
        if smi is None or Chem.MolFromSmiles(smi) is None or dose <= 0:
            continue
        data = builder.build(smi)
        y = torch.tensor(np.stack([row[c].to_numpy(dtype=float) for c in cols]), dtype=torch.float32)
        data["compartment"].x = x.clone()
        data["compartment"].y = y.clamp(-5, 5)
        data["compartment"].x_cat = torch.zeros(3, 0, dtype=torch.long)
        data["compartment"].num_nodes = 3
        data["compartment", "contains", "compartment"].edge_index = contains.clone()
        log_dose = torch.full((3, 1), float(np.log10(dose)))
        treats = torch.stack([torch.zeros(3, dtype=torch.long), torch.arange(3)])  # [2, 3]
        data["compound", "treats", "compartment"].edge_index = treats
        data["compound", "treats", "compartment"].edge_attr = log_dose
        data["compartment", "treated_by", "compound"].edge_index = treats.flip(0)
        data["compartment", "treated_by", "compound"].edge_attr = log_dose.clone()
        data.dose_um = torch.tensor([dose], dtype=torch.float32)
        schema.conform(data)
        schema.validate(data)
        graphs.append(data)
        ids.append(row.Metadata_broad_sample)
    return schema, tuple(graphs), tuple(ids)


def lincs_experiment_graphs(dim: int = 8) -> tuple[GraphSchema, list[HeteroData], list[str]]:
    """``(schema, graphs, compound_ids)`` for every treated well of the embedded plate with a SMILES.

    Cached per ``dim``; callers must not modify the graphs in place.
    """
    schema, graphs, ids = _lincs(dim)
    return schema, list(graphs), list(ids)


def small_random_hetero(seed: int = 0, dim: int = 6) -> tuple[GraphSchema, HeteroData]:
    """A tiny random graph with two node types and three edge types (two of them into ``b`` from
    ``a``, so the typed-attention softmax pools over relations), for exact operator tests."""
    g = torch.Generator().manual_seed(seed)
    schema = GraphSchema.of(
        [NodeTypeSpec((FeatureSpec.continuous("f", dim=dim),), name="a"),
         NodeTypeSpec((FeatureSpec.continuous("f", dim=dim),), name="b")],
        [EdgeTypeSpec((), src="a", rel="r1", dst="b"), EdgeTypeSpec((), src="a", rel="r2", dst="b"),
         EdgeTypeSpec((), src="b", rel="r3", dst="a"), EdgeTypeSpec((), src="b", rel="r4", dst="b")])
    data = HeteroData()
    n = {"a": 7, "b": 5}
    for t in n:
        data[t].x = torch.randn(n[t], dim, generator=g)
        data[t].x_cat = torch.zeros(n[t], 0, dtype=torch.long)
        data[t].num_nodes = n[t]
    for (s, r, d), e in {("a", "r1", "b"): 12, ("a", "r2", "b"): 6, ("b", "r3", "a"): 10,
                         ("b", "r4", "b"): 8}.items():
        data[s, r, d].edge_index = torch.stack([torch.randint(n[s], (e,), generator=g),
                                                torch.randint(n[d], (e,), generator=g)])
    schema.conform(data)
    return schema, data


class FixtureCellPlugin:
    """Test-only plugin that feeds the graphs above through the real pipeline (dataset -> builders ->
    edge source -> orchestrator), until the issue-5 cell builder exists:

    - dataset ``fixture_lincs_wells``: one record per well (``smiles``, ``dose_um``, ``compound_id``,
      ``fixture_well`` = index into :func:`lincs_experiment_graphs`);
    - modality ``fixture_cell`` (field ``fixture_well``), builder ``fixture_cell_profile``
      (``compartment`` nodes with ``x``/``y`` and ``contains`` edges);
    - edge source ``fixture_cooccurrence``: ``(compound, treats, compartment)`` both ways with log10
      dose, and ``data.dose_um``.
    """

    def __init__(self, dim: int = 8, limit: int | None = None):
        self.dim, self.limit = dim, limit

    @staticmethod
    def _graph(dim: int, index: int) -> HeteroData:
        return _lincs(dim)[1][index]

    @hookimpl
    def register_datasets(self, register):
        from cgc_framework.plugin.contracts import Dataset
        from cgc_framework.plugin.records import Record

        plugin = self

        class Wells(Dataset):
            def records(self, skips):
                _, graphs, ids = _lincs(plugin.dim)
                smiles = pd.read_csv(EMBEDDED_COMPOUNDS, usecols=["broad_sample", "smiles"]).dropna()
                smiles = dict(zip(smiles.broad_sample, smiles.smiles))
                n = len(graphs) if plugin.limit is None else min(plugin.limit, len(graphs))
                for i in range(n):
                    yield Record(id=f"well{i}", fields={"smiles": smiles[ids[i]], "compound_id": ids[i],
                                                        "dose_um": float(graphs[i].dose_um), "fixture_well": i})

        register("fixture_lincs_wells", lambda params: Wells())

    @hookimpl
    def register_modalities(self, register):
        from cgc_framework.plugin.contracts import Modality

        register("fixture_cell", lambda params: Modality("fixture_well", "test fixture cells"))

    @hookimpl
    def register_graph_builders(self, register):
        from cgc_framework.plugin.contracts import GraphBuilder

        plugin = self

        class CellBuilder(GraphBuilder):
            modality = "fixture_cell"

            def schema(self):
                full = cell_schema(plugin.dim)
                key = ("compartment", "contains", "compartment")
                return GraphSchema(full.node_types, {key: full.edge_types[key]})

            def build(self, value):
                g = FixtureCellPlugin._graph(plugin.dim, int(value))
                out = HeteroData()
                for k in ("x", "y", "x_cat"):
                    out["compartment"][k] = g["compartment"][k]
                out["compartment"].num_nodes = 3
                out["compartment", "contains", "compartment"].edge_index = \
                    g["compartment", "contains", "compartment"].edge_index
                return out

        register("fixture_cell_profile", lambda params: CellBuilder())

    @hookimpl
    def register_edge_sources(self, register):
        from cgc_framework.plugin.contracts import EdgeSource

        plugin = self

        class Cooccurrence(EdgeSource):
            def schema(self):
                full = cell_schema(plugin.dim)
                nodes = experiment_schema(plugin.dim).node_types
                return GraphSchema({t: nodes[t] for t in ("compound", "compartment")},
                                   {k: v for k, v in full.edge_types.items() if k[1] != "contains"})

            def add_edges(self, record, data):
                g = FixtureCellPlugin._graph(plugin.dim, record.fields["fixture_well"])
                for k in (("compound", "treats", "compartment"), ("compartment", "treated_by", "compound")):
                    data[k].edge_index = g[k].edge_index
                    data[k].edge_attr = g[k].edge_attr
                data.dose_um = torch.tensor([record.fields["dose_um"]], dtype=torch.float32)

        register("fixture_cooccurrence", lambda params: Cooccurrence())


def three_stage_config(encoder: str = "typed_attention", epochs: tuple[int, int, int] = (2, 2, 2),
                       hidden_dim: int = 16, batch_size: int = 64, grad_accum_steps: int = 1) -> dict:
    """A config (dict) for :class:`FixtureCellPlugin`: mask -> +contrast -> +causal."""
    enc_params = {"hidden_dim": hidden_dim, "num_layers": 2, "heads": 2}
    return {
        "run": {"name": "three-stage", "seed": 0},
        "data": {"dataset": {"name": "fixture_lincs_wells"}},
        "graph": {"modalities": {"molecule": {"builder": "rdkit_molecule"},
                                 "fixture_cell": {"builder": "fixture_cell_profile"}},
                  "edge_sources": {"cooccurrence": {"name": "fixture_cooccurrence"}}},
        "model": {"encoder": {"name": encoder, "params": enc_params}},
        "tasks": {"mask": {"name": "masked_recovery", "params": {"mask_rate": 0.15}},
                  "contrast": {"name": "contrast", "params": {"temperature": 0.1}},
                  "causal": {"name": "causal"}},
        "stages": [{"name": "mask", "epochs": epochs[0], "weights": {"mask": 1.0}},
                   {"name": "contrast", "epochs": epochs[1], "weights": {"mask": 1.0, "contrast": 1.0}},
                   {"name": "causal", "epochs": epochs[2],
                    "weights": {"mask": 1.0, "contrast": 1.0, "causal": 1.0}}],
        "optimizer": {"lr": 3e-3, "batch_size": batch_size, "grad_accum_steps": grad_accum_steps},
        "trainer": {"num_workers": 0, "progress": False},
    }
