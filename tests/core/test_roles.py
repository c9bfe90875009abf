"""Node/edge roles as a contract: declared once by the component that declares a type, read by tasks,
views, readouts, embeddings and the leakage guard; and ``data.join`` attaching per-record data.

The third-party plugin below is written the way a stranger would write one from docs/plugins.md: a
``signature`` modality (a gene-expression signature per well: control state in ``x``, treated state
in ``y``, declared ``cell_state``) and an edge source linking the compound to the genes (no role
declared). Nothing in the config names a node type of it."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader

from cgc_framework.api import plan_run
from cgc_framework.engine.config import load_config
from cgc_framework.engine.leakage import LEAKAGE_GUARD
from cgc_framework.plugin import (
    ConfigError,
    Dataset,
    EdgeSource,
    EdgeTypeSpec,
    Evaluator,
    FeatureSpec,
    GraphBuilder,
    GraphSchema,
    HeldOutMolecules,
    Modality,
    NodeTypeSpec,
    Record,
    RecordError,
    Roles,
    SkipLog,
    hookimpl,
)
from cgc_framework.plugin.roles import CELL_STATE, MOLECULE, TREATMENT, control_view, treated_view
from cgc_plugins.evaluators.common import inchikey14

GENES = 4
PLATES = ("P1", "P2")
WELLS = ("A01", "A02", "B01")
SMILES = {"A01": "CCO", "A02": "c1ccccc1O", "B01": "CC(=O)Oc1ccccc1C(=O)O"}


class SignaturePlugin:
    """A third-party plugin: dataset, modality, builder, edge source and a held-out evaluator."""

    @hookimpl
    def register_datasets(self, register):
        class Wells(Dataset):
            def records(self, skips):
                for plate in PLATES:
                    for well in WELLS:
                        yield Record(f"{plate}:{well}", {"smiles": SMILES[well], "plate": plate, "well": well,
                                                         "compound_id": well, "dose_um": 1.0})

        register("signature_wells", lambda params: Wells())

    @hookimpl
    def register_modalities(self, register):
        register("signature", lambda params: Modality("signature", "expression signature per well"))

    @hookimpl
    def register_graph_builders(self, register):
        class SignatureBuilder(GraphBuilder):
            modality = "signature"

            def schema(self):
                return GraphSchema.of([NodeTypeSpec((FeatureSpec.continuous("expression"),), name="gene",
                                                    role=CELL_STATE)])

            def build(self, value):
                if not isinstance(value, dict):
                    raise RecordError(f"not a signature: {value!r}")
                g = HeteroData()
                g["gene"].x = torch.zeros(GENES, 1)                                   # control state
                g["gene"].y = torch.tensor([[float(value[f"g{i}"])] for i in range(GENES)])  # treated
                g["gene"].x_cat = torch.zeros(GENES, 0, dtype=torch.long)
                g["gene"].num_nodes = GENES
                return g

        register("signature_builder", lambda params: SignatureBuilder())

    @hookimpl
    def register_edge_sources(self, register):
        class CompoundGene(EdgeSource):
            def schema(self):
                return GraphSchema({}, {("compound", "perturbs", "gene"):
                                        EdgeTypeSpec((), src="compound", rel="perturbs", dst="gene")})

            def add_edges(self, record, data):
                data["compound", "perturbs", "gene"].edge_index = torch.stack(
                    [torch.zeros(GENES, dtype=torch.long), torch.arange(GENES)])
                data.dose_um = torch.tensor([float(record.fields["dose_um"])])

        register("compound_gene", lambda params: CompoundGene())

    @hookimpl
    def register_evaluators(self, register):
        class HoldsOutPhenol(Evaluator):
            def held_out_molecules(self, plan):
                return HeldOutMolecules({inchikey14("c1ccccc1O"): "test split of a fixture"}, inchikey14)

            def evaluate(self, context):  # pragma: no cover - only its held-out list is used here
                raise AssertionError

        register("holds_out_phenol", lambda params: HoldsOutPhenol())


def _table(tmp_path, rows=None):
    rows = rows or [{"plate": p, "well": w, **{f"g{i}": 10 * k + j + 0.1 * i for i in range(GENES)}}
                    for k, p in enumerate(PLATES) for j, w in enumerate(WELLS)]
    path = tmp_path / "signatures.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _config(tmp_path, registry_yaml, table, extra=()):
    sets = ["data.dataset={name: signature_wells, params: {}}",
            f"data.join=[{{table: {table}, keys: [plate, well], field: signature}}]",
            "graph.modalities={molecule: {builder: rdkit_molecule, params: {}}, "
            "signature: {builder: signature_builder, params: {}}}",
            "graph.edge_sources={link: {name: compound_gene, params: {}}}",
            "evaluations={}", *extra]
    return load_config(registry_yaml, sets)


def test_roles_are_declared_in_the_schema_and_survive_serialisation():
    node = NodeTypeSpec((FeatureSpec.continuous("v"),), name="c", role=CELL_STATE)
    mol = NodeTypeSpec((), name="m", role=MOLECULE)
    other = NodeTypeSpec((FeatureSpec.continuous("v"),), name="o")
    declared = EdgeTypeSpec((), src="m", rel="dosed", dst="o", role=TREATMENT)
    into_cell = EdgeTypeSpec((), src="o", rel="near", dst="c")
    inside = EdgeTypeSpec((), src="c", rel="in", dst="c")
    schema = GraphSchema().merge(GraphSchema.of([node, mol, other], [declared, into_cell, inside]))
    roles = schema.roles
    assert roles.molecule == ("m",) and roles.cell_state == ("c",)
    # declared treatment edges plus every edge with exactly one end in a cell-state type
    assert set(roles.treatment) == {("m", "dosed", "o"), ("o", "near", "c")}
    again = GraphSchema.from_dict(schema.to_dict())
    assert Roles.of(again) == roles and again.node_types["c"].role == CELL_STATE
    with pytest.raises(ValueError, match="unknown role 'cells'.*node roles: molecule"):
        GraphSchema().merge(GraphSchema.of([NodeTypeSpec((), name="x", role="cells")]))


def test_a_third_party_treated_state_modality_is_dropped_from_the_views(tmp_path, registry_yaml):
    plan = plan_run(_config(tmp_path, registry_yaml, _table(tmp_path)), extra_plugins=(SignaturePlugin(),),
                    base_dir=registry_yaml.parent)
    roles = plan.roles
    assert roles.cell_state == ("gene",) and roles.molecule == ("compound",)
    assert set(roles.treatment) == {("compound", "perturbs", "gene")}   # undeclared, but it links to a cell
    built = plan.build_graphs(list(plan.dataset.records(SkipLog())))
    batch = next(iter(DataLoader(built.graphs, batch_size=4)))
    edges = batch["compound", "perturbs", "gene"].edge_index
    assert edges.size(1) == 4 * GENES
    for view in (control_view(batch, roles.treatment), treated_view(batch, roles.cell_state, roles.treatment)):
        assert view["compound", "perturbs", "gene"].edge_index.size(1) == 0
    assert batch["compound", "perturbs", "gene"].edge_index.size(1) == 4 * GENES  # the batch is untouched
    assert torch.equal(treated_view(batch, roles.cell_state, roles.treatment)["gene"].x, batch["gene"].y)
    # the built-in tasks pick the third-party types up from the roles, with no configuration
    contrast = plan.registry.create("pretraining_task", "contrast", None, schema=plan.schema, hidden_dim=16)
    causal = plan.registry.create("pretraining_task", "causal", None, schema=plan.schema, hidden_dim=16)
    for task in (contrast, causal):
        assert task.cell_types == ["gene"] and task.cooccurrence == [("compound", "perturbs", "gene")]
    encoder = plan.registry.create("encoder", "hgt", plan.registry.validate_params(
        "encoder", "hgt", {"hidden_dim": 16, "heads": 2}, key="model.encoder"), schema=plan.schema)
    assert set(causal.predict(batch, encoder)) == {"gene"}
    assert torch.isfinite(contrast(batch, encoder).loss)


def test_the_leakage_guard_covers_a_third_party_dataset_without_configuration(tmp_path, registry_yaml):
    cfg = _config(tmp_path, registry_yaml, _table(tmp_path), ["evaluations={h: {name: holds_out_phenol}}"])
    plan = plan_run(cfg, extra_plugins=(SignaturePlugin(),), base_dir=registry_yaml.parent)
    skips = SkipLog()
    kept = list(plan.dataset.records(skips))
    assert [r.id for r in kept] == ["P1:A01", "P1:B01", "P2:A01", "P2:B01"]
    dropped = [e for e in skips.entries if e.component == LEAKAGE_GUARD]
    assert [e.record_id for e in dropped] == ["P1:A02", "P2:A02"]
    assert dropped[0].field == "smiles" and "test split of a fixture" in dropped[0].reason


def test_join_attaches_each_plates_own_row_and_counts_unmatched_records(tmp_path, registry_yaml):
    rows = [{"plate": p, "well": w, **{f"g{i}": 10 * k + j + 0.1 * i for i in range(GENES)}}
            for k, p in enumerate(PLATES) for j, w in enumerate(WELLS) if (p, w) != ("P2", "B01")]
    plan = plan_run(_config(tmp_path, registry_yaml, _table(tmp_path, rows)),
                    extra_plugins=(SignaturePlugin(),), base_dir=registry_yaml.parent)
    skips = SkipLog()
    records = {r.id: r for r in plan.dataset.records(skips)}
    assert set(records) == {"P1:A01", "P1:A02", "P1:B01", "P2:A01", "P2:A02"}
    # the same well on two plates gets its own plate's row (keys compare as text)
    assert records["P1:A02"].fields["signature"]["g1"] == pytest.approx(1.1)
    assert records["P2:A02"].fields["signature"]["g1"] == pytest.approx(11.1)
    [skip] = skips.entries
    assert skip.record_id == "P2:B01" and skip.component == "data.join" and "no row for" in skip.reason
    info = plan.dataset.describe()
    assert any("5 records matched, 1 without a row" in str(v) for v in info.values())
    built = plan.build_graphs(list(records.values()))
    y = {rid: g["gene"].y.view(-1) for rid, g in zip(built.record_ids, built.graphs)}
    assert y["P2:A01"].tolist() == pytest.approx([10.0, 10.1, 10.2, 10.3])
    # optional join: the unmatched record is kept without the field
    cfg = _config(tmp_path, registry_yaml, tmp_path / "signatures.csv",
                  [f"data.join=[{{table: {tmp_path / 'signatures.csv'}, keys: [plate, well], field: signature, "
                   f"required: false}}]"])
    plan = plan_run(cfg, extra_plugins=(SignaturePlugin(),), base_dir=registry_yaml.parent)
    records = {r.id: r for r in plan.dataset.records(SkipLog())}
    assert len(records) == 6 and "signature" not in records["P2:B01"].fields


def test_join_errors_name_the_table_and_the_key(tmp_path, registry_yaml):
    dup = [{"plate": "P1", "well": "A01", "g0": 1}, {"plate": "P1", "well": "A01", "g0": 2}]
    with pytest.raises(ConfigError, match=r"more than one row for \{'plate': 'P1', 'well': 'A01'\}"):
        plan_run(_config(tmp_path, registry_yaml, _table(tmp_path, dup)), extra_plugins=(SignaturePlugin(),),
                 base_dir=registry_yaml.parent)
    path = tmp_path / "nowell.csv"
    pd.DataFrame([{"plate": "P1", "g0": 1}]).to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"data.join\[0\].keys: nowell.csv has no column\(s\) \['well'\]"):
        plan_run(_config(tmp_path, registry_yaml, path), extra_plugins=(SignaturePlugin(),),
                 base_dir=registry_yaml.parent)
    with pytest.raises(ConfigError, match="data.join\\[0\\].table: no such file"):
        plan_run(_config(tmp_path, registry_yaml, tmp_path / "missing.csv"), extra_plugins=(SignaturePlugin(),),
                 base_dir=registry_yaml.parent)
