"""``--kind dataset``: a source of experiment records (a CSV table shipped in the package)."""

from __future__ import annotations

from cgc_framework.scaffold.common import Component, Kind

DATASET = '''\
"""The '$name' dataset: one experiment record per row of a CSV table.

Each row is a compound (id, SMILES) applied at a dose (uM).

Replace the example with your own source. Contract (``cgc_framework.plugin.Dataset``):
``records(skips)`` streams ``Record`` objects (never the whole set in memory) whose ``fields`` hold
what the run's modalities and edge sources read: here ``smiles`` (read by the ``molecule`` modality,
e.g. ``rdkit_molecule``), ``dose_um`` and ``compound_id``. A row that cannot be used is added to
``skips`` with the field and the reason -- it is counted in ``summary.md`` and listed in
``skipped_records.csv``, never dropped silently. A file that cannot be used at all raises
``DataError`` naming the file and the fix. ``describe()`` is the provenance ``summary.md`` shows.

The embedded example ``data/$name.csv`` holds eight well-known drugs at one dose each, plus two
deliberately bad rows (an empty SMILES, an unreadable dose) that show how skips are counted.
"""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path
from typing import Any, Iterator

from pydantic import Field

from cgc_framework.plugin import DataError, Dataset, ExistingPath, ParamsModel, Record, SkipLog

NAME = "$name"
EMBEDDED = Path(__file__).parent / "data" / "$name.csv"


class ${cls}Params(ParamsModel):
    """``params:`` of ``data.dataset`` in registry.yaml (unknown keys are errors)."""

    path: ExistingPath | None = Field(
        None, description="CSV table, relative to registry.yaml (default: the embedded example)")
    id_column: str = Field("compound_id", description="column with a stable, human-readable record id")
    smiles_column: str = Field("smiles", description="column with the compound's SMILES")
    dose_column: str = Field("dose_um", description="column with the dose in uM")


class ${cls}Dataset(Dataset):
    """One record per CSV row; fields ``compound_id``, ``smiles``, ``dose_um`` (float, uM, > 0)."""

    def __init__(self, params: ${cls}Params | None = None):
        self.p = params or ${cls}Params()
        self.path = Path(self.p.path) if self.p.path is not None else EMBEDDED
        self.counts: dict[str, int] = {}

    def records(self, skips: SkipLog) -> Iterator[Record]:
        p = self.p
        counts = self.counts = {"rows": 0, "yielded": 0, "skipped": 0}
        with open(self.path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in (p.id_column, p.smiles_column, p.dose_column) if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{self.path}: no column(s) {missing} (columns: {reader.fieldnames}); "
                                f"name yours with the params id_column / smiles_column / dose_column")
            for line, row in enumerate(reader, start=2):  # line 1 is the header
                counts["rows"] += 1
                rid = (row[p.id_column] or "").strip() or f"{self.path.name}:{line}"
                smiles = (row[p.smiles_column] or "").strip()
                dose = _positive_number(row[p.dose_column])
                if not smiles:
                    skips.add(rid, NAME, p.smiles_column, row[p.smiles_column], "empty SMILES")
                elif dose is None:
                    skips.add(rid, NAME, p.dose_column, row[p.dose_column], "dose is not a positive number (uM)")
                else:
                    counts["yielded"] += 1
                    yield Record(rid, {"compound_id": rid, "smiles": smiles, "dose_um": dose})
                    continue
                counts["skipped"] += 1

    def describe(self) -> dict[str, Any]:
        sha = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return {"table": f"{self.path} (sha256 {sha[:12]}...)", "rows": self.counts}


def _positive_number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None
'''

CSV = """\
compound_id,smiles,dose_um
aspirin,CC(=O)Oc1ccccc1C(=O)O,10
caffeine,Cn1cnc2c1c(=O)n(C)c(=O)n2C,10
ibuprofen,CC(C)Cc1ccc(cc1)C(C)C(=O)O,3.33
paracetamol,CC(=O)Nc1ccc(O)cc1,3.33
metformin,CN(C)C(=N)NC(=N)N,1.11
nicotine,CN1CCC[C@H]1c1cccnc1,1.11
theophylline,Cn1c2nc[nH]c2c(=O)n(C)c1=O,0.37
salicylic_acid,O=C(O)c1ccccc1O,0.37
no_smiles,,1.0
bad_dose,CCO,ten
"""

TEST = '''\
"""The dataset is found through its entry point, streams records with counted skips, feeds the
built-in molecule builder, and rejects a table it cannot use."""

import pytest

from cgc_framework.plugin import DataError, SkipLog

DIST = "$dist"
NAME = "$name"


$registered_test


def test_embedded_table_yields_records_and_counts_bad_rows(registry):
    dataset = registry.create("dataset", NAME, registry.get("dataset", NAME).params())
    skips = SkipLog()
    records = list(dataset.records(skips))
    assert [r.id for r in records][:2] == ["aspirin", "caffeine"] and len(records) == 8
    assert all(r.fields["dose_um"] > 0 and r.fields["smiles"] for r in records)
    assert {(e.record_id, e.field) for e in skips.entries} == {("no_smiles", "smiles"), ("bad_dose", "dose_um")}
    assert dataset.describe()["rows"] == {"rows": 10, "yielded": 8, "skipped": 2}


def test_records_become_molecule_graphs_in_a_run(make_plan):
    plan = make_plan({"data.dataset": {"name": NAME},
                      "graph": {"modalities": {"molecule": {"builder": "rdkit_molecule"}}}})
    built = plan.build_graphs(plan.dataset.records(SkipLog()))
    assert len(built.graphs) == 8 and len(built.skips) == 0
    assert [g["compound"].num_nodes for g in built.graphs] == [1] * 8
    assert built.graphs[0]["atom"].num_nodes == 13  # aspirin's heavy atoms


def test_a_table_without_the_smiles_column_is_a_data_error(registry, tmp_path):
    table = tmp_path / "doses.csv"
    table.write_text("compound_id,dose_um\\naspirin,10\\n")
    params = registry.validate_params("dataset", NAME, {"path": str(table)}, key="data.dataset")
    with pytest.raises(DataError, match="smiles"):
        list(registry.create("dataset", NAME, params).records(SkipLog()))
'''

KIND = Kind(
    help="a source of experiment records (rows of a CSV table shipped in the package)",
    summary="the '$name' dataset",
    components=(Component("dataset", "$name", "dataset:${cls}Dataset", "dataset:${cls}Params",
                          "experiment records (compound, SMILES, dose) from a CSV table; bad rows are counted"),),
    files={"$package/dataset.py": DATASET, "$package/data/$name.csv": CSV, "tests/test_plugin.py": TEST},
    package_data=("data/*.csv",),
    about="The example streams one record per row of a CSV table (`compound_id`, `smiles`, `dose_um`; "
          "`$package/data/$name.csv` by default) and reports bad rows as counted skips "
          "(`$package/dataset.py`). Replace `records()` with your own source; give each record the fields "
          "your run's modalities read.",
    usage="""\
Use it in `registry.yaml`:

```yaml
data:
  dataset:
    name: $name
    params: {path: my_table.csv}         # default: the embedded example table
graph:
  modalities:
    molecule: {builder: rdkit_molecule}  # reads the records' `smiles` field
```""",
)
