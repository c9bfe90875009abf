"""A corpus of bad and unusual inputs to the framework's own machinery: configs and ``--set``,
checkpoints, record fields (ids, doses, SMILES), SMILES inputs of ``cgc-embed``, failed runs.

Every case has one of two outcomes:

- a clear error: exit code 2 (or a ``CGCError`` from the API), ``error: ...`` naming the file and,
  where there is one, the line/column, key, row or field, with a hint at the fix; no traceback;
- a counted skip: the bad record or row is listed with the reason while the good ones proceed.

CLI cases run in-process (``main([...])`` with ``capsys``); a few run as subprocesses to prove that
nothing prints a traceback. Inputs are tiny files under ``tmp_path``; nothing here pretrains.
Plugin-specific inputs (structures, profile tables, target tables, ``cgc predict``) are in
``tests/plugins/test_bad_inputs_plugins.py``.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from cgc_framework import hookimpl
from cgc_framework.api import dry_run, plan_run
from cgc_framework.cli import embed_main
from cgc_framework.cli import main as run_main
from cgc_framework.engine.checkpoint import CheckpointError, build_model, save_checkpoint
from cgc_framework.engine.config import validate_config
from cgc_framework.engine.featurize import build_graphs
from cgc_framework.engine.pretrained import load_pretrained
from cgc_framework.plugin.contracts import Dataset
from cgc_framework.plugin.records import FIELD_CONVENTIONS, Record, field_problem

BIN = Path(sys.executable).parent

# -- helpers ------------------------------------------------------------------------------------

BASE = """\
run: {name: bad, output_dir: OUT}
data:
  dataset: {name: lincs_cellpainting, params: {}}
graph:
  modalities:
    molecule: {builder: rdkit_molecule, params: {}}
model:
  encoder: {name: hgt, params: {hidden_dim: 8, num_layers: 1, heads: 1}}
tasks:
  mask: {name: masked_recovery, params: {}}
stages: [{name: mask, epochs: 1, weights: {mask: 1.0}}]
trainer: {num_workers: 0}
"""


def _config(tmp_path: Path, text: str = BASE, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("OUT", str(tmp_path / "runs")))
    return path


def _cli(capsys, fn, argv: list[str]) -> tuple[int, str, str]:
    rc = fn([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return rc, out.out, out.err


class _Rows(Dataset):
    """Records from a list of ``(id, smiles, dose)`` rows."""

    def __init__(self, rows):
        self.rows = rows

    def records(self, skips):
        for rid, smiles, dose in self.rows:
            yield Record(rid, {"smiles": smiles, "dose_um": dose, "compound_id": rid})


class _RowsPlugin:
    def __init__(self, rows):
        self.rows = rows

    @hookimpl
    def register_datasets(self, register):
        register("rows_test", lambda params: _Rows(self.rows))


def _rows_plan(tmp_path: Path, rows):
    cfg = validate_config({
        "run": {"name": "rows", "output_dir": str(tmp_path / "runs")},
        "data": {"dataset": {"name": "rows_test"}},
        "graph": {"modalities": {"molecule": {"builder": "rdkit_molecule"}}},
        "model": {"encoder": {"name": "hgt", "params": {"hidden_dim": 8, "num_layers": 1, "heads": 1}}},
        "tasks": {"mask": {"name": "masked_recovery"}},
        "stages": [{"name": "mask", "epochs": 1, "weights": {"mask": 1.0}}],
        "trainer": {"num_workers": 0},
    })
    return plan_run(cfg, extra_plugins=(_RowsPlugin(rows),))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained checkpoint of a molecule-only model (fresh weights; nothing is trained): enough
    for every input case of ``cgc-embed``."""
    tmp = tmp_path_factory.mktemp("ckpt")
    plan = plan_run(_config(tmp))
    components = {"encoder": {"name": plan.encoder.info.name, "params": plan.encoder.params_dict()},
                  "tasks": {k: {"name": s.info.name, "params": s.params_dict()} for k, s in plan.tasks.items()}}
    torch.manual_seed(0)
    model = build_model(components, plan.schema, plan.registry)
    path = tmp / "run" / "checkpoints" / "final.pt"
    save_checkpoint(path, model, {**components, "schema": plan.schema.to_dict(), "builders": plan.builder_refs(),
                                  "config_hash": plan.config_hash(), "seed": 0})
    return path


