"""The RDKit molecule builder: feature values of known molecules checked by hand, salts, 3D,
invalid SMILES with RDKit's reason."""

from __future__ import annotations

import pytest
import torch

from cgc_framework.plugin.records import RecordError
from cgc_plugins.molecules.features import ATOM_VOCAB, BOND_VOCAB
from cgc_plugins.molecules.rdkit_builder import RDKitMoleculeBuilder, RDKitMoleculeParams

ATOM_COL = {name: i for i, name in enumerate(ATOM_VOCAB)}
BOND_COL = {name: i for i, name in enumerate(BOND_VOCAB)}
# vocabulary indices (see features.py): hybridization S, SP, SP2, SP3 -> 0..3; charge -5..5 -> 0..10
SP, SP2, SP3 = 1, 2, 3
SINGLE, DOUBLE, AROMATIC = 0, 1, 3


def atoms(smiles: str, **params) -> torch.Tensor:
    return RDKitMoleculeBuilder(RDKitMoleculeParams(**params)).build(smiles)["atom"].x_cat


def col(x_cat: torch.Tensor, name: str) -> list[int]:
    return x_cat[:, ATOM_COL[name]].tolist()


def test_aspirin_atoms_and_bonds():
    g = RDKitMoleculeBuilder().build("CC(=O)Oc1ccccc1C(=O)O")  # C9H8O4, 13 heavy atoms
    x = g["atom"].x_cat
    assert x.shape == (13, 9) and g["atom"].x.shape == (13, 1)
    assert col(x, "atomic_num") == [5, 5, 7, 7] + [5] * 7 + [7, 7]          # Z - 1: C=5, O=7
    assert col(x, "is_aromatic") == [0, 0, 0, 0] + [1] * 6 + [0, 0, 0]
    assert col(x, "hybridization") == [SP3, SP2, SP2, SP2] + [SP2] * 6 + [SP2, SP2, SP2]
    assert col(x, "num_hs") == [3, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1]
    assert col(x, "degree") == [1, 3, 1, 2, 3, 2, 2, 2, 2, 3, 3, 1, 1]
    assert sum(col(x, "is_in_ring")) == 6
    assert g["atom"].x[0, 0].item() == pytest.approx(12.011 / 100, abs=1e-4)   # mass in 100 Da
    assert g["atom"].x[2, 0].item() == pytest.approx(15.999 / 100, abs=1e-4)
    e = g["atom", "bond", "atom"]
    assert e.edge_index.shape == (2, 26)                          # 13 bonds, both directions
    assert e.edge_index[:, 0].tolist() == [0, 1] and e.edge_index[:, 1].tolist() == [1, 0]
    bt = e.edge_attr_cat[0::2, BOND_COL["bond_type"]].tolist()
    assert bt.count(AROMATIC) == 6 and bt.count(DOUBLE) == 2 and bt.count(SINGLE) == 5
    assert e.edge_attr_cat[0::2].tolist() == e.edge_attr_cat[1::2].tolist()   # reverse = same features
    assert g["compound"].num_nodes == 1
    assert g["atom", "in", "compound"].edge_index[0].tolist() == list(range(13))


def test_caffeine_aromatic_heterocycle():
    x = atoms("Cn1c(=O)c2c(ncn2C)n(C)c1=O")  # C8H10N4O2, 14 heavy atoms
    z = col(x, "atomic_num")
    assert z.count(5) == 8 and z.count(6) == 4 and z.count(7) == 2
    aromatic_n = [a for a, zz in zip(col(x, "is_aromatic"), z) if zz == 6]
    assert aromatic_n == [1, 1, 1, 1]                             # all four ring nitrogens aromatic
    methyls = [i for i in range(14) if z[i] == 5 and col(x, "num_hs")[i] == 3]
    assert len(methyls) == 3 and all(col(x, "hybridization")[i] == SP3 for i in methyls)
    assert sum(col(x, "is_in_ring")) == 9                          # fused 6+5 rings share 2 atoms


