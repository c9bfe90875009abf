"""Cell Painting experiment dataset: treated wells with their plate's DMSO control state.

One record per treated well: the compound (SMILES, ids), dose, cell line, MoA/targets, and a
:class:`~cgc_plugins.cells.profile_builder.CellProfile` (``cell_profile``) holding the well's
features and its plate's control summary, both robust-z normalized against that plate's DMSO wells.

Streaming: profile files are processed one at a time (JUMP/LINCS ship one file per plate); within a
file, plate by plate. With ``cache_dir`` set, each file's normalized matrix is written once as
``.npy`` and memory-mapped afterwards (cache key: file path, size, mtime and every parameter that
changes the numbers), so a 100k-well set is never in memory at once.

Column presets (auto-detected from the header, or given as ``columns``) cover the LINCS cpg0004
plates, the Dahlin 2023 cell-injury plates, BBBC021 (annotated per-well means) and the CPJUMP1
subset of ``../shared/data/cellpainting``.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from cgc_framework.plugin import ConfigError, DataError, Dataset, Record, SkipLog
from cgc_plugins.cells.context import canonical_cell_line
from cgc_plugins.cells.feature_names import is_feature_column
from cgc_plugins.cells.layout import layout_for
from cgc_plugins.cells.normalize import MAD_TO_SD, MIN_MAD, QualityReport, nan_screen, robust_mad_normalize
from cgc_plugins.cells.profile_builder import CellProfile

from .lincs import EMBEDDED_COMPOUNDS, EMBEDDED_PROFILES, as_number, sha256
from .params import PRESETS, ColumnMap, ExperimentParams, PooledParams, SplitParams
from .tables import NonNumericCell, read_table, require_columns


def detect_preset(columns: list[str]) -> str | None:
    cols = set(columns)
    for name, cm in PRESETS.items():
        need = [cm.plate, cm.well, cm.compound_id, cm.control_column] + ([cm.dose_um] if cm.dose_um else [])
        if all(c in cols for c in need):
            return name
    return None


def _group_matches(key: object, groups: list[str | float]) -> bool:
    """``key`` is one of ``groups``: numbers within 5 % relative, everything else as strings."""
    for g in groups:
        try:
            a, b = float(key), float(g)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            if str(key) == str(g):
                return True
            continue
        if math.isclose(a, b, rel_tol=0.05):
            return True
    return False


def fold_of(key: object, p: SplitParams) -> int:
    """The cross-validation fold of a group key (``0 .. folds-1``; see :class:`SplitParams`)."""
    assert p.folds is not None
    return min(int(p.folds * (zlib.crc32(f"{p.seed}|{key}".encode()) / 2**32)), p.folds - 1)


def assign_split(key: object, p: SplitParams, record_id: str | None = None) -> str:
    """``"train"`` / ``"val"`` / ``"test"`` for one group key (see :class:`SplitParams`);
    ``record_id`` is hashed instead of the key for the val draw when ``val_by == "record"``."""
    if p.by == "none":
        return "train"
    if p.folds is not None:
        if fold_of(key, p) == p.fold:
            return "test"
        v = zlib.crc32(f"{p.seed}|val|{record_id if p.val_by == 'record' else key}".encode()) / 2**32
        return "val" if v < p.val_fraction else "train"
    if p.test_groups is not None:
        if _group_matches(key, p.test_groups):
            return "test"
        v = zlib.crc32(f"{p.seed}|val|{record_id if p.val_by == 'record' else key}".encode()) / 2**32
        return "val" if v < p.val_fraction else "train"
    u = zlib.crc32(f"{p.seed}|{key}".encode()) / 2**32
    if u < p.test_fraction:
        return "test"
    if p.val_by == "record":
        v = zlib.crc32(f"{p.seed}|val|{record_id}".encode()) / 2**32
        return "val" if v < p.val_fraction else "train"
    return "val" if u < p.test_fraction + p.val_fraction else "train"


_NORM_VERSION = "3"   # 2: rows with text in a feature column and unused columns are reported; 3: context, activity


def _mol(smiles: str | None):
    """RDKit molecule of a SMILES, ``None`` if empty or unparsable (RDKit's log silenced)."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    return Chem.MolFromSmiles(smiles)


@lru_cache(maxsize=100_000)
def inchikey14_of(smiles: str | None) -> str | None:
    """InChIKey connectivity block of a SMILES (stereo and protonation ignored), ``None`` if unparsable."""
    from rdkit import Chem

    mol = _mol(smiles)
    if mol is None or not mol.GetNumAtoms():
        return None
    key = Chem.MolToInchiKey(mol)
    return key[:14] if key else None


@lru_cache(maxsize=100_000)
def scaffold_of(smiles: str | None) -> str | None:
    """Bemis-Murcko scaffold SMILES (RDKit; ``""`` for an acyclic molecule), ``None`` if unparsable."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    mol = _mol(smiles)
    if mol is None:
        return None
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def group_key(fields: dict[str, Any], p: SplitParams) -> object:
    """The split group of a record's fields (see :class:`SplitParams`)."""
    if p.by in ("compound", "scaffold"):
        cid = fields.get("compound_id")
        key = fields.get("compound_key") if p.key == "inchikey14" else cid
        if p.by == "scaffold":
            scaffold = scaffold_of(fields.get("smiles"))
            return f"scaffold:{scaffold}" if scaffold else f"compound:{key or cid}"  # acyclic: its own group
        return key or cid
    return {"dose": fields.get("dose_um"), "cell_line": fields.get("cell_line"), "moa": fields.get("moa")}.get(p.by)


ACTIVE_PERCENTILE = 0.95
"""A well is *active* (distinguishable from DMSO) when its response statistic exceeds this fraction of
its plate's DMSO wells (``CellProfile.activity``; docs/cell-graph.md)."""


def response_statistic(z: np.ndarray, clip: float = 20.0) -> np.ndarray:
    """``[W]``: RMS over features of the clipped robust z of each well (NaN ignored)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.sqrt(np.nanmean(np.clip(z, -clip, clip) ** 2, axis=1))


class CellPaintingExperiments(Dataset):
    """Treated wells of Cell Painting plates as experiment records (see the module docstring).

    Fields: ``smiles``, ``compound_id``, ``compound_name``, ``inchikey``, ``dose_um`` (uM; ``None`` if
    the file has no dose), ``moa``, ``target`` (``|``-separated genes), ``plate``, ``well``,
    ``cell_line``, ``split``, ``cell_profile`` (:class:`CellProfile`).
    """

    def __init__(self, params: ExperimentParams | None = None):
        self.p = params or ExperimentParams()
        self.embedded = self.p.profiles is None
        self.files = [Path(f) for f in (self.p.profiles or [EMBEDDED_PROFILES])]
        comp = self.p.compounds or (EMBEDDED_COMPOUNDS if self.embedded else None)
        self.compounds_path = Path(comp) if comp else None
        self._compounds: dict[str, dict] | None = None
        self.quality = QualityReport(nan_threshold=self.p.nan_threshold)
        self.counts: dict[str, int] = {}
        self.layout_reports: dict[str, dict] = {}
        self.split_counts: dict[str, int] = {}
        self.compound_counts: dict[str, int] = {"treated_wells_without_smiles": 0, "compounds_without_smiles": 0}
        self.unused_columns: dict[str, dict[str, list[str]]] = {}
        self.repeated_compound_keys: list[str] = []
        self.activity_counts: dict[str, int] = {}
        self._source = ""

    # -- reading ---------------------------------------------------------------------------

    def _compound_table(self) -> dict[str, dict] | None:
        if self.compounds_path is None:
            return None
        if self._compounds is None:
            path, key = self.compounds_path, self.p.compounds_key
            df = read_table(path, "compound table")
            if key not in df.columns:
                import difflib

                close = difflib.get_close_matches(key, [str(c) for c in df.columns], n=1)
                raise ConfigError(str(path), [
                    f"data.dataset.params.compounds_key: {key!r} is not a column of {path}; its columns: "
                    f"{', '.join(map(str, df.columns))}{f'. Did you mean {close[0]!r}?' if close else ''} "
                    f"(the key column holds the compound ids of the profile's compound_id column)"])
            if self.p.compounds_match == "inchikey14":   # full InChIKeys and InChIKey14 both match
                df[key] = df[key].map(lambda v: str(v)[:14] if isinstance(v, str) and v.strip() else None)
            repeated = df[key].duplicated(keep="first") & df[key].notna()
            self.repeated_compound_keys = sorted(map(str, df.loc[repeated, key].unique()))
            df[key] = df[key].astype(str)
            self._compounds = df[~repeated].drop_duplicates(key).set_index(key).to_dict("index")
        return self._compounds

    def _columns(self, path: Path, header: list[str]) -> ColumnMap:
        if self.p.columns is not None:
            return self.p.columns
        preset = detect_preset(header)
        if preset is None:
            def need(cm: ColumnMap) -> list[str]:
                return [c for c in (cm.plate, cm.well, cm.compound_id, cm.control_column, cm.dose_um) if c]
            closest = min(PRESETS, key=lambda n: sum(c not in header for c in need(PRESETS[n])))
            lacks = [c for c in need(PRESETS[closest]) if c not in header]
            raise DataError(f"{path}: no column preset matches its header (the closest, {closest}, needs the "
                            f"column(s) {lacks}); give data.dataset.params.columns (plate, well, compound_id, "
                            f"control_column, ...; presets: {', '.join(PRESETS)})")
        return PRESETS[preset]

    @staticmethod
    def _read(path: Path, **kw) -> pd.DataFrame:
        return read_table(path, "profile table", **kw)

    def _cache_key(self, path: Path) -> str:
        st = path.stat()
        blob = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, self.p.normalize,
                           self.p.control_summary, self.p.nan_threshold, _NORM_VERSION, self.p.mad_scope,
                           self.p.min_plate_controls,
                           self.p.columns.model_dump() if self.p.columns else None], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _prepare(self, path: Path) -> dict[str, Any]:
        """Normalize one file: ``{features, values [W,F] f32, controls {plate: [F] or [C,F]}, meta df,
        report}``; from the cache when present."""
        cdir = Path(self.p.cache_dir) / f"{path.stem}-{self._cache_key(path)}" if self.p.cache_dir else None
        if cdir is not None and (cdir / "done").exists():
            meta = pd.read_parquet(cdir / "meta.parquet")
            info = json.loads((cdir / "info.json").read_text())
            ctrl = np.load(cdir / "controls.npy", mmap_mode="r")
            return {"features": tuple(info["features"]), "values": np.load(cdir / "values.npy", mmap_mode="r"),
                    "controls": ctrl, "control_rows": info["control_rows"], "meta": meta, "report": info["report"],
                    "contexts": np.load(cdir / "contexts.npy"), "context_rows": info["context_rows"],
                    "activity": np.load(cdir / "activity.npy"), "columns": ColumnMap(**info["columns"])}
        sample = self._read(path, nrows=100)          # the header, and a sample to tell numbers from text
        header = [str(c) for c in sample.columns]
        cm = self._columns(path, header)
        feats = [c for c in header if is_feature_column(c)]
        meta_cols = [c for c in dict.fromkeys([cm.plate, cm.well, cm.compound_id, cm.dose_um, cm.control_column,
                                               cm.compound_name, cm.smiles, cm.inchikey, cm.moa, cm.target,
                                               cm.cell_line, cm.time_h]) if c]
        require_columns(path, header, meta_cols, "profile table",
                        "The column map names them: fix data.dataset.params.columns (or the file's header)")
        unused = unused_columns(sample, feats, meta_cols)
        df, bad_rows, text_feats = self._read_values(path, meta_cols, feats, cm)
        if text_feats:
            feats = [f for f in feats if f not in text_feats]
            unused.setdefault("text values in a column named like a feature: not a measurement", []).extend(
                f"{c} (e.g. {v!r})" for c, v in text_feats.items())
        values = df[feats].to_numpy(dtype=np.float32, na_value=np.nan)
        meta = df[meta_cols].reset_index(drop=True)
        del df
        keep, dropped, nan_count = nan_screen(values, feats, self.p.nan_threshold)
        rep = {"nan_per_feature": {f: int(c) for f, c in zip(feats, nan_count) if c},
               "dropped": dropped, "zero_mad": {}, "plates_without_controls": [],
               "columns_not_used": unused, "bad_rows": bad_rows}
        feats = [f for f, k in zip(feats, keep) if k]
        values = values[:, keep]
        bad_rows = (~np.isfinite(values)).sum(axis=1)
        rep["wells_with_nan"], rep["max_nan_per_well"] = int((bad_rows > 0).sum()), int(bad_rows.max(initial=0))
        is_ctrl = meta[cm.control_column].astype(str).isin(cm.control_values).to_numpy()
        meta["_control"] = is_ctrl
        plates = meta[cm.plate].astype(str).to_numpy()
        out = np.full_like(values, np.nan)
        controls, control_rows, contexts, context_rows = [], {}, [], {}
        zero_mad = np.zeros(len(feats), dtype=np.int64)
        finite = np.where(np.isfinite(values), values, np.nan)
        # pass 1: each plate's DMSO median (before normalisation) and the pooled within-plate deviations
        medians: dict[str, np.ndarray] = {}
        deviations = []
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for plate in pd.unique(plates):
                rows = np.flatnonzero(plates == plate)
                c = is_ctrl[rows]
                if not c.any():
                    rep["plates_without_controls"].append(str(plate))
                    continue
                ref = finite[rows[c]].astype(np.float64)
                medians[str(plate)] = np.nanmedian(ref, axis=0)
                deviations.append(np.abs(ref - medians[str(plate)]))
            pooled_mad = MAD_TO_SD * np.nanmedian(np.concatenate(deviations), axis=0) if deviations \
                else np.full(len(feats), np.nan)
            pooled_ok = pooled_mad > MIN_MAD
            center = np.nanmedian(np.stack(list(medians.values())), axis=0) if medians else np.zeros(len(feats))
        few_controls: list[str] = []
        for plate in pd.unique(plates):
            plate = str(plate)
            if plate not in medians:
                continue
            rows = np.flatnonzero(plates == plate)
            c = is_ctrl[rows]
            use_file = self.p.mad_scope == "file" or (self.p.mad_scope == "auto" and c.sum() < self.p.min_plate_controls)
            if self.p.normalize == "plate_dmso_mad":
                if use_file:
                    with np.errstate(all="ignore"):
                        z = ((finite[rows] - medians[plate]) / np.where(pooled_ok, pooled_mad, np.nan)).astype(np.float32)
                    zero = ~pooled_ok
                    few_controls.append(plate)
                else:
                    z, zero = robust_mad_normalize(values[rows], c)
                zero_mad += zero
            else:
                z = values[rows]
            out[rows] = z
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                if self.p.control_summary == "median":
                    controls.append(np.nanmedian(z[c], axis=0))
                elif self.p.control_summary == "mean":
                    controls.append(np.nanmean(z[c], axis=0))
                # the plate's control profile before normalisation, against every DMSO well of the file
                with np.errstate(all="ignore"):
                    ctx = (medians[plate] - center) / np.where(pooled_ok, pooled_mad, np.nan)
            contexts.append(np.where(np.isfinite(ctx), ctx, np.nan))
            context_rows[plate] = len(contexts) - 1
            control_rows[plate] = len(controls) - 1 if self.p.control_summary != "sample_well" \
                else [int(r) for r in rows[c]]
        rep["zero_mad"] = {f: int(n) for f, n in zip(feats, zero_mad) if n}
        rep["plates_with_file_mad"] = few_controls
        # activity: each well's response statistic against its plate's DMSO wells (the file's DMSO wells
        # for plates with fewer than min_plate_controls)
        stat = response_statistic(out)
        activity = np.full(len(out), np.nan, dtype=np.float32)
        all_ctrl = stat[is_ctrl & np.isfinite(stat)]
        for plate in context_rows:
            rows = np.flatnonzero(plates == plate)
            ref = stat[rows[is_ctrl[rows]]]
            ref = ref[np.isfinite(ref)]
            if len(ref) < self.p.min_plate_controls:
                ref = all_ctrl
            if len(ref):
                activity[rows] = (ref[None, :] < stat[rows, None]).mean(axis=1)
        ctrl = np.stack(controls).astype(np.float32) if controls else np.zeros((0, len(feats)), np.float32)
        ctx_arr = np.stack(contexts).astype(np.float32) if contexts else np.zeros((0, len(feats)), np.float32)
        prepared = {"features": tuple(feats), "values": out, "controls": ctrl, "control_rows": control_rows,
                    "contexts": ctx_arr, "context_rows": context_rows, "activity": activity,
                    "meta": meta, "report": rep, "columns": cm}
        if cdir is not None:
            cdir.mkdir(parents=True, exist_ok=True)
            np.save(cdir / "values.npy", out)
            np.save(cdir / "controls.npy", ctrl)
            np.save(cdir / "contexts.npy", ctx_arr)
            np.save(cdir / "activity.npy", activity)
            meta.astype({c: "string" for c in meta.columns if meta[c].dtype == object}).to_parquet(cdir / "meta.parquet")
            (cdir / "info.json").write_text(json.dumps({"features": feats, "control_rows": control_rows,
                                                        "context_rows": context_rows,
                                                        "report": rep, "columns": cm.model_dump()}))
            (cdir / "done").write_text("ok")
        return prepared

    def _read_values(self, path: Path, meta_cols: list[str], feats: list[str], cm: ColumnMap
                     ) -> tuple[pd.DataFrame, list[list[Any]], dict[str, str]]:
        """The metadata and feature columns of ``path`` with every feature a number:
        ``(df, bad_rows, text_features)``. A row with text in a feature column is left out and
        listed in ``bad_rows`` (``[record id, column, value, "line N", is_control]``); a feature
        column with nothing but text is not a feature (``text_features``: column -> an example)."""
        try:
            df = self._read(path, usecols=meta_cols + feats, dtype={f: "float32" for f in feats})
        except NonNumericCell:      # locate the cells: read the features as text, then convert
            df = self._read(path, usecols=meta_cols + feats, dtype={f: str for f in feats})
        bad: dict[int, tuple[str, str]] = {}
        text: dict[str, str] = {}
        for f in feats:
            col = df[f]
            if pd.api.types.is_numeric_dtype(col):
                continue
            num = pd.to_numeric(col, errors="coerce")
            wrong = num.isna() & col.notna() & (col.astype(str).str.strip() != "")
            if wrong.any() and wrong.sum() == (col.notna() & (col.astype(str).str.strip() != "")).sum():
                text[f] = str(col[wrong].iloc[0])
                continue
            for i in np.flatnonzero(wrong.to_numpy()):
                bad.setdefault(int(i), (f, str(col.iloc[i])))
            df[f] = num.astype("float32")
        parquet = path.name.lower().endswith(".parquet")
        ctrl_values = set(cm.control_values)
        rows = [[f"{df[cm.plate].iloc[i]}:{df[cm.well].iloc[i]}", f, v, f"row {i + 1}" if parquet else f"line {i + 2}",
                 str(df[cm.control_column].iloc[i]) in ctrl_values] for i, (f, v) in sorted(bad.items())]
        if bad:
            df = df.drop(index=df.index[sorted(bad)]).reset_index(drop=True)
        return df, rows, text

    # -- records ---------------------------------------------------------------------------

    def records(self, skips: SkipLog) -> Iterator[Record]:
        q = self.quality = QualityReport(nan_threshold=self.p.nan_threshold)
        counts = self.counts = {"wells": 0, "control_wells": 0, "treated_wells": 0, "yielded": 0,
                                "skipped_no_controls": 0, "not_in_selected_splits": 0,
                                "wells_with_non_numeric_values": 0}
        self.split_counts = {}
        self.activity_counts = {"active": 0, "inactive": 0, "unknown": 0}
        comp = self._compound_table()
        no_smiles: set[str] = set()
        self.compound_counts = {"treated_wells_without_smiles": 0, "compounds_without_smiles": 0}
        for path in self.files:
            self._source = path.name.split(".")[0]
            prep = self._prepare(path)
            cm: ColumnMap = prep["columns"]
            feats, values, meta = prep["features"], prep["values"], prep["meta"]
            rep = prep["report"]
            self.layout_reports[path.name] = layout_for(feats).report()
            q.features = max(q.features, len(feats) + len(rep["dropped"]))
            for f, c in rep["nan_per_feature"].items():
                q.nan_per_feature[f] = q.nan_per_feature.get(f, 0) + c
            q.dropped_features.update({f"{path.name}:{f}": r for f, r in rep["dropped"].items()})
            for f, c in rep["zero_mad"].items():
                q.zero_mad[f] = q.zero_mad.get(f, 0) + c
            q.wells_with_nan += rep["wells_with_nan"]
            q.max_nan_per_well = max(q.max_nan_per_well, rep["max_nan_per_well"])
            q.plates_without_controls += rep["plates_without_controls"]
            self.unused_columns[path.name] = rep.get("columns_not_used", {})
            for rid, column, value, where, is_control in rep.get("bad_rows", []):
                counts["wells_with_non_numeric_values"] += 1
                skips.add(rid, "cellpainting_experiments", column, value,
                          f"{path.name} {where}: column '{column}' holds {value!r}, not a number; the well is left "
                          f"out{' (a control well: not part of its plate control state)' if is_control else ''}. "
                          f"Fix the cell, or leave it empty for a missing measurement")
            q.wells += len(meta)
            plates = meta[cm.plate].astype(str)
            q.plates += plates.nunique()
            counts["wells"] += len(meta)
            ctrl_mask = meta["_control"].to_numpy(dtype=bool)
            counts["control_wells"] += int(ctrl_mask.sum())
            rng_seed = self.p.split.seed
            rows = meta.to_dict("records")  # plain dicts: ~50x faster than .iloc per row
            for i in np.flatnonzero(~ctrl_mask):
                counts["treated_wells"] += 1
                row = rows[i]
                plate, well = str(row[cm.plate]), str(row[cm.well])
                rid = f"{plate}:{well}"
                cref = prep["control_rows"].get(plate)
                if cref is None:
                    counts["skipped_no_controls"] += 1
                    skips.add(rid, "cellpainting_experiments", "plate", plate,
                              f"plate {plate} has no control wells ({cm.control_column} in {cm.control_values}): "
                              "no pre-intervention state, cannot normalize")
                    continue
                fields = self._fields(row, cm, comp)
                if fields["smiles"] is None:
                    self.compound_counts["treated_wells_without_smiles"] += 1
                    no_smiles.add(str(fields["compound_id"]))
                part = assign_split(group_key(fields, self.p.split), self.p.split, rid)
                self.split_counts[part] = self.split_counts.get(part, 0) + 1
                if part not in self.p.include_splits:
                    counts["not_in_selected_splits"] += 1
                    continue
                if isinstance(cref, list):  # sample_well: one control well per record, seeded
                    r = np.random.default_rng(zlib.crc32(f"{rng_seed}|{rid}".encode())).integers(len(cref))
                    control = np.array(values[cref[r]])
                else:
                    control = np.array(prep["controls"][cref])
                fields["split"] = part
                if self.p.split.folds is not None:
                    fields["fold"] = fold_of(group_key(fields, self.p.split), self.p.split)
                dose = fields["dose_um"]
                act = float(prep["activity"][i])
                fields["activity"] = act if np.isfinite(act) else None
                fields["active"] = bool(np.isfinite(act) and act >= ACTIVE_PERCENTILE)
                context = np.array(prep["contexts"][prep["context_rows"][plate]]) if self.p.context else None
                fields["cell_profile"] = CellProfile(feats, np.array(values[i]), control,
                                                     float(dose) if isinstance(dose, float) and dose > 0 else 0.0,
                                                     plate, context=context, cell_line=fields["cell_line"],
                                                     time_h=fields["time_h"], activity=fields["activity"])
                counts["yielded"] += 1
                self.activity_counts["unknown" if fields["activity"] is None
                                     else "active" if fields["active"] else "inactive"] += 1
                yield Record(rid, fields)
        self.compound_counts["compounds_without_smiles"] = len(no_smiles)

    def _fields(self, row: dict[str, Any], cm: ColumnMap, comp: dict[str, dict] | None) -> dict[str, Any]:
        def get(col: str | None) -> Any:
            if col is None:
                return None
            v = row[col]
            return None if (v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))) else v

        cid = str(get(cm.compound_id))
        f = {"compound_id": cid, "compound_name": get(cm.compound_name), "smiles": get(cm.smiles),
             "inchikey": get(cm.inchikey), "moa": get(cm.moa), "target": get(cm.target),
             "plate": str(get(cm.plate)), "well": str(get(cm.well)),
             "cell_line": canonical_cell_line(get(cm.cell_line) or self.p.cell_line),
             "source": self.p.source or self._source}
        hours = as_number(get(cm.time_h)) if cm.time_h else None
        f["time_h"] = float(hours) if isinstance(hours, float) and math.isfinite(hours) and hours > 0 else \
            self.p.time_h if self.p.time_h is not None else (48.0 if self.embedded else None)  # LINCS cpg0004: 48 h
        # a mapped dose column: an empty cell is NaN and text stays text, so that the record
        # checks reject them naming the value (never a silent 0 or None)
        f["dose_um"] = as_number(row[cm.dose_um]) if cm.dose_um else None
        lookup = cid
        if self.p.compounds_match == "inchikey14":
            ik = f["inchikey"]
            lookup = str(ik)[:14] if isinstance(ik, str) and ik.strip() else inchikey14_of(f["smiles"])
        if comp is not None and lookup in comp:
            c = comp[lookup]
            for field_name, col in (("smiles", "smiles"), ("inchikey", "InChIKey"), ("compound_name", "pert_iname"),
                                    ("moa", "moa"), ("target", "target")):
                if f[field_name] is None and isinstance(c.get(col), str):
                    f[field_name] = c[col]
        if not isinstance(f["smiles"], str) or not f["smiles"].strip():
            f["smiles"] = None
        f["compound_key"] = inchikey14_of(f["smiles"]) or cid   # molecule identity across sources
        return f

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "profiles": ", ".join(f"{f.name} (sha256 {sha256(f)[:12]}…)" for f in self.files[:5])
                        + (f" and {len(self.files) - 5} more" if len(self.files) > 5 else ""),
            "compounds": self.compounds_path.name if self.compounds_path else "(SMILES from the profile file)",
            "normalization": (f"{self.p.normalize}: robust z = (x - median_DMSO) / (1.4826 MAD_DMSO) per plate "
                              f"and feature (MAD scope {self.p.mad_scope}, a plate's own MAD needs "
                              f"{self.p.min_plate_controls} control wells); control state = {self.p.control_summary} "
                              f"of the plate's DMSO wells"
                              + (" + the plate context (its DMSO median before normalisation, as a robust z against "
                                 "every DMSO well of the file) in both states" if self.p.context else "")),
        }
        if self.embedded:
            info["source"] = ("LINCS Cell Painting cpg0004 (Way et al. 2022), CC0 1.0 — embedded default subset, "
                              "see cgc_plugins/datasets/data/README.md")
        if self.counts:
            info["wells"] = self.counts
            info[f"split by {self.p.split.by} (seed {self.p.split.seed})"] = self.split_counts
            info["compounds without SMILES"] = self.compound_counts
            info["active wells (response above the 95th percentile of the plate's DMSO wells)"] = self.activity_counts
            info["data quality (NaN/inf, dropped features)"] = self.quality.as_dict()
            info["feature names -> cell graph"] = self.layout_reports
            if self.repeated_compound_keys:
                keys = self.repeated_compound_keys
                info["compound ids listed more than once in the compound table (first row used)"] = \
                    f"{len(keys)}: {', '.join(keys[:10])}{', ...' if len(keys) > 10 else ''}"
            info["columns not used (neither a feature nor in the column map)"] = {
                f: cols or "none" for f, cols in self.unused_columns.items()}
        return info


def unused_columns(sample: pd.DataFrame, feats: list[str], meta_cols: list[str]) -> dict[str, list[str]]:
    """The columns of a profile table that are neither features nor in the column map, grouped by
    why they are not used (``sample``: the first rows, to tell numbers from text)."""
    out: dict[str, list[str]] = {}
    used = set(feats) | set(meta_cols)
    for c in sample.columns:
        name = str(c)
        if name in used:
            continue
        if "Metadata" in name:
            why = "metadata, not in the column map"
        elif pd.api.types.is_numeric_dtype(sample[c]) and sample[c].notna().any():
            why = ("numeric, but not named like a CellProfiler measurement (<Cells|Cytoplasm|Nuclei>_<Family>_"
                   "<Measurement>) nor in the column map: rename it to use it as a feature")
        else:
            why = "text or empty, not in the column map"
        out.setdefault(why, []).append(name)
    return out


class PooledCellPainting(Dataset):
    """Several Cell Painting sources as one experiment dataset (``pooled_cellpainting``).

    Each source (LINCS, Dahlin 2023 U2OS, BBBC021 MCF-7, ...) is read by :class:`CellPaintingExperiments`
    with its own column map, compound table, cell line and time point: per-plate DMSO normalisation
    and the plate context happen within a source. Features are harmonised by the cell graph's fixed
    slots (docs/cell-graph.md): every CellProfiler feature feeds its (compartment, channel, slot)
    whatever the source, slots a source does not measure are absent (flag 0). The split is one
    over all sources, by default on the InChIKey connectivity block (``split.key: inchikey14``), so a
    molecule that several sources list is wholly in one part and one fold.
    """

    def __init__(self, params: PooledParams):
        self.p = params
        self.parts = [CellPaintingExperiments(ExperimentParams(
            profiles=src.profiles, columns=src.columns, compounds=src.compounds, compounds_key=src.compounds_key,
            compounds_match=src.compounds_match, normalize=src.normalize, control_summary=params.control_summary,
            mad_scope=params.mad_scope, min_plate_controls=params.min_plate_controls, context=params.context,
            nan_threshold=params.nan_threshold, cache_dir=params.cache_dir, split=params.split,
            include_splits=params.include_splits, cell_line=src.cell_line, time_h=src.time_h, source=src.name))
            for src in params.sources]

    def records(self, skips: SkipLog) -> Iterator[Record]:
        for part in self.parts:
            yield from part.records(skips)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"sources": ", ".join(s.name for s in self.p.sources),
                                "split": f"by {self.p.split.by} on {self.p.split.key} (seed {self.p.split.seed}"
                                         + (f", fold {self.p.split.fold} of {self.p.split.folds}"
                                            if self.p.split.folds else "") + ")",
                                "feature harmonisation": "CellProfiler names -> fixed (compartment, channel, slot) "
                                                         "slots; unmeasured slots absent (docs/cell-graph.md)"}
        for src, part in zip(self.p.sources, self.parts):
            for k, v in part.describe().items():
                info[f"{src.name}: {k}"] = v
        return info
