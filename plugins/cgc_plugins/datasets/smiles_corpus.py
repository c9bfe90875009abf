"""A molecule-only pretraining corpus: SMILES streamed from CSV / TSV / SMI files, or molecules from SDF
files (PubChem / ChEMBL exports), gzipped or not.

Each row becomes a record ``{"smiles", "compound_id"}`` (id ``<file name>:<row>`` or the
``id_column``) plus the ``property_columns`` (as text, under their own names), which the molecule
modality builds into an atom/bond graph; there is no cell or target modality in such a run. Files
are read row by row, so the corpus never has to fit in memory. ``fraction`` keeps a seeded,
hash-chosen subset. Rows without a SMILES are skipped and counted; SMILES that RDKit cannot parse are
rejected (counted, with RDKit's reason) by the molecule builder; molecules an evaluation holds out
are left out by the leakage guard, like any dataset's.

SDF (``.sdf``, ``.sd``, ``.sdf.gz``): records are streamed by RDKit's ``ForwardSDMolSupplier``
(sanitized, hydrogens removed) and written as canonical isomeric SMILES. The id is the SD property
``id_column`` (``_Name``: the title line; default ``<file name>:<record number>``, counting records
from 1); a record whose molblock RDKit cannot read or sanitize is skipped and counted, listed with
its record number and RDKit's reason (``skipped_records.csv``), and the next record is read.

The real corpus of this project is the MOSES training split (1,584,663 drug-like ZINC molecules,
MIT): ``pip download --no-deps molsets==0.3.1`` and take ``moses/dataset/data/train.csv.gz`` from
the wheel; in this repository's data folder it is ``molecules/moses_train.csv.gz``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cgc_framework.plugin import DataError, Dataset, Record, SkipLog

from .params import SmilesCorpusParams

SMILES_COLUMNS = ("smiles", "SMILES", "Smiles", "canonical_smiles", "CanonicalSMILES", "isomeric_smiles", "mol")


def _open_text(path: Path):
    raw = open(path, "rb")
    head = raw.read(2)
    raw.seek(0)
    if head == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8", newline="")
    if path.suffix == ".gz":
        raw.close()
        raise DataError(f"{path}: the name ends in .gz but the file is not gzip-compressed; rename it "
                        f"without .gz, or compress it with gzip")
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def _kind(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".sdf", ".sd")):
        return "sdf"
    return "smi" if name.endswith((".smi", ".smiles")) else "tsv" if name.endswith((".tsv", ".tab")) else "csv"


Row = tuple[int, str, "str | None", dict[str, "str | None"]]
"""``(row or record number from 1, SMILES, id or None, {property: value or None})``."""


class SmilesCorpus(Dataset):
    """Molecules of SMILES tables as records (see the module docstring)."""

    def __init__(self, params: SmilesCorpusParams):
        self.params = params
        self.paths = [Path(p) for p in params.paths]
        self.counts: dict[str, int] = {}

    def _keep(self, smiles: str) -> bool:
        if self.params.fraction >= 1:
            return True
        h = hashlib.blake2b(f"{self.params.seed}:{smiles}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "little") < self.params.fraction * 2 ** 64

    def _rows(self, path: Path, skips: SkipLog) -> Iterator[Row]:
        """The rows of one file (:data:`Row`; row numbers count data rows from 1)."""
        kind = _kind(path)
        if kind == "sdf":
            yield from self._sdf_rows(path, skips)
            return
        p = self.params
        if kind == "smi" and p.property_columns:
            raise DataError(f"{path}: a .smi file has no named columns; property_columns {p.property_columns} "
                            f"need a CSV / TSV / SDF file")
        try:
            fh = _open_text(path)
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc})") from None
        with fh:
            try:
                if kind == "smi":
                    for i, line in enumerate(fh, start=1):
                        parts = line.split()
                        if not parts or parts[0].startswith("#"):
                            continue
                        yield i, parts[0], parts[1] if len(parts) > 1 else None, {}
                    return
                reader = csv.reader(fh, delimiter="\t" if kind == "tsv" else ",")
                header = next(reader, None)
                if header is None:
                    raise DataError(f"{path}: the file is empty (no header row); a SMILES table needs a header "
                                    f"with a SMILES column")
                col = p.smiles_column or next((c for c in SMILES_COLUMNS if c in header), header[0])
                if col not in header:
                    raise DataError(f"{path}: no column {col!r} (smiles_column); columns: {', '.join(header[:20])}")
                s_i = header.index(col)
                id_i = None
                if p.id_column is not None:
                    if p.id_column not in header:
                        raise DataError(f"{path}: no column {p.id_column!r} (id_column); columns: "
                                        f"{', '.join(header[:20])}")
                    id_i = header.index(p.id_column)
                missing = [c for c in p.property_columns if c not in header]
                if missing:
                    raise DataError(f"{path}: no column(s) {', '.join(map(repr, missing))} (property_columns); "
                                    f"columns: {', '.join(header[:20])}")
                prop_i = {c: header.index(c) for c in p.property_columns}
                for i, row in enumerate(reader, start=1):
                    if s_i >= len(row):
                        skips.add(f"{path.name}:{i}", "smiles_corpus", col, ",".join(row),
                                  f"row has {len(row)} fields, the SMILES column is field {s_i + 1}")
                        continue
                    props = {c: (row[j] if j < len(row) and row[j] != "" else None) for c, j in prop_i.items()}
                    yield i, row[s_i], (row[id_i] if id_i is not None and id_i < len(row) else None), props
            except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, csv.Error) as exc:
                raise DataError(f"{path}: cannot be read as a {kind.upper()} table ({type(exc).__name__}: "
                                f"{exc}); check the file's format and compression") from None

    def _sdf_rows(self, path: Path, skips: SkipLog) -> Iterator[Row]:
        """The molecules of one SDF file, streamed by ``ForwardSDMolSupplier``; unreadable records are
        counted and listed (record number and RDKit's reason) and reading goes on."""
        from rdkit import Chem, rdBase

        from cgc_plugins.molecules.rdkit_builder import rdkit_reason

        p = self.params
        try:
            raw = open(path, "rb")
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc})") from None
        head = raw.read(2)
        raw.seek(0)
        if path.suffix == ".gz" and head != b"\x1f\x8b":
            raw.close()
            raise DataError(f"{path}: the name ends in .gz but the file is not gzip-compressed; rename it "
                            f"without .gz, or compress it with gzip")
        fh = gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw
        capture = getattr(rdBase, "CaptureErrorLog", None)
        with raw, fh:
            supplier = Chem.ForwardSDMolSupplier(fh, sanitize=True, removeHs=True)
            i = 0
            while True:
                i += 1
                try:
                    if capture is not None:
                        with capture() as log:
                            mol = next(supplier)
                        messages = log.messages if mol is None else ""
                    else:  # older RDKit: no captured reason
                        with rdBase.BlockLogs():
                            mol = next(supplier)
                        messages = ""
                except StopIteration:
                    return
                except (OSError, EOFError, gzip.BadGzipFile) as exc:
                    raise DataError(f"{path}: cannot be read as SDF after {i - 1} records ({type(exc).__name__}: "
                                    f"{exc}); check the file's compression") from None
                if mol is None:
                    self.counts["unreadable"] = self.counts.get("unreadable", 0) + 1
                    why = rdkit_reason(messages, "RDKit could not read or sanitize the molblock")
                    skips.add(f"{path.name}:{i}", "smiles_corpus", "molblock", f"SDF record {i}",
                              f"SDF record {i} of {path.name} cannot be read: {why}")
                    continue
                smiles = Chem.MolToSmiles(mol) if mol.GetNumAtoms() else ""
                mid = None
                if p.id_column is not None:
                    if p.id_column == "_Name":
                        mid = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
                    else:
                        mid = mol.GetProp(p.id_column).strip() if mol.HasProp(p.id_column) else ""
                    if not mid:
                        self.counts["no id"] = self.counts.get("no id", 0) + 1
                        mid = None
                props = {c: (mol.GetProp(c) if mol.HasProp(c) else None) for c in p.property_columns}
                yield i, smiles, mid, props

    def records(self, skips: SkipLog) -> Iterator[Record]:
        self.counts = {"rows": 0, "kept": 0, "not in fraction": 0, "empty": 0}
        for path in self.paths:
            for i, smiles, mid, props in self._rows(path, skips):
                self.counts["rows"] += 1
                smiles = smiles.strip()
                rid = mid or f"{path.name}:{i}"
                if not smiles:
                    self.counts["empty"] += 1
                    skips.add(rid, "smiles_corpus", "smiles", "", "empty SMILES cell" if _kind(path) != "sdf"
                              else f"SDF record {i} has no atoms")
                    continue
                if not self._keep(smiles):
                    self.counts["not in fraction"] += 1
                    continue
                self.counts["kept"] += 1
                missing = sum(v is None for v in props.values())
                if missing:
                    self.counts["missing properties"] = self.counts.get("missing properties", 0) + missing
                yield Record(rid, {**props, "smiles": smiles, "compound_id": rid})

    def describe(self) -> dict[str, Any]:
        p = self.params
        info: dict[str, Any] = {"files": ", ".join(str(x) for x in self.paths)}
        if p.fraction < 1:
            info["subset"] = f"fraction {p.fraction:g} of the molecules, chosen by a hash of the SMILES (seed {p.seed})"
        if self.counts:
            info["rows"] = ", ".join(f"{k}: {v}" for k, v in self.counts.items())
        return info


__all__ = ["SMILES_COLUMNS", "SmilesCorpus"]