def test_pyridine_and_nitrile():
    x = atoms("c1ccncc1")
    assert col(x, "atomic_num")[3] == 6 and col(x, "num_hs")[3] == 0 and all(col(x, "is_aromatic"))
    x = atoms("CC#N")
    assert col(x, "hybridization") == [SP3, SP, SP]


def test_stereocentre_and_double_bond_stereo():
    l_ala, d_ala = atoms("N[C@@H](C)C(=O)O"), atoms("N[C@H](C)C(=O)O")
    # SMILES '@@' is RDKit's CHI_TETRAHEDRAL_CW (index 1), '@' is CCW (index 2)
    assert col(l_ala, "chirality")[1] == 1 and col(d_ala, "chirality")[1] == 2
    assert col(l_ala, "chirality")[0] == 0                         # N: unspecified
    g = RDKitMoleculeBuilder().build("F/C=C/F")                    # trans-1,2-difluoroethene
    stereo = g["atom", "bond", "atom"].edge_attr_cat[:, BOND_COL["stereo"]].tolist()
    assert stereo[2] == 3 and stereo[0] == 0                       # double bond E (index 3), others none


def test_charged_species_and_other_bucket():
    x = atoms("C[N+](C)(C)C")                                      # tetramethylammonium
    assert col(x, "formal_charge")[1] == 6 and col(x, "degree")[1] == 4      # +1 -> index 6
    x = atoms("CC(=O)[O-]")
    assert col(x, "formal_charge")[3] == 4 and col(x, "num_hs")[3] == 0      # -1 -> index 4
    x = atoms("*C")                                                 # dummy atom Z=0: "other"
    assert col(x, "atomic_num")[0] == len(ATOM_VOCAB["atomic_num"])


def test_salts_largest_fragment_or_keep():
    assert atoms("CC(=O)[O-].[Na+]").shape[0] == 4
    x = atoms("CC(=O)[O-].[Na+]", fragments="keep")
    assert x.shape[0] == 5 and col(x, "atomic_num")[4] == 10 and col(x, "formal_charge")[4] == 6


def test_conformer_3d_bond_lengths_in_angstrom():
    b = RDKitMoleculeBuilder(RDKitMoleculeParams(conformer_3d=True))
    spec = b.schema().edge_types[("atom", "bond", "atom")]
    assert spec.continuous_dim == 1 and spec.features[-1].unit == "angstrom"
    e = b.build("CC#N")["atom", "bond", "atom"]
    assert e.edge_attr.shape == (4, 1)
    assert e.edge_attr[0, 0].item() == pytest.approx(1.46, abs=0.06)   # C-C single
    assert e.edge_attr[2, 0].item() == pytest.approx(1.16, abs=0.04)   # C#N triple
    assert RDKitMoleculeBuilder().build("CC#N")["atom", "bond", "atom"].edge_attr.shape == (4, 0)
    assert RDKitMoleculeBuilder().schema() != b.schema()


@pytest.mark.parametrize("smiles, reason", [
    ("c1cccc1", "Can't kekulize mol"),
    ("C(C)(C)(C)(C)C", "Explicit valence for atom # 0 C, 5, is greater than permitted"),
    ("C1CC", "unclosed ring"),
    ("", "empty SMILES"),
    ("   ", "empty SMILES"),
])
def test_invalid_smiles_give_rdkit_reason(smiles, reason):
    with pytest.raises(RecordError, match="(invalid|empty) SMILES") as e:
        RDKitMoleculeBuilder().build(smiles)
    assert reason in str(e.value)
    assert "[" not in str(e.value).split("SMILES")[1][:3]          # timestamps are stripped


def test_output_conforms_to_schema():
    b = RDKitMoleculeBuilder()
    g = b.build("O=C(O)c1ccccc1Cl")
    b.schema().conform(g)
    b.schema().validate(g)


