"""CellProfiler feature names -> (compartment, family, measurement, channel(s), parameters).

CellProfiler names a per-object measurement ``<Object>_<Family>_<Measurement>[_<Channel>][_<params>]``,
e.g. ``Nuclei_Intensity_MeanIntensity_DNA``, ``Cells_Texture_Contrast_RNA_10_0``,
``Cytoplasm_Granularity_6_Mito``, ``Cells_RadialDistribution_FracAtD_ER_3of4``,
``Cells_Correlation_K_Mito_ER``, ``Nuclei_AreaShape_Zernike_3_1``. Channel (image) names differ per
stain set and pipeline (``DNA``/``CorrDAPI``/``OrigHoechst``); they are mapped to a canonical vocabulary
(:data:`CHANNELS`) by :func:`canonical_channel`.

Every name gets a :class:`ParsedFeature` whose ``status`` is

* ``"slot"``: it feeds one slot of the fixed cell-graph layout (:mod:`.layout`);
* ``"ignored"``: parsed, but bookkeeping rather than morphology (object numbers, pixel positions,
  ``Parent_``/``Number_``) — counted in the run summary;
* ``"unparsed"``: the name does not follow the grammar (unknown compartment, family or shape) —
  listed in the run summary, never silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COMPARTMENTS: tuple[str, ...] = ("Cells", "Cytoplasm", "Nuclei")
"""Compartment vocabulary (categorical ``compartment`` feature; index ``len`` = other)."""

CHANNELS: tuple[str, ...] = ("DNA", "ER", "RNA", "AGP", "Mito", "Tubulin", "Actin", "Brightfield")
"""Canonical stain/channel vocabulary (categorical ``channel`` feature; index ``len`` = other)."""

# image-name spellings seen in LINCS/JUMP (DNA, ER, RNA, AGP, Mito), BBBC021 (DAPI, Tubulin, Actin),
# CDRP (Hoechst, ERSyto, ERSytoBleed, Ph_golgi) and Phenix exports (Brightfield).
CHANNEL_ALIASES: dict[str, str] = {
    "dna": "DNA", "dapi": "DNA", "hoechst": "DNA", "nuclei": "DNA",
    "er": "ER", "ersyto": "ER", "concanavalin": "ER",
    "rna": "RNA", "ersytobleed": "RNA", "syto14": "RNA",
    "agp": "AGP", "phgolgi": "AGP", "ph_golgi": "AGP", "golgi": "AGP",
    "mito": "Mito", "mitotracker": "Mito",
    "tub": "Tubulin", "tubulin": "Tubulin",
    "actin": "Actin", "phalloidin": "Actin",
    "brightfield": "Brightfield", "bf": "Brightfield",
}
_PREFIXES = ("Corr", "Orig", "Illum", "Mask")

INTENSITY = ("IntegratedIntensity", "MeanIntensity", "StdIntensity", "MinIntensity", "MaxIntensity",
             "IntegratedIntensityEdge", "MeanIntensityEdge", "StdIntensityEdge", "MinIntensityEdge",
             "MaxIntensityEdge", "MassDisplacement", "LowerQuartileIntensity", "MedianIntensity",
             "MADIntensity", "UpperQuartileIntensity")
TEXTURE = ("AngularSecondMoment", "Contrast", "Correlation", "DifferenceEntropy", "DifferenceVariance",
           "Entropy", "InfoMeas1", "InfoMeas2", "InverseDifferenceMoment", "SumAverage", "SumEntropy",
           "SumVariance", "Variance", "Gabor")
GRANULARITY_SCALES = 16
RADIAL = ("FracAtD", "MeanFrac", "RadialCV")
RADIAL_BINS = 4
AREASHAPE = ("Area", "BoundingBoxArea", "Compactness", "ConvexArea", "Eccentricity", "EquivalentDiameter",
             "EulerNumber", "Extent", "FormFactor", "MajorAxisLength", "MaxFeretDiameter", "MaximumRadius",
             "MeanRadius", "MedianRadius", "MinFeretDiameter", "MinorAxisLength", "Orientation",
             "Perimeter", "Solidity")
ZERNIKE_DEGREES = 10
NEIGHBORS = ("NumberOfNeighbors", "PercentTouching", "FirstClosestDistance", "SecondClosestDistance",
             "AngleBetweenNeighbors")
CORRELATION = ("Correlation", "Slope", "Overlap", "K", "Manders", "RWC", "Costes")
SYMMETRIC_CORRELATION = ("Correlation", "Overlap")

COMPARTMENT_SLOTS: tuple[str, ...] = (
    tuple(f"AreaShape_{m}" for m in AREASHAPE)
    + tuple(f"AreaShape_Zernike_n{n}" for n in range(ZERNIKE_DEGREES))
    + tuple(f"Neighbors_{m}" for m in NEIGHBORS) + ("Children_Count",))
"""Fixed value slots of a ``compartment`` node (35)."""

CHANNEL_SLOTS: tuple[str, ...] = (
    tuple(f"Intensity_{m}" for m in INTENSITY) + tuple(f"Texture_{m}" for m in TEXTURE)
    + tuple(f"Granularity_{k}" for k in range(1, GRANULARITY_SCALES + 1))
    + tuple(f"RadialDistribution_{m}_q{q}" for m in RADIAL for q in range(1, RADIAL_BINS + 1)))
"""Fixed value slots of a ``channel`` node (57)."""

CORRELATION_SLOTS: tuple[str, ...] = tuple(f"Correlation_{m}" for m in CORRELATION)
"""Fixed value slots of a ``(channel, correlates, channel)`` edge (7)."""

_COMP_IDX = {s: i for i, s in enumerate(COMPARTMENT_SLOTS)}
_CHAN_IDX = {s: i for i, s in enumerate(CHANNEL_SLOTS)}
_CORR_IDX = {s: i for i, s in enumerate(CORRELATION_SLOTS)}
_IGNORED_FAMILIES = ("Location", "Number", "Parent")
_TOKEN = r"([A-Za-z0-9]+)"


@dataclass(frozen=True)
class ParsedFeature:
    """One CellProfiler feature name, parsed.

    ``kind`` is ``"compartment"`` (slot of the compartment node), ``"channel"`` (slot of the
    node of ``channel`` in ``compartment``) or ``"correlation"`` (slot of the edge ``channel`` ->
    ``channel2`` in ``compartment``); ``slot`` indexes the matching ``*_SLOTS`` tuple.
    """

    name: str
    status: str                    # "slot" | "ignored" | "unparsed"
    compartment: str = ""
    family: str = ""
    kind: str = ""
    slot: int = -1
    channel: str = ""              # canonical channel name
    channel2: str = ""
    raw_channel: str = ""
    reason: str = ""


def canonical_channel(raw: str) -> str:
    """Image name -> canonical channel (``CorrDAPI`` -> ``DNA``); unknown names are returned
    unchanged (they become nodes whose categorical channel is "other")."""
    name = raw
    for p in _PREFIXES:
        if name.startswith(p) and len(name) > len(p):
            name = name[len(p):]
            break
    return CHANNEL_ALIASES.get(name.lower(), CHANNEL_ALIASES.get(raw.lower(), name))


def _channel_feature(f: str, comp: str, fam: str, slot_name: str, ch: str, **kw) -> ParsedFeature:
    return ParsedFeature(f, "slot", comp, fam, "channel", _CHAN_IDX[slot_name], canonical_channel(ch),
                         raw_channel=ch, **kw)


def parse_feature(name: str) -> ParsedFeature:
    """Parse one CellProfiler feature name (see the module docstring)."""
    parts = name.split("_", 2)
    if len(parts) < 3:
        return ParsedFeature(name, "unparsed", reason="not <Object>_<Family>_<Measurement>")
    comp, fam, rest = parts
    if comp not in COMPARTMENTS:
        return ParsedFeature(name, "unparsed", comp, fam, reason=f"unknown compartment '{comp}'")
    bad = lambda why: ParsedFeature(name, "unparsed", comp, fam, reason=why)  # noqa: E731
    if fam in _IGNORED_FAMILIES:
        return ParsedFeature(name, "ignored", comp, fam, reason=f"{fam} is bookkeeping/position")
    if fam == "AreaShape":
        if rest in AREASHAPE:
            return ParsedFeature(name, "slot", comp, fam, "compartment", _COMP_IDX[f"AreaShape_{rest}"])
        m = re.fullmatch(r"Zernike_(\d+)_(\d+)", rest)
        if m and int(m.group(1)) < ZERNIKE_DEGREES:
            return ParsedFeature(name, "slot", comp, fam, "compartment",
                                 _COMP_IDX[f"AreaShape_Zernike_n{int(m.group(1))}"])
        if re.fullmatch(r"(Center|BoundingBox(Minimum|Maximum))_[XYZ]|Zernike_\d+_\d+|"
                        r"(Spatial|Central|Normalized|Inertia)Moment.*|InertiaTensor.*", rest):
            return ParsedFeature(name, "ignored", comp, fam, reason="position/moment bookkeeping")
        return bad(f"unknown AreaShape measurement '{rest}'")
    if fam == "Neighbors":
        m = re.fullmatch(r"([A-Za-z]+)_(\w+)", rest)
        if m and m.group(1) in NEIGHBORS:
            return ParsedFeature(name, "slot", comp, fam, "compartment", _COMP_IDX[f"Neighbors_{m.group(1)}"])
        if m and m.group(1) in ("FirstClosestObjectNumber", "SecondClosestObjectNumber"):
            return ParsedFeature(name, "ignored", comp, fam, reason="object numbers are bookkeeping")
        return bad(f"unknown Neighbors measurement '{rest}'")
    if fam == "Children":
        if rest.endswith("_Count"):
            return ParsedFeature(name, "slot", comp, fam, "compartment", _COMP_IDX["Children_Count"])
        return bad("Children feature without _Count")
    if fam == "Intensity":
        m = re.fullmatch(r"([A-Za-z]+)_" + r"(\w+)", rest)
        if m and m.group(1) in INTENSITY:
            return _channel_feature(name, comp, fam, f"Intensity_{m.group(1)}", m.group(2))
        return bad(f"unknown Intensity measurement '{rest}'")
    if fam == "Texture":
        m = (re.fullmatch(r"Gabor_" + _TOKEN + r"_(\d+)(?:_\d+)?", rest)
             or re.fullmatch(r"([A-Za-z0-9]+)_" + _TOKEN + r"_(\d+)_(\d+)", rest))
        if m and rest.startswith("Gabor_"):
            return _channel_feature(name, comp, fam, "Texture_Gabor", m.group(1))
        if m and m.group(1) in TEXTURE:
            return _channel_feature(name, comp, fam, f"Texture_{m.group(1)}", m.group(2))
        return bad(f"unknown Texture measurement '{rest}'")
    if fam == "Granularity":
        m = re.fullmatch(r"(\d+)_(\w+)", rest)
        if m and 1 <= int(m.group(1)) <= GRANULARITY_SCALES:
            return _channel_feature(name, comp, fam, f"Granularity_{int(m.group(1))}", m.group(2))
        return bad(f"Granularity scale outside 1..{GRANULARITY_SCALES} or no channel")
    if fam == "RadialDistribution":
        m = re.fullmatch(r"([A-Za-z]+)_(\w+)_(\d+)of(\d+)", rest)
        if m and m.group(1) in RADIAL and 1 <= int(m.group(3)) <= int(m.group(4)):
            k, n = int(m.group(3)), int(m.group(4))
            q = -(-RADIAL_BINS * k // n)  # ring k of n -> quarter 1..4 (ceil)
            return _channel_feature(name, comp, fam, f"RadialDistribution_{m.group(1)}_q{q}", m.group(2))
        if re.fullmatch(r"Zernike(Magnitude|Phase)_\w+", rest):
            return ParsedFeature(name, "ignored", comp, fam, reason="radial Zernike moments have no slot")
        return bad(f"unknown RadialDistribution measurement '{rest}'")
    if fam == "Correlation":
        m = re.fullmatch(r"([A-Za-z]+)_" + _TOKEN + "_" + _TOKEN, rest)
        if m and m.group(1) in CORRELATION:
            a, b = canonical_channel(m.group(2)), canonical_channel(m.group(3))
            if a == b:
                return bad("correlation of a channel with itself")
            return ParsedFeature(name, "slot", comp, fam, "correlation", _CORR_IDX[f"Correlation_{m.group(1)}"],
                                 a, b, raw_channel=f"{m.group(2)}|{m.group(3)}")
        return bad(f"unknown Correlation measurement or channel pair '{rest}'")
    return bad(f"unknown measurement family '{fam}'")


def is_feature_column(name: str) -> bool:
    """Columns that are CellProfiler measurements of an object (anything but metadata)."""
    head = name.split("_", 1)[0]
    return head in COMPARTMENTS or (bool(re.fullmatch(r"[A-Z][A-Za-z]+", head)) and "_" in name
                                    and name.split("_")[1] in ("AreaShape", "Intensity", "Texture",
                                                               "Granularity", "RadialDistribution",
                                                               "Correlation", "Neighbors", "Location"))
