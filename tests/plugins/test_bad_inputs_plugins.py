"""A corpus of bad and unusual inputs to the built-in plugins: structure files (PDB / mmCIF),
profile tables, compound and target tables, structure-pair tables, ``cgc predict`` inputs and SMILES
given to the molecule builder.

Every case has one of two outcomes (as in ``tests/core/test_bad_inputs.py``):

- a clear error (``DataError`` / ``ConfigError`` / ``RecordError``, exit code 2 from a command)
  naming the file and, where there is one, the column, line, well or key, with a hint at the fix;
  never a ``PluginError`` (which would blame the built-in plugin for the user's file);
- a counted skip or a counted warning: the bad record is listed with the reason (or the file is
  used and named with the warning) while the good ones proceed.

Inputs are tiny files under ``tmp_path`` (or cuts of the embedded structures); nothing pretrains.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from Bio.PDB import MMCIFIO, PDBParser

from cgc_framework.api import plan_run
from cgc_framework.engine.config import validate_config
from cgc_framework.engine.featurize import build_graphs
from cgc_framework.plugin.errors import ConfigError, DataError, PluginError
from cgc_framework.plugin.records import Record, RecordError, SkipLog
from cgc_plugins.datasets.experiment import CellPaintingExperiments, ExperimentParams
from cgc_plugins.datasets.lincs import LincsPlateDataset, LincsPlateParams
from cgc_plugins.datasets.structures import EMBEDDED_STRUCTURES, StructurePairsDataset, StructurePairsParams
from cgc_plugins.edges.drug_target import DrugTargetEdges, DrugTargetParams
from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder
from cgc_plugins.proteins.builder import BiopythonProteinBuilder, BiopythonProteinParams
from cgc_plugins.whatif.command import main as predict_main

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _geometry() -> BiopythonProteinBuilder:
    return BiopythonProteinBuilder(BiopythonProteinParams(secondary_structure="geometry"))


# -- structure files ----------------------------------------------------------------------------


def _lines(name: str) -> list[str]:
    return (EMBEDDED_STRUCTURES / name).read_text().splitlines(keepends=True)


def _cif(tmp: Path) -> Path:
    structure = PDBParser(QUIET=True).get_structure("x", str(EMBEDDED_STRUCTURES / "1e3g.pdb"))
    io = MMCIFIO()
    io.set_structure(structure)
    io.save(str(tmp / "1e3g.cif"))
    return tmp / "1e3g.cif"


def _write(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _structure_case(tmp: Path, case: str) -> tuple[Path, str]:
    """``(file, pattern of the RecordError)`` of one rejected structure."""
    src = _lines("1iep.pdb")
    atoms = [i for i, line in enumerate(src) if line.startswith("ATOM")]
    ters = [i for i, line in enumerate(src) if line.startswith("TER")]
    if case == "cut_inside_a_chain":             # at a line boundary: Biopython parses it happily
        return (_write(tmp, "cut.pdb", "".join(src[: atoms[3000]])),
                rf"cut\.pdb: truncated: the file ends inside a chain at line {atoms[3000]} \(ATOM \d+ .*\), with no "
                r"TER or END record after it\. A complete PDB file ends with END")
    if case == "cut_after_a_complete_chain":     # chain A whole, chain B (in SEQRES) gone
        return (_write(tmp, "cut_ter.pdb", "".join(src[: ters[0] + 1])),
                r"cut_ter\.pdb: truncated: no END record, and SEQRES lists chain\(s\) B, which have no coordinates")
    if case == "cut_inside_a_line":
        return (_write(tmp, "mid.pdb", "".join(src[: atoms[40]]) + src[atoms[40]][:35]),
                r"mid\.pdb: cannot parse as PDB: .*line")
    if case == "mmcif_cut_inside_atom_site":
        cif = _cif(tmp).read_text().splitlines(keepends=True)
        rows = [i for i, line in enumerate(cif) if line.startswith("ATOM")]
        return (_write(tmp, "cut.cif", "".join(cif[: rows[500]])),
                r"cut\.cif: truncated: the file ends inside its _atom_site loop at line \d+ \(ATOM 500 .*\), with no "
                r"'#' closing it")
    if case == "empty":
        return _write(tmp, "empty.pdb", ""), r"empty\.pdb: empty file \(0 bytes\)"
    if case == "binary":
        return _write(tmp, "image.pdb", b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256))), r"image\.pdb: a binary file"
    if case == "mmcif_named_pdb":
        return (_write(tmp, "entry.pdb", _cif(tmp).read_text()),
                r"entry\.pdb: cannot parse as PDB: .*\(is it an mmCIF file named \.pdb\? name it \.cif\)")
    if case == "pdb_named_cif":
        return (_write(tmp, "entry.cif", "".join(src)),
                r"entry\.cif: cannot parse as mmCIF: .*\(is it a PDB file named \.cif\? name it \.pdb\)")
    if case == "text_not_a_structure":
        return _write(tmp, "notes.pdb", "this is a note, not a structure\n"), r"notes\.pdb: no ATOM/HETATM records"
    if case == "no_atom_records":
        het = "".join(line for line in src if line.startswith(("HEADER", "HETATM", "END")))
        return _write(tmp, "ligands.pdb", het), r"ligands\.pdb: no protein chain"
    if case == "not_gzip":
        return _write(tmp, "entry.pdb.gz", "".join(src)), r"entry\.pdb\.gz: cannot (read|parse)"
    if case == "missing":
        return tmp / "absent.pdb", r"absent\.pdb: structure file not found"
    if case == "nan_coordinates":
        bad = list(src)
        bad[atoms[5]] = bad[atoms[5]][:30] + "     nan" + bad[atoms[5]][38:]
        return _write(tmp, "nan.pdb", "".join(bad)), r"nan\.pdb: non-finite \(NaN/inf\) coordinates in residue"
    raise KeyError(case)


STRUCTURE_ERRORS = ["cut_inside_a_chain", "cut_after_a_complete_chain", "cut_inside_a_line",
                    "mmcif_cut_inside_atom_site", "empty", "binary", "mmcif_named_pdb", "pdb_named_cif",
                    "text_not_a_structure", "no_atom_records", "not_gzip", "missing", "nan_coordinates"]


@pytest.mark.parametrize("case", STRUCTURE_ERRORS)
def test_bad_structure_files_are_rejected_naming_the_file(tmp_path, case):
    path, pattern = _structure_case(tmp_path, case)
    with pytest.raises(RecordError, match=pattern):
        _geometry().build(path)


@pytest.mark.parametrize("case", ["bare_atoms_without_ter_or_end", "atom_serial_gap", "no_end_after_last_ter"])
def test_structures_that_may_be_incomplete_are_built_counted_and_named(tmp_path, case):
    src = _lines("3w32.pdb")
    atoms = [i for i, line in enumerate(src) if line.startswith("ATOM")]
    if case == "bare_atoms_without_ter_or_end":    # a tool's output: no header, no TER, no END
        text, warning = "".join(src[i] for i in atoms[:1500]), "no TER or END record after the last coordinates"
    elif case == "atom_serial_gap":
        text, warning = "".join(src[: atoms[100]] + src[atoms[110]:]), "atom serial numbers jump from 100"
    else:                                          # one chain, closed by TER, no END: may be cut there
        ter = next(i for i, line in enumerate(src) if line.startswith("TER"))
        text, warning = "".join(line for line in src[: ter + 1] if not line.startswith("SEQRES")), "no END record"
    path = _write(tmp_path, f"{case}.pdb", text)
    builder = _geometry()
    graph = builder.build(path)
    assert graph["residue"].num_nodes > 100
    info = builder.describe()
    assert info["structures that may be incomplete (used)"] == 1
    assert warning in info["incomplete? (file: warning; first 20)"][str(path)]
    driver = _geometry()                  # a featurization worker's builder hands its state back
    driver.merge_state(builder.state())
    driver.merge_state(builder.state())   # twice (two shards of one worker): counted once
    assert driver.describe() == info


def test_complete_structures_raise_no_warning_and_a_cache_hit_is_still_counted(tmp_path):
    builder = _geometry()
    for name in ("1e3g.pdb", "1iep.pdb", "3w32.pdb"):
        builder.build(EMBEDDED_STRUCTURES / name)
    builder.build(_cif(tmp_path))
    assert "structures that may be incomplete (used)" not in builder.describe()
    bare = _write(tmp_path, "bare.pdb", "".join(line for line in _lines("3w32.pdb") if line.startswith("ATOM")))
    fresh = _geometry()
    fresh.cache_inputs(bare)                      # what the featurization cache calls instead of build
    assert str(bare) in fresh.describe()["incomplete? (file: warning; first 20)"]


# -- profile tables (cellpainting_experiments) --------------------------------------------------

FEATURES = ["Cells_AreaShape_Area", "Nuclei_Intensity_MeanIntensity_DNA", "Cytoplasm_Texture_Contrast_RNA_3_0",
            "Cells_Intensity_MeanIntensity_Mito"]


def _profile() -> pd.DataFrame:
    """A LINCS-style plate: 4 DMSO wells and 3 treated wells (P1:A05..A07), 4 features."""
    rows = [("DMSO", 0.0)] * 4 + [("BRD-A", 1.0), ("BRD-B", 10.0), ("BRD-A", 0.1)]
    df = pd.DataFrame({"Metadata_Plate": "P1", "Metadata_Well": [f"A{i:02d}" for i in range(1, 8)],
                       "Metadata_broad_sample": [r[0] for r in rows],
                       "Metadata_mmoles_per_liter": [r[1] for r in rows],
                       "Metadata_InChIKey14": "", "Metadata_moa": "x", "Metadata_target": "", "Metadata_cell_id": "A549"})
    rng = np.random.default_rng(0)
    for f in FEATURES:
        df[f] = rng.normal(size=len(df)).round(4)
    return df


def _compounds(tmp: Path) -> Path:
    path = tmp / "compounds.csv"
    pd.DataFrame({"broad_sample": ["BRD-A", "BRD-B"], "smiles": ["CCO", "c1ccccc1O"]}).to_csv(path, index=False)
    return path


def _experiments(tmp: Path, profile: pd.DataFrame | bytes | str, name: str = "plate.csv", **params):
    path = tmp / name
    if isinstance(profile, pd.DataFrame):
        profile.to_csv(path, index=False)
    else:
        path.write_bytes(profile if isinstance(profile, bytes) else profile.encode())
    params.setdefault("compounds", _compounds(tmp))
    ds = CellPaintingExperiments(ExperimentParams(profiles=[path], **params))
    skips = SkipLog()
    return ds, list(ds.records(skips)), skips, path


def _with(df: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    df = df.astype({column: object})
    df.loc[row, column] = value
    return df


def test_a_good_profile_table_gives_every_treated_well(tmp_path):
    _, records, skips, _ = _experiments(tmp_path, _profile())
    assert [r.id for r in records] == ["P1:A05", "P1:A06", "P1:A07"] and not skips.entries


def test_non_numeric_cell_skips_its_well_naming_file_line_column_and_value(tmp_path):
    ds, records, skips, path = _experiments(tmp_path, _with(_profile(), 5, "Cells_AreaShape_Area", "abc"))
    assert [r.id for r in records] == ["P1:A05", "P1:A07"]
    [e] = skips.entries
    assert (e.record_id, e.field, e.value) == ("P1:A06", "Cells_AreaShape_Area", "abc")
    assert e.reason.startswith("plate.csv line 7: column 'Cells_AreaShape_Area' holds 'abc', not a number")
    assert "Fix the cell" in e.reason and ds.describe()["wells"]["wells_with_non_numeric_values"] == 1


def test_non_numeric_cell_in_a_control_well_is_named_too(tmp_path):
    _, records, skips, _ = _experiments(tmp_path, _with(_profile(), 1, "Cells_AreaShape_Area", "n/a?"))
    assert len(records) == 3 and skips.entries[0].record_id == "P1:A02"
    assert "a control well: not part of its plate control state" in skips.entries[0].reason


def test_every_column_is_a_feature_metadata_or_listed_with_a_reason(tmp_path):
    df = _profile()
    df["Mito_Count"] = 3.0                          # numeric, but no compartment: was dropped silently
    df["Comment"] = "ok"
    df["Metadata_Extra"] = "x"
    df["Cells_AreaShape_Perimeter"] = "big"        # named like a feature, holds text
    ds, records, _, _ = _experiments(tmp_path, df)
    assert len(records) == 3
    unused = ds.describe()["columns not used (neither a feature nor in the column map)"]["plate.csv"]
    listed = {c.split(" ")[0]: why for why, cols in unused.items() for c in cols}
    assert listed["Mito_Count"].startswith("numeric, but not named like a CellProfiler measurement")
    assert listed["Comment"].startswith("text") and listed["Metadata_Extra"].startswith("metadata")
    assert listed["Cells_AreaShape_Perimeter"].startswith("text values in a column named like a feature")
    quality = ds.describe()["data quality (NaN/inf, dropped features)"]
    assert quality["features_read"] == len(FEATURES)
    accounted = set(listed) | set(FEATURES) | {c for c in df.columns if c.startswith("Metadata_")}
    assert accounted == set(df.columns)


def test_all_nan_feature_is_dropped_and_reported(tmp_path):
    df = _profile()
    df["Cells_AreaShape_Area"] = np.nan
    ds, records, _, _ = _experiments(tmp_path, df)
    assert len(records) == 3
    dropped = ds.describe()["data quality (NaN/inf, dropped features)"]["features_dropped (NaN fraction > 0.05)"]
    assert dropped == {"plate.csv:Cells_AreaShape_Area": "7/7 wells NaN/inf"}


PROFILE_ERRORS = {
    # name: (profile content, params, error type, expected fragments)
    "missing_metadata_column": (lambda: _profile().drop(columns=["Metadata_moa"]), {}, DataError,
                                ["the profile table has no column(s) 'Metadata_moa'", "data.dataset.params.columns"]),
    "no_preset_matches": (lambda: _profile().drop(columns=["Metadata_Well"]), {}, DataError,
                          ["no column preset matches its header", "lincs_cpg0004, needs the column(s) ['Metadata_Well']"]),
    "mapped_column_absent": (lambda: _profile(), {"columns": {"plate": "Plate", "well": "Metadata_Well",
                                                             "compound_id": "Metadata_broad_sample",
                                                             "control_column": "Metadata_broad_sample"}},
                             DataError, ["no column(s) 'Plate'", "did you mean 'Metadata_Plate'"]),
    "text_named_csv_gz": (lambda: _profile().to_csv(index=False), {"name": "plate.csv.gz"}, DataError,
                          ["plate.csv.gz: named .gz but not gzip-compressed", "rename it without .gz"]),
    "zero_byte_csv": (lambda: b"", {}, DataError, ["plate.csv: empty file (0 bytes)"]),
    "blank_lines_only": (lambda: "\n\n\n", {}, DataError, ["plate.csv: no header row"]),
    "binary_file": (lambda: b"PK\x03\x04\x00\x00binary", {}, DataError, ["plate.csv: a binary file"]),
    "ragged_rows": (lambda: "Metadata_Plate,Metadata_Well\nP1,A01\nP1,A02,extra,fields\n", {}, DataError,
                    ["plate.csv: malformed profile table", "Expected 2 fields"]),
    "wrong_compounds_key": (lambda: _profile(), {"compounds_key": "broad_id"}, ConfigError,
                            ["data.dataset.params.compounds_key: 'broad_id' is not a column of",
                             "Did you mean 'broad_sample'?"]),
}


@pytest.mark.parametrize("case", PROFILE_ERRORS)
def test_unusable_profile_tables_give_a_clear_error_naming_the_file(tmp_path, case):
    make, params, error, expected = PROFILE_ERRORS[case]
    params = dict(params)
    name = params.pop("name", "plate.csv")
    with pytest.raises(error) as info:
        _experiments(tmp_path, make(), name=name, **params)
    assert not isinstance(info.value, PluginError)
    for fragment in expected:
        assert fragment in str(info.value), str(info.value)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("case", ["text_named_csv_gz", "zero_byte", "missing_smiles_column"])
def test_unusable_compound_tables(tmp_path, case):
    compounds = tmp_path / ("c.csv.gz" if case == "text_named_csv_gz" else "c.csv")
    compounds.write_text({"text_named_csv_gz": "broad_sample,smiles\nBRD-A,CCO\n", "zero_byte": "",
                          "missing_smiles_column": "broad_sample,name\nBRD-A,x\n"}[case])
    if case == "missing_smiles_column":          # no SMILES from the table: counted, not an error
        ds, records, _, _ = _experiments(tmp_path, _profile(), compounds=compounds)
        assert all(r.fields["smiles"] is None for r in records)
        assert ds.describe()["compounds without SMILES"]["treated_wells_without_smiles"] == 3
        return
    with pytest.raises(DataError, match=f"{compounds.name}: (named .gz but not gzip|empty file)"):
        _experiments(tmp_path, _profile(), compounds=compounds)


def test_compound_ids_listed_twice_in_the_compound_table_are_named(tmp_path):
    compounds = tmp_path / "c.csv"
    compounds.write_text("broad_sample,smiles\nBRD-A,CCO\nBRD-B,c1ccccc1O\nBRD-A,CCCC\n")
    ds, records, _, _ = _experiments(tmp_path, _profile(), compounds=compounds)
    assert records[0].fields["smiles"] == "CCO"                  # the first row is used ...
    assert ds.describe()["compound ids listed more than once in the compound table (first row used)"] == "1: BRD-A"


def _experiment_plan(tmp: Path, profile: pd.DataFrame):
    path = tmp / "plate.csv"
    profile.to_csv(path, index=False)
    cfg = validate_config({
        "run": {"name": "t", "output_dir": str(tmp / "runs")},
        "data": {"dataset": {"name": "cellpainting_experiments",
                             "params": {"profiles": [str(path)], "compounds": str(_compounds(tmp))}}},
        "graph": {"modalities": {"molecule": {"builder": "rdkit_molecule"}}},
        "model": {"encoder": {"name": "hgt", "params": {"hidden_dim": 8, "num_layers": 1, "heads": 1}}},
        "tasks": {"mask": {"name": "masked_recovery"}},
        "stages": [{"name": "mask", "epochs": 1, "weights": {"mask": 1.0}}],
        "trainer": {"num_workers": 0}})
    return plan_run(cfg)


@pytest.mark.parametrize("case, change, reason", [
    ("duplicate_well", ("Metadata_Well", 5, "A05"), "duplicate record id 'P1:A05': record #2 of the dataset repeats "
                                                    "record #1"),
    ("negative_dose", ("Metadata_mmoles_per_liter", 5, -10.0), "dose_um is -10"),
    ("nan_dose", ("Metadata_mmoles_per_liter", 5, np.nan), "dose_um is NaN (an empty or non-numeric dose cell?)"),
    ("inf_dose", ("Metadata_mmoles_per_liter", 5, np.inf), "dose_um is inf"),
    ("zero_dose", ("Metadata_mmoles_per_liter", 5, 0.0), "dose_um is 0"),
    ("text_dose", ("Metadata_mmoles_per_liter", 5, "ten"), "dose_um is 'ten' (text), not a number"),
])
def test_bad_wells_of_a_profile_table_are_skipped_by_the_record_checks(tmp_path, case, change, reason):
    column, row, value = change
    built = build_graphs(_experiment_plan(tmp_path, _with(_profile(), row, column, value)), progress=False)
    assert built.records_read == 3 and len(built.graphs) == 2
    [e] = built.skips.entries
    assert e.record_id in ("P1:A05", "P1:A06") and e.component == "record_check" and reason in e.reason


def test_cgc_run_on_an_unusable_profile_table_names_the_file_not_a_plugin_bug(tmp_path):
    bad = tmp_path / "plate.csv.gz"
    bad.write_text(_profile().to_csv(index=False))
    cfg = yaml.safe_load((REPO / "registry.yaml").read_text())
    cfg["data"]["dataset"]["params"] = {"profiles": [str(bad)], "compounds": str(_compounds(tmp_path))}
    cfg["evaluations"] = {}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run([str(BIN / "cgc-run"), str(path), "--dry-run", "--quiet"], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"error: {bad}: named .gz but not gzip-compressed") and "bug" not in res.stderr


# -- the LINCS plate dataset --------------------------------------------------------------------


def test_lincs_plate_without_a_well_column_and_with_a_text_dose(tmp_path):
    df = _profile()
    df.drop(columns=["Metadata_Well"]).to_csv(tmp_path / "nowell.csv", index=False)
    with pytest.raises(DataError, match=r"nowell\.csv: the profile table has no column\(s\) 'Metadata_Well'"):
        list(LincsPlateDataset(LincsPlateParams(profiles=tmp_path / "nowell.csv",
                                                compounds=_compounds(tmp_path))).records(SkipLog()))
    _with(df, 5, "Metadata_mmoles_per_liter", "ten").to_csv(tmp_path / "plate.csv", index=False)
    records = list(LincsPlateDataset(LincsPlateParams(profiles=tmp_path / "plate.csv",
                                                      compounds=_compounds(tmp_path))).records(SkipLog()))
    assert [r.fields["dose_um"] for r in records] == [1.0, "ten", 0.1]    # the record checks reject 'ten'


# -- target tables: drug_target, structure_pairs ------------------------------------------------


@pytest.mark.parametrize("param, content, expected", [
    ("repurposing_edges", "pert_iname\tbroad_cpd_id\nx\tBRD-K1\n",
     "the Repurposing Hub compound-target table has no column(s) 'inchikey', 'target_gene_symbol'"),
    ("jump_target", "", "empty file (0 bytes)"),
    ("proteins_index", "file,uniprot\n1iep.pdb,P00519\n", "the proteins index has no column(s) 'gene_symbol'"),
])
def test_unusable_drug_target_tables(tmp_path, param, content, expected):
    path = tmp_path / ("t.csv" if param == "proteins_index" else "t.tsv")
    path.write_text(content)
    with pytest.raises(DataError) as info:
        DrugTargetEdges(DrugTargetParams(**{param: path}))
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)


@pytest.mark.parametrize("param, content, expected", [
    ("index", "file,gene\n1iep.pdb,ABL1\n", "the structure index has no column(s) 'uniprot', 'gene_symbol'"),
    ("compound_targets", "", "empty file (0 bytes)"),
    ("compound_targets", "broad_cpd_id,smiles,target_gene_symbol\n",
     "its header is one column 'broad_cpd_id,smiles,target_gene_symbol': the file uses another separator than the "
     "one it is read with (tab)"),
])
def test_unusable_structure_pair_tables(tmp_path, param, content, expected):
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        list(StructurePairsDataset(StructurePairsParams(**{param: path})).records(SkipLog()))
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)


def test_structures_without_compounds_and_unknown_genes_are_named(tmp_path):
    index = tmp_path / "index.csv"
    index.write_text("file,uniprot,gene_symbol\n1iep.pdb,P00519,ABL1\n1e3g.pdb,P10275,NOTAGENE\n")
    ds = StructurePairsDataset(StructurePairsParams(index=index, structures_dir=EMBEDDED_STRUCTURES,
                                                    genes=["ABL1", "NOTAGENE", "XYZ1"]))
    records = list(ds.records(SkipLog()))
    assert {r.fields["gene_symbol"] for r in records} == {"ABL1"}
    info = ds.describe()
    assert "is no target_gene_symbol" in info["structures_without_compounds (file: why)"]["1e3g.pdb"]
    assert info["genes_not_in_the_index"] == ["XYZ1"]


def test_a_pair_the_drug_target_tables_do_not_know_is_skipped_with_the_reason(tmp_path):
    src = DrugTargetEdges()
    import torch

    from cgc_framework.plugin.graph import graph_from_dict

    graph = graph_from_dict({"residue": {"x": torch.zeros(2, 8)}, "protein": {"x": torch.zeros(1, 0)},
                             "residue|in|protein": {"edge_index": torch.tensor([[0, 1], [0, 0]])}})
    paired = Record("BRD-K00000000@3w32.pdb", {"compound_id": "BRD-K00000000-001-01-1", "target": "EGFR",
                                               "structure_path": "/x/3w32.pdb", "gene_symbol": "EGFR"})
    with pytest.raises(RecordError, match=r"structure 3w32\.pdb \(gene EGFR\) is paired with this compound by the "
                                          r"dataset .* is not in drug_target's tables .*embedded subset"):
        src.add_edges(paired, graph)
    unpaired = Record("r2", {"compound_id": "BRD-K00000000-001-01-1", "structure_path": "/x/3w32.pdb"})
    src.add_edges(unpaired, graph)                       # not claimed as a pair: kept, counted and named
    info = src.describe()
    assert info["structures_not_a_target"] == 1
    assert "is not in drug_target's tables" in info["unlinked structures (record: why; first 20)"]["r2"]


def _docs_structure_pairs_yaml() -> dict:
    text = (REPO / "docs" / "featurization.md").read_text()
    block = text.split("## Structures in a pretraining run", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)


def test_the_docs_structure_pairs_example_links_its_pairs(shared_data, tmp_path):
    doc = _docs_structure_pairs_yaml()
    (tmp_path / "cfg").mkdir()
    text = yaml.safe_dump({**doc, "run": {"name": "sp", "output_dir": str(tmp_path / "runs")},
                           "model": {"encoder": {"name": "hgt", "params": {"hidden_dim": 8, "num_layers": 1,
                                                                          "heads": 1}}},
                           "tasks": {"mask": {"name": "masked_recovery"}},
                           "stages": [{"name": "mask", "epochs": 1, "weights": {"mask": 1.0}}],
                           "trainer": {"num_workers": 0}})
    cfg = tmp_path / "cfg" / "docs.yaml"          # ../shared/data from the YAML's folder = shared_data
    cfg.write_text(text.replace("../shared/data", str(shared_data)))
    plan = plan_run(cfg, overrides=["data.max_records=3",
                                    "graph.modalities.protein.params.secondary_structure=geometry"])
    built = build_graphs(plan, progress=False)
    assert len(built.graphs) == 3 and not built.skips.entries
    for g in built.graphs:                       # compound -> protein node 0 (the structure) <- residues
        assert 0 in g["compound", "targets", "protein"].edge_index[1].tolist()
    assert plan.edge_sources["drug_target"][1].describe()["structures_linked"] == 3
    # the same run with drug_target on its embedded tables cannot link them, and says why
    plan = plan_run(cfg, overrides=["data.max_records=3", "graph.edge_sources.drug_target.params={}",
                                    "graph.modalities.protein.params.secondary_structure=geometry"])
    with pytest.raises(DataError, match=r"no usable records: .*by drug_target 3.*is paired with this compound by "
                                        r"the dataset.*not in drug_target's tables"):
        build_graphs(plan, progress=False)


# -- cgc predict inputs -------------------------------------------------------------------------


def test_predict_counts_and_names_empty_rows_of_the_smiles_file(tmp_path, capsys):
    smiles = tmp_path / "q.txt"
    smiles.write_text("CCO\n\n# comment\n  \nc1ccccc1O\n")
    rc = predict_main([str(tmp_path / "missing.pt"), "--smiles-file", str(smiles), "--doses", "1", "--quiet"])
    err = capsys.readouterr().err
    assert f"warning: --smiles-file {smiles}: 2 empty rows (lines 2, 4) skipped" in err
    assert rc == 2 and "no such checkpoint file" in err and "Traceback" not in err


@pytest.mark.parametrize("case", ["csv_without_smiles_column", "only_empty_rows", "damaged_checkpoint",
                                  "negative_dose", "text_dose"])
def test_predict_rejects_unusable_inputs_with_exit_2(tmp_path, capsys, case):
    ckpt = tmp_path / "final.pt"
    ckpt.write_bytes(b"PK\x03\x04 not really a zip")
    argv = [str(ckpt), "--doses", "1", "--quiet"]
    if case == "csv_without_smiles_column":
        (tmp_path / "q.csv").write_text("name,smi\na,CCO\n")
        argv += ["--smiles-file", str(tmp_path / "q.csv")]
        expected = "no 'smiles' column (columns: name, smi)"
    elif case == "only_empty_rows":
        (tmp_path / "q.txt").write_text("\n\n")
        argv += ["--smiles-file", str(tmp_path / "q.txt")]
        expected = "give --smiles and/or --smiles-file (--smiles-file"
    elif case == "damaged_checkpoint":
        argv += ["--smiles", "CCO"]
        expected = "damaged or truncated"
    else:
        argv = [str(ckpt), "--smiles", "CCO", "--doses", "-1" if case == "negative_dose" else "ten", "--quiet"]
        expected = "doses must be finite numbers > 0" if case == "negative_dose" else "is not a number"
    try:
        rc = predict_main(argv)
    except SystemExit as exc:                     # argparse's own usage errors exit 2 too
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and expected in err and "Traceback" not in err, err


# -- SMILES given straight to the molecule builder ---------------------------------------------


@pytest.mark.parametrize("smiles, ok", [("CCO", True), (" CCO\t", True), ("OC(=O)[C@H]1CSCN1 |&1:3|", True),
                                        ("CC O", False), ("CC\tO", False), ("c1ccccc1 O=O", False),
                                        ("", False)])
def test_molecule_builder_rejects_whitespace_inside_a_smiles(smiles, ok):
    out = RDKitMoleculeBuilder().build_many([smiles])[0]
    assert isinstance(out, RecordError) != ok, out
    if not ok and smiles.strip():
        assert "contains whitespace" in str(out) and "RDKit would read only" in str(out)


def test_gzip_profile_tables_still_read(tmp_path):
    path = tmp_path / "plate.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(_profile().to_csv(index=False))
    ds = CellPaintingExperiments(ExperimentParams(profiles=[path], compounds=_compounds(tmp_path)))
    assert len(list(ds.records(SkipLog()))) == 3