def test_params_are_strict():
    with pytest.raises(Exception, match="extra"):
        RDKitMoleculeParams(conformer=True)


@pytest.mark.parametrize("smiles", ["[2H]C([2H])([2H])O", "[13CH4]", "C[13C](=O)O", "OC([2H])=O"])
def test_isotope_masses_come_from_rdkit(smiles):
    """SMILES with isotope labels take each atom's mass from RDKit (isotope-aware); others use the
    periodic-table lookup, which equals RDKit's mass for isotope 0."""
    from rdkit import Chem

    g = RDKitMoleculeBuilder(RDKitMoleculeParams(fragments="keep")).build(smiles)
    mol = Chem.MolFromSmiles(smiles)
    want = torch.tensor([[a.GetMass() / 100] for a in mol.GetAtoms()], dtype=torch.float32)
    assert torch.equal(g["atom"].x, want)


def test_table_features_equal_rdkit_per_atom_calls_on_hiv(shared_data):
    """Degree (from the bond list), ring membership (RingInfo) and masses (periodic table) equal
    RDKit's per-atom ``GetDegree`` / ``IsInRing`` / ``GetMass`` on 2,000 HIV molecules."""
    import pandas as pd
    from rdkit import Chem

    from cgc_plugins.molecules.features import byte_tables, encode

    table = byte_tables(ATOM_VOCAB)
    smiles = pd.read_csv(shared_data / "moleculenet/HIV.csv")["smiles"].astype(str).tolist()[:2000]
    b = RDKitMoleculeBuilder(RDKitMoleculeParams(fragments="keep"))
    checked = 0
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            continue
        g = b.build(s)
        raw = torch.tensor([[a.GetAtomicNum(), int(a.GetChiralTag()), a.GetDegree(), a.GetFormalCharge(),
                             a.GetTotalNumHs(), a.GetNumRadicalElectrons(), int(a.GetHybridization()),
                             int(a.GetIsAromatic()), int(a.IsInRing())] for a in mol.GetAtoms()]).numpy()
        assert torch.equal(g["atom"].x_cat, torch.from_numpy(encode((raw & 0xFF).astype("uint8"), table))), s
        assert torch.equal(g["atom"].x[:, 0], torch.tensor([a.GetMass() / 100 for a in mol.GetAtoms()],
                                                           dtype=torch.float32)), s
        ring = [int(bd.IsInRing()) for bd in mol.GetBonds()]
        assert g["atom", "bond", "atom"].edge_attr_cat[0::2, BOND_COL["is_in_ring"]].tolist() == ring, s
        checked += 1
    assert checked > 1900


# -- the binary reader (Mol.ToBinary) and batched building ------------------------------------

DECLINED = {"[13CH3]C": "isotope", "C[CH2:1]O": "atom map", "C" * 300: "more than 255 atoms",
            "[2H]C": "isotope on a kept hydrogen", "[*]C": "dummy atom"}
PANEL_EXTRA = ["C[C@@H]1CC[C@H](O)CC1", "CC.O", "[Na+].[Cl-]", "c1ccc2c(c1)[nH]c1ccccc12",
               "O=C([O-])C[N+](C)(C)C", "C1=CC=CC=C1"]


