"""Cell graph from CellProfiler profiles: name parsing, layout, normalization, builder (real files)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cgc_framework.plugin.records import RecordError, SkipLog
from cgc_plugins.cells.feature_names import CHANNELS, parse_feature
from cgc_plugins.cells.layout import layout_for
from cgc_plugins.cells.normalize import robust_mad_normalize
from cgc_plugins.cells.profile_builder import CellProfile, ProfileCellBuilder, cell_profile_schema
from cgc_plugins.datasets.experiment import CellPaintingExperiments, ExperimentParams
from cgc_plugins.datasets.lincs import EMBEDDED_PROFILES

BBBC021 = "cellpainting/profiles/bbbc021_MCF7_per_well_mean_annotated.csv.gz"
LINCS = "cellpainting/profiles/lincs_cpg0004_A549_48h_SQ00015054_normalized_feature_select.csv.gz"


@pytest.mark.parametrize("name, expect", [
    ("Nuclei_Intensity_MeanIntensity_DNA", ("channel", "Nuclei", "DNA", "Intensity_MeanIntensity")),
    ("Cells_Texture_Contrast_CorrActin_10_0", ("channel", "Cells", "Actin", "Texture_Contrast")),
    ("Cytoplasm_Texture_Gabor_Mito_20", ("channel", "Cytoplasm", "Mito", "Texture_Gabor")),
    ("Cytoplasm_Granularity_6_CorrTub", ("channel", "Cytoplasm", "Tubulin", "Granularity_6")),
    ("Cells_RadialDistribution_FracAtD_ER_3of4", ("channel", "Cells", "ER", "RadialDistribution_FracAtD_q3")),
    ("Nuclei_AreaShape_Zernike_3_1", ("compartment", "Nuclei", "", "AreaShape_Zernike_n3")),
    ("Cells_Correlation_K_Mito_ER", ("correlation", "Cells", "Mito", "Correlation_K")),
    ("Nuclei_Intensity_MeanIntensity_OrigHoechst", ("channel", "Nuclei", "DNA", "Intensity_MeanIntensity")),
])
def test_cellprofiler_names_parse_to_node_and_slot(name, expect):
    from cgc_plugins.cells.feature_names import CHANNEL_SLOTS, COMPARTMENT_SLOTS, CORRELATION_SLOTS
    p = parse_feature(name)
    kind, comp, channel, slot = expect
    slots = {"channel": CHANNEL_SLOTS, "compartment": COMPARTMENT_SLOTS, "correlation": CORRELATION_SLOTS}[kind]
    assert (p.status, p.kind, p.compartment, p.channel, slots[p.slot]) == ("slot", kind, comp, channel, slot)


@pytest.mark.parametrize("name, status, reason", [
    ("Vesicles_AreaShape_Area", "unparsed", "unknown compartment 'Vesicles'"),
    ("Cells_Intensity_FooBar_DNA", "unparsed", "unknown Intensity measurement"),
    ("Cells_Wobble_Thing_DNA", "unparsed", "unknown measurement family 'Wobble'"),
    ("Nuclei_Location_Center_X", "ignored", "bookkeeping"),
])
def test_unknown_names_are_reported_not_dropped(name, status, reason):
    p = parse_feature(name)
    assert p.status == status and reason in p.reason


def test_robust_mad_matches_the_pycytominer_formula():
    rng = np.random.default_rng(0)
    v = rng.normal(5, 3, size=(50, 4)).astype(np.float32)
    v[:, 3] = 1.0  # constant in controls -> zero MAD, reported
    ctrl = np.zeros(50, bool)
    ctrl[:20] = True
    z, zero = robust_mad_normalize(v, ctrl)
    ref = v[:20, 0]
    med, mad = np.median(ref), 1.4826 * np.median(np.abs(ref - np.median(ref)))
    np.testing.assert_allclose(z[:, 0], (v[:, 0] - med) / mad, rtol=1e-5)
    assert zero.tolist() == [False, False, False, True] and np.isnan(z[:, 3]).all()


def _graphs(ds: CellPaintingExperiments):
    skips = SkipLog()
    recs = list(ds.records(skips))
    b = ProfileCellBuilder()
    return recs, [b.build(r.fields["cell_profile"]) for r in recs], skips


def test_lincs_profile_graph_counts_and_dims():
    recs, graphs, skips = _graphs(CellPaintingExperiments())
    assert len(recs) == 360 and len(skips) == 0
    schema = cell_profile_schema()
    g = graphs[0]
    schema.validate(schema.conform(g))
    assert g["compartment"].x.shape == g["compartment"].y.shape == (3, 70)
    assert g["channel"].x.shape == g["channel"].y.shape == (15, 114)
    assert g["channel", "correlates", "channel"].edge_attr.shape == (56, 14)   # 28 channel pairs x 2
    assert g["channel", "in", "compartment"].edge_index.shape == (2, 15)
    assert g["compartment", "contains", "compartment"].edge_index.tolist() == [[0, 0], [1, 2]]
    # 5 Cell Painting channels in each of 3 compartments
    chans = sorted(set(g["channel"].x_cat[:, 0].tolist()))
    assert chans == [CHANNELS.index(c) for c in ("DNA", "ER", "RNA", "AGP", "Mito")]
    assert g.dose_um.dtype == torch.float32 and g.dose_um.shape == (1,)
    # present flags: LINCS level-4b keeps 452 slot features; flags are identical in x and y (no NaN)
    assert torch.equal(g["channel"].x[:, 57:], g["channel"].y[:, 57:])
    assert 0 < g["channel"].x[:, 57:].sum() < 15 * 57


def test_dmso_median_zero_and_mad_one_after_normalization():
    ds = CellPaintingExperiments()
    prep = ds._prepare(EMBEDDED_PROFILES)
    z, ctrl = np.asarray(prep["values"]), prep["meta"]["_control"].to_numpy(bool)
    assert ctrl.sum() == 24
    med = np.median(z[ctrl], axis=0)
    mad = 1.4826 * np.median(np.abs(z[ctrl] - med), axis=0)
    assert np.abs(med).max() < 1e-5
    np.testing.assert_allclose(mad, 1.0, atol=1e-4)
    # the control state x of every record is that median (= 0): the plate's DMSO summary
    recs = list(ds.records(SkipLog()))
    assert np.abs(recs[0].fields["cell_profile"].control).max() < 1e-5


@pytest.mark.shared_data
def test_bbbc021_three_stains_give_absent_channel_nodes(shared_data):
    ds = CellPaintingExperiments(ExperimentParams(profiles=[shared_data / BBBC021]))
    recs, graphs, skips = _graphs(ds)
    assert len(recs) == 302 and len(skips) == 0            # 632 wells - 330 DMSO
    g = graphs[0]
    assert g["compartment"].num_nodes == 3 and g["channel"].num_nodes == 7
    names = {CHANNELS[i] for i in g["channel"].x_cat[:, 0].tolist()}
    assert names == {"DNA", "Tubulin", "Actin"}              # no ER/RNA/AGP/Mito nodes
    assert g["channel", "correlates", "channel"].edge_index.shape == (2, 0)
    assert g["channel"].x.shape[1] == 114 and g["compartment"].x.shape[1] == 70
    rep = ds.describe()
    assert rep["data quality (NaN/inf, dropped features)"]["plates"] == 55
    # per-well means have features constant in DMSO (EulerNumber, Children counts): zero MAD, reported
    assert rep["data quality (NaN/inf, dropped features)"]["features_with_zero_DMSO_MAD (plates)"][
        "Nuclei_Children_Cytoplasm_Count"] == 52


@pytest.mark.shared_data
def test_lincs_shared_copy_matches_embedded_layout(shared_data):
    lay = layout_for(tuple(c for c in pd.read_csv(shared_data / LINCS, nrows=0).columns
                           if c.startswith(("Cells_", "Cytoplasm_", "Nuclei_"))))
    r = lay.report()
    assert (r["features"], r["mapped_to_slots"], r["ignored_bookkeeping"], r["unparsed"]) == (454, 452, 2, 0)
    assert r["nodes"] == {"compartment": 3, "channel": 15} and r["correlated_channel_pairs"] == 28


def _edited_plate(tmp_path: Path) -> Path:
    df = pd.read_csv(EMBEDDED_PROFILES)
    df = df.assign(**{"Cells_Intensity_MeanIntensity_DNA": np.nan,    # an all-NaN feature
                      "Vesicles_AreaShape_Area": 1.0,                   # unknown compartment
                      "Cells_Intensity_FooBar_DNA": 1.0})               # unknown measurement
    second = df[df["Metadata_broad_sample"] != "DMSO"].assign(Metadata_Plate="NOCTRL")  # plate without controls
    both = pd.concat([df, second], ignore_index=True)
    both.loc[:4, "Nuclei_Intensity_MassDisplacement_DNA"] = np.nan     # 5 NaN wells (< 5%): kept, counted
    out = tmp_path / "edited.csv.gz"
    with gzip.open(out, "wt") as fh:
        both.to_csv(fh, index=False)
    return out


def test_bad_inputs_are_reported_and_counted(tmp_path):
    ds = CellPaintingExperiments(ExperimentParams(profiles=[_edited_plate(tmp_path)],
                                                  compounds=Path(EMBEDDED_PROFILES).parent / "compounds.csv.gz"))
    skips = SkipLog()
    recs = list(ds.records(skips))
    assert len(recs) == 360
    # missing controls: every treated well of the plate is a skipped record with the reason
    assert len(skips) == 360 and all("NOCTRL has no control wells" in e.reason for e in skips.entries)
    info = ds.describe()
    q = info["data quality (NaN/inf, dropped features)"]
    assert q["plates_without_DMSO_controls"] == ["NOCTRL"]
    assert list(q["features_dropped (NaN fraction > 0.05)"]) == ["edited.csv.gz:Cells_Intensity_MeanIntensity_DNA"]
    assert q["nan_or_inf_values_per_feature (top 10)"]["Nuclei_Intensity_MassDisplacement_DNA"] == 5
    assert q["wells_with_nan_or_inf"] == 5
    lay = info["feature names -> cell graph"]["edited.csv.gz"]
    assert lay["unparsed"] == 2 and any("Vesicles" in n for n in lay["unparsed_names"])
    # a compound with no SMILES: counted by the dataset, yielded with smiles None (molecule skip)
    assert info["compounds without SMILES"] == {"treated_wells_without_smiles": 18, "compounds_without_smiles": 3}
    assert sum(r.fields["smiles"] is None for r in recs) == 18
    # NaN in a treated well -> that slot's present flag is 0 in y where no other feature fills it
    g = ProfileCellBuilder().build(recs[0].fields["cell_profile"])
    assert torch.isfinite(g["channel"].y).all()


def test_builder_rejects_a_profile_without_any_measurement():
    feats = ("Cells_AreaShape_Area", "Nuclei_Intensity_MeanIntensity_DNA")
    nan = np.full(2, np.nan, np.float32)
    with pytest.raises(RecordError, match="measured slots"):
        ProfileCellBuilder().build(CellProfile(feats, nan, np.zeros(2, np.float32), 1.0, "P"))


def test_cell_profile_string_identifies_its_content_for_the_featurization_cache():
    from cgc_framework.engine.cache import content_digest
    recs = list(CellPaintingExperiments().records(SkipLog()))
    b = ProfileCellBuilder()
    keys = {content_digest(b, r.fields["cell_profile"]) for r in recs}
    assert len(keys) == len(recs)          # every well its own key (no cache collisions)
    assert content_digest(b, recs[0].fields["cell_profile"]) == content_digest(b, recs[0].fields["cell_profile"])