# -- configs: malformed YAML, unknown keys, wrong types, bad --set paths -------------------------

CONFIG_CASES = {
    # name: (file text or None for BASE, --set overrides, expected fragments of the error)
    "unclosed_bracket": (BASE.replace("stages: [{name: mask, epochs: 1, weights: {mask: 1.0}}]",
                                      "stages: [{name: mask, epochs: 1, weights: {mask: 1.0}}"), [],
                         [":11:9: malformed YAML: the '[' opened at line 11, column 9", "add the closing ']'"]),
    "unclosed_quote": (BASE.replace("run: {name: bad,", 'run: {name: "bad,'), [],
                       [":1:13: malformed YAML: the quote opened at line 1, column 13", "add the closing quote"]),
    "unclosed_brace": (BASE.replace("params: {hidden_dim: 8, num_layers: 1, heads: 1}}",
                                    "params: {hidden_dim: 8, num_layers: 1, heads: 1}"), [],
                       [":8:12: malformed YAML: the '{' opened at line 8, column 12", "add the closing '}'"]),
    "tab_indentation": (BASE.replace("  modalities:", "\tmodalities:"), [],
                        [":5:1: malformed YAML", "tabs are not allowed for indentation: use spaces"]),
    "bad_indentation": (BASE.replace("  modalities:", "    modalities:\n   molecule: 1"), [],
                        ["malformed YAML"]),
    "duplicate_key": (BASE + "trainer: {num_workers: 1}\n", [],
                      ["duplicate key 'trainer' (first defined on line 12)"]),
    "empty_file": ("", [], ["the file is empty"]),
    "not_a_mapping": ("- a\n- b\n", [], ["the top level must be a mapping of sections, got list"]),
    "unknown_key": (BASE + "optimiser: {lr: 0.1}\n", [], ["unknown key 'optimiser'", "Did you mean 'optimizer'?"]),
    "wrong_type": (BASE.replace("epochs: 1", "epochs: many"), [], ["stages[0].epochs", "'many'"]),
    "negative_lr": (None, ["optimizer.lr=-1"], ["optimizer.lr", "greater than 0"]),
    "set_index_past_end": (None, ["stages.9.epochs=2"], ["stages.9.epochs: 'stages' has 1 item(s); index 9 is past its end"]),
    "set_list_by_name": (None, ["stages.x=2"], ["stages.x: 'stages' is a list; index it with a number 0..0, not 'x'"]),
    "set_through_a_value": (None, ["run.name.x=2"], ["'run.name' is the value 'bad', not a mapping or list"]),
    "set_without_equals": (None, ["trainer.num_workers"], ["expected KEY=VALUE"]),
    "set_malformed_value": (None, ["optimizer.lr=[1"], ["--set optimizer.lr=[1: malformed YAML: the '[' opened",
                                                        "add the closing ']'"]),
    "unknown_component": (BASE.replace("builder: rdkit_molecule", "builder: rdkit_molecul"), [],
                          ["rdkit_molecul", "rdkit_molecule"]),
    "unknown_param": (BASE.replace("masked_recovery, params: {}", "masked_recovery, params: {mask_rat: 0.1}"), [],
                      ["tasks.mask.params", "mask_rat"]),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_configs_give_a_clear_error_naming_the_place(tmp_path, capsys, case):
    text, overrides, expected = CONFIG_CASES[case]
    path = _config(tmp_path, BASE if text is None else text)
    rc, _, err = _cli(capsys, run_main, [path, "--dry-run", "--quiet", *[a for o in overrides for a in ("--set", o)]])
    assert rc == 2 and err.startswith("error: invalid configuration in ")
    if text is not None and "malformed" in " ".join(expected):
        assert str(path) in err
    for fragment in expected:
        assert fragment in err, (fragment, err)


def test_missing_and_binary_config_files(tmp_path, capsys):
    rc, _, err = _cli(capsys, run_main, [tmp_path / "nope.yaml", "--dry-run"])
    assert rc == 2 and f"config file not found: {tmp_path / 'nope.yaml'}" in err
    binary = tmp_path / "cfg.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    rc, _, err = _cli(capsys, run_main, [binary, "--dry-run"])
    assert rc == 2 and f"{binary}: cannot read as a text (YAML) file" in err


# -- checkpoints --------------------------------------------------------------------------------


def _bad_checkpoints(tmp: Path, good: Path) -> dict[str, tuple[Path, str]]:
    data = good.read_bytes()
    out = {}

    def put(name: str, blob: bytes | None = None, obj=None) -> Path:
        p = tmp / name
        if obj is not None:
            torch.save(obj, p)
        else:
            p.write_bytes(blob or b"")
        return p

    out["truncated"] = (put("truncated.pt", data[: len(data) // 2]), "damaged or truncated")
    out["cut_at_the_end"] = (put("cut_end.pt", data[:-100]), "damaged or truncated")
    out["text_file"] = (put("notes.pt", b"this is not a checkpoint\n"), "cannot be read as a cgc-framework checkpoint")
    out["empty_file"] = (put("empty.pt"), "cannot be read as a cgc-framework checkpoint")
    out["unrelated_torch_file"] = (put("state_dict.pt", obj={"weight": torch.zeros(2)}),
                                   "is not a cgc-framework checkpoint of format cgc-checkpoint/2 (found None)")
    out["a_tensor"] = (put("tensor.pt", obj=torch.zeros(3)), "(found 'Tensor')")
    out["v1_checkpoint"] = (put("v1.pt", obj={"format": "cgc-checkpoint/1", "model": {}}),
                            "re-run the pretraining with this version")
    out["missing"] = (tmp / "missing.pt", "no such checkpoint file")
    out["plain_pickle"] = (put("plain.pt", pickle.dumps({"a": 1}, protocol=2)),
                           "cannot be read as a cgc-framework checkpoint")
    out["pickle_protocol_4"] = (put("plain4.pt", pickle.dumps({"a": 1})), "cannot be read as a cgc-framework checkpoint")
    out["numpy_file"] = (put("array.pt", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, "
                                          b"'shape': (3,), }" + b" " * 50 + b"\n" + b"\x00" * 24),
                         "cannot be read as a cgc-framework checkpoint")
    out["marker_without_schema"] = (put("hollow.pt", obj={"format": "cgc-checkpoint/2", "model": {}}),
                                    "lacks the entries ['encoder', 'tasks', 'schema']")
    return out


CHECKPOINT_CASES = ["truncated", "cut_at_the_end", "text_file", "empty_file", "unrelated_torch_file", "a_tensor",
                    "v1_checkpoint", "missing", "plain_pickle", "pickle_protocol_4", "numpy_file",
                    "marker_without_schema"]


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_bad_checkpoints_give_exit_2_and_never_suggest_unsafe_loading(tmp_path, capsys, checkpoint, case):
    path, expected = _bad_checkpoints(tmp_path, checkpoint)[case]
    rc, _, err = _cli(capsys, embed_main, [path, "--smiles", "CCO", "--out", tmp_path / "e.csv"])
    assert rc == 2 and err.startswith(f"error: {path}") and expected in err, err
    assert "weights_only" not in err and "\x1b[" not in err          # never the unsafe way out; no terminal codes
    with pytest.raises(CheckpointError, match="checkpoint"):
        load_pretrained(path)


def test_a_good_checkpoint_embeds(tmp_path, capsys, checkpoint):
    rc, out, _ = _cli(capsys, embed_main, [checkpoint, "--smiles", "CCO", "c1ccccc1O", "--out", tmp_path / "e.csv"])
    assert rc == 0 and "wrote 2 embeddings of width 8" in out
    assert list(pd.read_csv(tmp_path / "e.csv").columns[:3]) == ["row", "smiles", "e0"]


# -- record checks: ids, doses, SMILES (before any builder runs) --------------------------------

RECORD_CASES = {
    # name: (bad row, expected (field, reason fragment))
    "duplicate_id": (("r0", "CCN", 1.0), ("record_id", "duplicate record id 'r0': record #4 of the dataset "
                                                       "repeats record #1 (the first occurrence, kept)")),
    "negative_dose": (("neg", "CCN", -1.0), ("dose_um", "dose_um is -1: a dose must be a finite number > 0")),
    "nan_dose": (("nan", "CCN", float("nan")), ("dose_um", "dose_um is NaN")),
    "inf_dose": (("inf", "CCN", float("inf")), ("dose_um", "dose_um is inf")),
    "zero_dose": (("zero", "CCN", 0.0), ("dose_um", "dose_um is 0: a dose must be a finite number > 0")),
    "text_dose": (("text", "CCN", "10 uM"), ("dose_um", "dose_um is '10 uM' (text), not a number")),
    "bool_dose": (("bool", "CCN", True), ("dose_um", "not a number")),
    "smiles_with_space": (("space", "CC O", 1.0), ("smiles", "SMILES 'CC O' contains whitespace: RDKit would "
                                                             "read only 'CC' and take 'O' as a name")),
    "smiles_with_tab": (("tab", "CCO\tCCN", 1.0), ("smiles", "contains whitespace")),
    "smiles_not_text": (("number", 42, 1.0), ("smiles", "smiles is 42 (int), not text")),
}
GOOD = [("r0", "CCO", 1.0), ("r1", "c1ccccc1O", 0.5), ("r2", "OC(=O)[C@H]1CSCN1 |&1:3|", 2.0)]


@pytest.mark.parametrize("case", RECORD_CASES)
def test_bad_record_fields_are_skipped_with_the_reason_and_good_records_proceed(tmp_path, case):
    row, (field, reason) = RECORD_CASES[case]
    built = build_graphs(_rows_plan(tmp_path, GOOD + [row]), progress=False)
    assert built.record_ids == ["r0", "r1", "r2"] and built.records_read == 4      # CXSMILES is fine
    [e] = built.skips.entries
    assert (e.record_id, e.component, e.field) == (row[0], "record_check", field)
    assert reason in e.reason, e.reason


def test_a_missing_dose_is_no_dose_and_conventions_are_one_table():
    assert field_problem({"dose_um": None, "smiles": None}) is None
    assert {c.field for c in FIELD_CONVENTIONS} == {"dose_um", "smiles"}


def test_checks_run_in_parallel_building_too(tmp_path):
    rows = GOOD + [("r1", "CC", 1.0), ("bad", "CC O", 1.0)]
    plan = _rows_plan(tmp_path, rows)
    serial = build_graphs(plan, progress=False, workers=0)
    parallel = build_graphs(plan, progress=False, workers=2)
    assert serial.record_ids == parallel.record_ids == ["r0", "r1", "r2"]
    assert serial.skips.entries == parallel.skips.entries and len(serial.skips) == 2
    counted = build_graphs(plan, progress=False, workers=2, keep_graphs=False)     # a dry run's bounded pass
    assert counted.record_ids == serial.record_ids and counted.skips.entries == serial.skips.entries
    assert len(counted.graphs) == 0 and len(serial.graphs) == 3


def test_plan_build_record_applies_the_field_conventions(tmp_path):
    from cgc_framework.plugin.records import RecordRejected

    plan = _rows_plan(tmp_path, GOOD)
    with pytest.raises(RecordRejected, match="dose_um is -2"):
        plan.build_record(Record("q", {"smiles": "CCO", "dose_um": -2.0}))


# -- a failed run still leaves every reason behind; --dry-run says what it did not list ---------

PLUGIN_FILE = """
from cgc_framework.plugin import Dataset, Record, hookimpl

class Bad(Dataset):
    def records(self, skips):
        for i in range(N):
            yield Record(f"w{i}", {"smiles": "CC O" if i % 2 else "C1CC", "dose_um": 1.0})

@hookimpl
def register_datasets(register):
    register("all_bad_test", lambda params: Bad())
"""


def _all_bad(tmp_path: Path, n: int) -> tuple[Path, Path]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "all_bad.py").write_text(PLUGIN_FILE.replace("N", str(n)))
    cfg = _config(tmp_path, BASE.replace("lincs_cellpainting", "all_bad_test"))
    return plugins, cfg


def test_a_failed_run_writes_skipped_records_csv(tmp_path, capsys):
    plugins, cfg = _all_bad(tmp_path, 12)
    run_dir = tmp_path / "r"
    rc, _, err = _cli(capsys, run_main, [cfg, "--plugins-dir", plugins, "--quiet", "--run-dir", run_dir])
    assert rc == 2 and err.startswith("error: no usable records: dataset 'all_bad_test' gave 12 records")
    assert "record_check 6" in err and "rdkit_molecule 6" in err
    assert f"Every skipped record, with its reason: {run_dir.resolve() / 'skipped_records.csv'}" in err
    table = pd.read_csv(run_dir / "skipped_records.csv")
    assert len(table) == 12 and set(table.component) == {"record_check", "rdkit_molecule"}


def test_dry_run_says_how_many_skips_it_did_not_list(tmp_path):
    cfg = _config(tmp_path, BASE.replace("lincs_cellpainting", "rows_test"))
    text = dry_run(cfg, extra_plugins=(_RowsPlugin(GOOD + [(f"b{i}", "CC O", 1.0) for i in range(14)]),))
    assert "17 records read, 3 experiment graphs, 14 skipped" in text
    assert "... and 4 more skipped records not listed here" in text


# -- SMILES inputs of cgc-embed -----------------------------------------------------------------


def _embed(capsys, checkpoint, tmp_path, name: str, content: str | bytes, *extra):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "emb.csv"
    rc, stdout, err = _cli(capsys, embed_main, [checkpoint, "--smiles-file", path, "--out", out, *extra])
    return rc, stdout, err, path, out


def test_smiles_file_rows_empty_invalid_and_whitespace_are_listed(tmp_path, capsys, checkpoint):
    content = "CCO\n\nnot-a-smiles\nCC O\n  \nc1ccccc1O\n# a comment\n"
    rc, out, _, _, table_path = _embed(capsys, checkpoint, tmp_path, "in.txt", content)
    assert rc == 0
    assert "wrote 2 embeddings" in out and "2 invalid SMILES skipped, 2 empty rows skipped" in out
    skipped_path = tmp_path / "emb.skipped.csv"
    assert f"each row with its reason in {skipped_path}" in out
    table = pd.read_csv(table_path)
    assert table.row.tolist() == [1, 6] and table.smiles.tolist() == ["CCO", "c1ccccc1O"]
    skipped = pd.read_csv(skipped_path)
    assert skipped.row.tolist() == [2, 3, 4, 5]
    reasons = dict(zip(skipped.row, skipped.reason))
    assert reasons[2] == reasons[5] == "empty row (no SMILES)"
    assert reasons[3].startswith("invalid SMILES") and "contains whitespace" in reasons[4]


def test_smiles_csv_with_empty_cells_counts_them_by_line(tmp_path, capsys, checkpoint):
    rc, out, _, _, table_path = _embed(capsys, checkpoint, tmp_path, "in.csv", "name,smiles\na,CCO\nb,\nc,CCN\n")
    assert rc == 0 and "1 empty row skipped" in out
    assert pd.read_csv(table_path).row.tolist() == [2, 4]
    assert pd.read_csv(tmp_path / "emb.skipped.csv").row.tolist() == [3]


def test_a_parquet_out_name_writes_parquet_with_the_same_rows_as_csv(tmp_path, capsys, checkpoint):
    args = [checkpoint, "--smiles", "CCO", "xyz", "c1ccccc1O", "--out"]
    assert _cli(capsys, embed_main, [*args, tmp_path / "e.csv"])[0] == 0
    rc, out, _ = _cli(capsys, embed_main, [*args, tmp_path / "e.parquet"])
    assert rc == 0 and f"{tmp_path / 'e.skipped.csv'}" in out
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "e.parquet"), pd.read_csv(tmp_path / "e.csv"),
                                  check_exact=False, check_dtype=False, rtol=1e-6)
    assert pd.read_csv(tmp_path / "e.skipped.csv").row.tolist() == [2]


@pytest.mark.parametrize("case", ["no_smiles_column", "binary", "all_invalid", "only_empty_rows", "missing"])
def test_unusable_smiles_files_give_exit_2(tmp_path, capsys, checkpoint, case):
    content, expected = {
        "no_smiles_column": ("smile,name\nCCO,a\n", "no 'smiles' column (columns: smile, name)"),
        "binary": (b"\x89PNG\x00\xff\xfe\x00", "cannot read as a text file"),
        "all_invalid": ("xyz\nCC O\n", "no SMILES gave an embedding (2 SMILES, 0 empty rows)"),
        "only_empty_rows": ("\n\n", "no SMILES gave an embedding (0 SMILES, 2 empty rows)"),
        "missing": ("", "no such SMILES file"),
    }[case]
    name = "in.csv" if case == "no_smiles_column" else "in.txt"
    if case == "missing":
        rc, _, err = _cli(capsys, embed_main, [checkpoint, "--smiles-file", tmp_path / "nope.txt",
                                               "--out", tmp_path / "e.csv"])
        assert rc == 2 and f"{tmp_path / 'nope.txt'}: no such SMILES file" in err
        return
    rc, _, err, path, _ = _embed(capsys, checkpoint, tmp_path, name, content)
    assert rc == 2 and err.startswith(f"error: {path}") and expected in err, err


def test_smiles_arguments_with_whitespace_are_listed_by_position(tmp_path, capsys, checkpoint):
    out_path = tmp_path / "e.csv"
    rc, out, _ = _cli(capsys, embed_main, [checkpoint, "--smiles", "CCO", "CC\tO", "--out", out_path])
    assert rc == 0 and "1 invalid SMILES skipped" in out
    skipped = pd.read_csv(tmp_path / "e.skipped.csv")
    assert skipped.row.tolist() == [2] and "contains whitespace" in skipped.reason[0]


def test_graphs_file_that_is_not_graphs(tmp_path, capsys, checkpoint):
    bad = tmp_path / "graphs.pt"
    bad.write_text("not graphs")
    rc, _, err = _cli(capsys, embed_main, [checkpoint, "--graphs", bad, "--out", tmp_path / "e.csv"])
    assert rc == 2 and f"{bad}: cannot read as saved experiment graphs" in err


# -- the same, through real processes: no traceback anywhere -------------------------------------


def test_no_traceback_from_the_installed_commands(tmp_path, checkpoint):
    cfg = _config(tmp_path, CONFIG_CASES["unclosed_bracket"][0], name="malformed.yaml")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(checkpoint.read_bytes()[:5000])
    plugins, bad_cfg = _all_bad(tmp_path, 4)
    runs = [
        ([BIN / "cgc-run", cfg, "--dry-run"], "malformed YAML"),
        ([BIN / "cgc-embed", broken, "--smiles", "CCO", "--out", tmp_path / "e.csv"], "damaged or truncated"),
        ([BIN / "cgc-run", bad_cfg, "--plugins-dir", plugins, "--quiet", "--run-dir", tmp_path / "r"],
         "no usable records"),
    ]
    for argv, expected in runs:
        res = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                             env={"PATH": str(BIN), "HOME": str(tmp_path), "PYTHONWARNINGS": "ignore"})
        assert res.returncode == 2, res.stderr[-2000:]
        assert "Traceback" not in res.stderr and res.stderr.startswith("error: ") and expected in res.stderr
    assert (tmp_path / "r" / "skipped_records.csv").is_file()
