"""The molecule-corpus dataset: streamed SMILES tables, counted skips, the fraction, the leakage guard."""

from __future__ import annotations

import gzip
import itertools

import pytest

from cgc_framework.api import plan_run
from cgc_framework.engine.featurize import build_graphs
from cgc_framework.engine.leakage import LEAKAGE_GUARD
from cgc_framework.plugin import DataError, Evaluator, HeldOutMolecules, SkipLog, hookimpl
from cgc_plugins.datasets.params import SmilesCorpusParams
from cgc_plugins.datasets.smiles_corpus import SmilesCorpus
from cgc_plugins.evaluators.common import inchikey14

ROWS = [("CCO", "m1"), ("c1ccccc1O", "m2"), ("", "m3"), ("C1CC", "m4"), ("CC(=O)Oc1ccccc1C(=O)O", "m5")]


def _csv(path, rows=ROWS, header="id,SMILES,other"):
    text = header + "\n" + "".join(f"{i},{s},x\n" for s, i in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def _records(path, **kw):
    skips = SkipLog()
    ds = SmilesCorpus(SmilesCorpusParams(paths=[path], **kw))
    return list(ds.records(skips)), skips, ds


@pytest.mark.parametrize("name", ["corpus.csv", "corpus.csv.gz"])
def test_csv_and_gzip_stream_with_the_smiles_column_found_and_empty_cells_counted(tmp_path, name):
    recs, skips, ds = _records(_csv(tmp_path / name), id_column="id")
    assert [r.fields["smiles"] for r in recs] == ["CCO", "c1ccccc1O", "C1CC", "CC(=O)Oc1ccccc1C(=O)O"]
    assert [r.id for r in recs] == ["m1", "m2", "m4", "m5"]
    [skip] = skips.entries
    assert skip.record_id == "m3" and skip.reason == "empty SMILES cell"
    assert "rows: 5, kept: 4" in ds.describe()["rows"]


def test_smi_and_tsv_files_and_row_ids(tmp_path):
    smi = tmp_path / "a.smi"
    smi.write_text("# a comment\nCCO ethanol\nc1ccccc1O\tphenol\n\n")
    recs, _, _ = _records(smi)
    assert [(r.id, r.fields["smiles"]) for r in recs] == [("ethanol", "CCO"), ("phenol", "c1ccccc1O")]
    tsv = tmp_path / "b.tsv"
    tsv.write_text("name\tsmiles\nx\tCCN\n")
    recs, _, _ = _records(tsv)
    assert [(r.id, r.fields["smiles"]) for r in recs] == [("b.tsv:1", "CCN")]


def test_records_stream_before_the_whole_file_is_read(tmp_path):
    path = tmp_path / "big.csv.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b"smiles\n" + b"CCO\n" * 100_000 + b"\xff\xfe broken\n")
    ds = SmilesCorpus(SmilesCorpusParams(paths=[path]))
    first = list(itertools.islice(ds.records(SkipLog()), 3))     # the broken tail is never reached
    assert [r.fields["smiles"] for r in first] == ["CCO"] * 3
    with pytest.raises(DataError, match=r"big.csv.gz: cannot be read as a CSV table \(UnicodeDecodeError"):
        list(ds.records(SkipLog()))


def test_the_fraction_is_a_stable_hash_of_the_smiles(tmp_path):
    rows = [(f"C{'C' * (i % 40)}O{'N' * (i // 40)}", f"m{i}") for i in range(400)]
    path = _csv(tmp_path / "many.csv", rows)
    a, _, _ = _records(path, fraction=0.25, seed=3)
    b, _, _ = _records(path, fraction=0.25, seed=3)
    c, _, _ = _records(path, fraction=0.25, seed=4)
    assert [r.id for r in a] == [r.id for r in b] and [r.id for r in a] != [r.id for r in c]
    assert 60 < len(a) < 140


def test_bad_files_are_named(tmp_path):
    fake = tmp_path / "text.csv.gz"
    fake.write_text("smiles\nCCO\n")
    with pytest.raises(DataError, match="text.csv.gz: the name ends in .gz but the file is not gzip-compressed"):
        _records(fake)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        _records(empty)
    with pytest.raises(DataError, match=r"no column 'smi' \(smiles_column\); columns: id, SMILES, other"):
        _records(_csv(tmp_path / "c.csv"), smiles_column="smi")


class HoldsOutPhenol:
    @hookimpl
    def register_evaluators(self, register):
        class Holds(Evaluator):
            def held_out_molecules(self, plan):
                return HeldOutMolecules({inchikey14("c1ccccc1O"): "test split of a fixture"}, inchikey14)

            def evaluate(self, context):  # pragma: no cover - only its held-out list is used
                raise AssertionError

        register("holds_phenol", lambda params: Holds())


def test_invalid_smiles_are_counted_by_the_builder_and_held_out_molecules_left_out(tmp_path, registry_yaml):
    path = _csv(tmp_path / "corpus.csv")
    plan = plan_run(registry_yaml, extra_plugins=(HoldsOutPhenol(),), overrides=[
        f"data.dataset={{name: smiles_corpus, params: {{paths: [{path}], id_column: id}}}}",
        "graph.modalities={molecule: {builder: rdkit_molecule}}", "graph.edge_sources={}",
        "evaluations={h: {name: holds_phenol}}"])
    built = build_graphs(plan, progress=False)
    assert built.record_ids == ["m1", "m5"]
    reasons = {e.record_id: (e.component, e.reason) for e in built.skips.entries}
    assert reasons["m3"] == ("smiles_corpus", "empty SMILES cell")
    assert reasons["m4"][0] == "rdkit_molecule" and "invalid SMILES" in reasons["m4"][1]
    assert reasons["m2"][0] == LEAKAGE_GUARD and "test split of a fixture" in reasons["m2"][1]


# -- SDF ----------------------------------------------------------------------------------------

def _molblock(title: str, atoms: list[str], bonds: list[tuple[int, int, int]], props: dict[str, str]) -> str:
    """One V2000 SDF record (coordinates 0) with SD properties."""
    lines = [title, "  test", "", f"{len(atoms):>3}{len(bonds):>3}  0  0  0  0  0  0  0  0999 V2000"]
    lines += [f"    0.0000    0.0000    0.0000 {a:<3} 0  0  0  0  0  0  0  0  0  0  0  0" for a in atoms]
    lines += [f"{a:>3}{b:>3}{o:>3}  0" for a, b, o in bonds]
    lines.append("M  END")
    for k, v in props.items():
        lines += [f">  <{k}>", v, ""]
    return "\n".join(lines) + "\n$$$$\n"


SDF_RECORDS = [
    _molblock("ethanol", ["C", "C", "O"], [(1, 2, 1), (2, 3, 1)], {"chembl_id": "CHEMBL545", "MW": "46.07"}),
    # carbon with five bonds: RDKit reads the block but sanitization fails (valence)
    _molblock("pentavalent", ["C", "C", "C", "C", "C", "C"], [(1, 2, 1), (1, 3, 1), (1, 4, 1), (1, 5, 1), (1, 6, 1)],
              {"chembl_id": "CHEMBL0"}),
    _molblock("phenol", ["C", "C", "C", "C", "C", "C", "O"],
              [(1, 2, 2), (2, 3, 1), (3, 4, 2), (4, 5, 1), (5, 6, 2), (6, 1, 1), (1, 7, 1)], {"chembl_id": "CHEMBL14060"}),
    # a counts line that is not a counts line
    "garbage\n  x\n\nnot a counts line\nM  END\n$$$$\n",
    _molblock("water", ["O"], [], {"MW": "18.02"}),
]


@pytest.mark.parametrize("name", ["mols.sdf", "mols.sdf.gz"])
def test_sdf_streams_molecules_with_ids_and_properties_and_counts_broken_records(tmp_path, name):
    path = tmp_path / name
    text = "".join(SDF_RECORDS)
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    recs, skips, ds = _records(path, id_column="chembl_id", property_columns=["MW"])
    assert [(r.id, r.fields["smiles"], r.fields["MW"]) for r in recs] == [
        ("CHEMBL545", "CCO", "46.07"), ("CHEMBL14060", "Oc1ccccc1", None), (f"{name}:5", "O", "18.02")]
    assert recs[0].fields["compound_id"] == "CHEMBL545"
    # the two broken records are listed with their record number and RDKit's reason; reading went on
    assert [(e.record_id, e.component, e.value) for e in skips.entries] == [
        (f"{name}:2", "smiles_corpus", "SDF record 2"), (f"{name}:4", "smiles_corpus", "SDF record 4")]
    assert "valence" in skips.entries[0].reason.lower() and skips.entries[0].reason.startswith(f"SDF record 2 of {name}")
    assert ds.counts == {"rows": 3, "kept": 3, "not in fraction": 0, "empty": 0, "unreadable": 2, "no id": 1,
                         "missing properties": 1}
    assert "unreadable: 2" in ds.describe()["rows"]
    titles, _, _ = _records(path, id_column="_Name")
    assert [r.id for r in titles] == ["ethanol", "phenol", "water"]


def test_sdf_records_stream_before_the_whole_file_is_read(tmp_path):
    path = tmp_path / "big.sdf.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(SDF_RECORDS[0].encode() * 20_000)
    with open(path, "ab") as fh:
        fh.write(b"\x00 not gzip")                               # a damaged tail, never reached
    ds = SmilesCorpus(SmilesCorpusParams(paths=[path]))
    first = list(itertools.islice(ds.records(SkipLog()), 3))
    assert [(r.id, r.fields["smiles"]) for r in first] == [("big.sdf.gz:1", "CCO"), ("big.sdf.gz:2", "CCO"),
                                                           ("big.sdf.gz:3", "CCO")]


def test_sdf_bad_files_are_named(tmp_path):
    fake = tmp_path / "m.sdf.gz"
    fake.write_text(SDF_RECORDS[0])
    with pytest.raises(DataError, match="m.sdf.gz: the name ends in .gz but the file is not gzip-compressed"):
        _records(fake)
    csv_path = _csv(tmp_path / "c.csv")
    with pytest.raises(DataError, match=r"no column\(s\) 'logP' \(property_columns\); columns: id, SMILES, other"):
        _records(csv_path, property_columns=["logP"])
    recs, _, _ = _records(csv_path, property_columns=["other"])
    assert recs[0].fields["other"] == "x"