def test_binary_reader_equals_python_api_on_the_panel():
    from rdkit import Chem

    from cgc_plugins.molecules.rdkit_pickle import REFERENCE_PANEL, api_fields, decode, fast_decode_enabled

    assert fast_decode_enabled()                      # this RDKit's format is the one the reader knows
    for smiles in REFERENCE_PANEL + tuple(PANEL_EXTRA):
        mol = Chem.MolFromSmiles(smiles)
        fields = decode(mol.ToBinary())
        if smiles in DECLINED:
            continue
        assert fields is not None and fields.equals(api_fields(mol)), smiles
    for smiles, why in DECLINED.items():
        assert decode(Chem.MolFromSmiles(smiles).ToBinary()) is None, why
    aspirin = decode(Chem.MolFromSmiles("CC(=O)[O-]").ToBinary())
    assert aspirin.atoms[3].tolist() == [8, 0, 255, 0, 0, 3, 0]   # O-: Z 8, charge -1 as byte, SP2
    naphthalene = Chem.MolFromSmiles("c1ccc2ccccc2c1")          # keep the Mol alive for RingInfo
    assert [tuple(r) for r in decode(naphthalene.ToBinary()).rings] \
        == [tuple(r) for r in naphthalene.GetRingInfo().AtomRings()] and len(naphthalene.GetRingInfo().AtomRings()) == 2


def _same_graph(a, b) -> bool:
    if set(a.node_types) != set(b.node_types) or set(a.edge_types) != set(b.edge_types):
        return False
    for key in a.node_types + a.edge_types:
        if set(a[key].keys()) != set(b[key].keys()):
            return False
        for k in a[key].keys():
            x, y = a[key][k], b[key][k]
            if isinstance(x, torch.Tensor):
                if not (x.dtype == y.dtype and torch.equal(x, y)):
                    return False
            elif x != y:
                return False
    return True


def test_build_many_equals_build_and_the_python_api_path(monkeypatch):
    """Batched building, one-by-one building and the Python-API fallback give identical graphs
    (declined molecules included); invalid SMILES get their RecordError in place."""
    import cgc_plugins.molecules.rdkit_builder as rb
    from cgc_plugins.molecules.rdkit_pickle import REFERENCE_PANEL

    values = list(REFERENCE_PANEL) + PANEL_EXTRA + list(DECLINED) + ["not a smiles", "", "C1CC"]
    for params in (RDKitMoleculeParams(), RDKitMoleculeParams(fragments="keep")):
        b = RDKitMoleculeBuilder(params)
        many = b.build_many(values)
        assert len(many) == len(values)
        monkeypatch.setattr(rb, "fast_decode_enabled", lambda: False)
        slow = b.build_many(values)
        monkeypatch.undo()
        for v, g, s in zip(values, many, slow):
            try:
                one = b.build(v)
            except RecordError as exc:
                assert isinstance(g, RecordError) and str(g) == str(exc) and str(s) == str(exc), v
                continue
            assert _same_graph(g, one) and _same_graph(s, one), v
            assert one["atom"].x_cat.data_ptr() != g["atom"].x_cat.data_ptr()
    graphs = RDKitMoleculeBuilder().build_many(["CCO", "c1ccccc1"])
    assert graphs[0]["atom"].x_cat.untyped_storage().nbytes() == 3 * 9 * 8   # own copy, not a chunk view


def test_batched_building_equals_per_molecule_api_reads_on_hiv(shared_data):
    """On 5,000 HIV SMILES: the binary reader equals RDKit's Python API field by field, and the
    batched graphs equal the Python-API path's graphs."""
    import pandas as pd
    from rdkit import Chem

    import cgc_plugins.molecules.rdkit_builder as rb
    from cgc_plugins.molecules.rdkit_pickle import api_fields, decode

    smiles = pd.read_csv(shared_data / "moleculenet/HIV.csv")["smiles"].astype(str).tolist()[:5000]
    checked = 0
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            continue
        fields = decode(mol.ToBinary())
        assert fields is not None and fields.equals(api_fields(mol)), s
        checked += 1
    assert checked > 4900
    b = RDKitMoleculeBuilder()
    fast = b.build_many(smiles[:1000])
    slow = [rb.graphs_of([rb.MoleculeFields(api_fields(b.mol(s)), None, None)])[0]
            if not isinstance(g, RecordError) else g for s, g in zip(smiles[:1000], fast)]
    assert all(isinstance(g, RecordError) or _same_graph(g, h) for g, h in zip(fast, slow))
