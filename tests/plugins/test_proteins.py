"""The Biopython protein builder on real structures of ../shared/data/proteins: residue counts,
pLDDT, PDB == mmCIF, edges, secondary structure (DSSP and the fallback), conservation sidecar,
a bad-input corpus, and a pretraining run that uses the builder."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from cgc_framework import hookimpl
from cgc_framework.api import run
from cgc_framework.engine.config import validate_config
from cgc_framework.plugin.contracts import Dataset
from cgc_framework.plugin.records import Record, RecordError
from cgc_plugins.proteins.builder import BiopythonProteinBuilder, BiopythonProteinParams
from cgc_plugins.proteins.secondary_structure import dssp_available, geometry_states
from cgc_plugins.proteins.structure_io import read_residues

pytestmark = pytest.mark.shared_data
NEAR, NEXT = ("residue", "near", "residue"), ("residue", "next", "residue")


def geometry_builder(**kw) -> BiopythonProteinBuilder:
    return BiopythonProteinBuilder(BiopythonProteinParams(secondary_structure="geometry", **kw))


def atom_record_residues(path: Path) -> "OrderedDict[str, set]":
    """(resseq, icode) per chain from the ATOM records, read as plain fixed-column text."""
    out: OrderedDict[str, set] = OrderedDict()
    for line in path.read_text().splitlines():
        if line.startswith("ENDMDL"):
            break
        if line.startswith("ATOM  "):
            out.setdefault(line[21], set()).add((int(line[22:26]), line[26]))
    return out


@pytest.mark.parametrize("name", ["1uyd.pdb", "1hpx.pdb", "4agl.pdb", "3p5o.pdb", "1p5e.pdb",
                                  "AF-P04629-F1-model.pdb"])
def test_residue_counts_match_atom_records_per_chain(shared_data, name):
    path = shared_data / "proteins" / name
    expected = atom_record_residues(path)
    table = read_residues(path)
    got = OrderedDict()
    for c in table.chain:
        got[c] = got.get(c, 0) + 1
    assert got == OrderedDict((c, len(v)) for c, v in expected.items())
    g = geometry_builder().build(path)
    assert g["residue"].num_nodes == sum(len(v) for v in expected.values())


def test_chain_selection(shared_data):
    path = shared_data / "proteins" / "1hpx.pdb"
    g = geometry_builder(chains=["B"]).build(path)
    assert g["residue"].num_nodes == len(atom_record_residues(path)["B"])
    with pytest.raises(RecordError, match=r"1hpx\.pdb: none of the requested chains \['Z'\].*chains present: A, B"):
        geometry_builder(chains=["Z"]).build(path)


def test_plddt_read_back_exactly_from_alphafold_model(shared_data):
    path = shared_data / "proteins" / "AF-P04629-F1-model.pdb"
    ca_b = [float(line[60:66]) for line in path.read_text().splitlines()
            if line.startswith("ATOM  ") and line[12:16] == " CA "]
    x = geometry_builder().build(path)["residue"].x
    assert x.shape == (796, 8) and len(ca_b) == 796
    assert torch.equal(x[:, 6], torch.tensor(ca_b, dtype=torch.float32))
    assert x[:, 7].eq(1).all()
    assert x[:, 6].mean().item() == pytest.approx(78.2, abs=0.1)      # index.csv: mean CA pLDDT 78.2
    crystal = geometry_builder().build(shared_data / "proteins" / "1uyd.pdb")["residue"].x
    assert crystal[:, 6:8].eq(0).all()                                 # B-factors are not pLDDT


def test_mmcif_and_pdb_of_the_same_entry_give_the_same_graph(shared_data):
    b = geometry_builder()
    pdb, cif = b.build(shared_data / "proteins" / "1uyd.pdb"), b.build(shared_data / "proteins" / "1uyd.cif")
    assert pdb["residue"].num_nodes == cif["residue"].num_nodes == 209
    for t in ("residue", "protein"):
        assert torch.equal(pdb[t].x, cif[t].x) and torch.equal(pdb[t].x_cat, cif[t].x_cat)
    for e in (NEAR, NEXT):
        assert torch.equal(pdb[e].edge_index, cif[e].edge_index)
        assert torch.allclose(pdb[e].edge_attr, cif[e].edge_attr, atol=1e-5)
    lp = read_residues(shared_data / "proteins" / "1uyd.pdb", ligands=True).ligands
    lc = read_residues(shared_data / "proteins" / "1uyd.cif", ligands=True).ligands
    assert lp.resname == lc.resname and "HOH" not in lc.resname      # waters are never ligands
    assert np.allclose(lp.atom_xyz, lc.atom_xyz, atol=1e-3)


def test_features_and_edges_of_a_known_structure(shared_data):
    path = shared_data / "proteins" / "3p5o.pdb"
    table = read_residues(path)
    g = geometry_builder().build(path)
    x, x_cat = g["residue"].x, g["residue"].x_cat
    first = table.resname[0]
    from cgc_plugins.proteins.residue_features import AA_INDEX, CHARGE, HYDROPATHY, VOLUME
    assert x_cat[0, 0].item() == AA_INDEX[first]
    assert x[0, 0].item() == pytest.approx(HYDROPATHY[first]) and x[0, 1].item() == pytest.approx(CHARGE[first])
    assert x[0, 2].item() == pytest.approx(VOLUME[first] / 100)
    lys = [i for i, r in enumerate(table.resname) if r == "LYS"]
    assert lys and all(x[i, 1].item() == 1.0 for i in lys)
    assert x[:, 4:6].eq(0).all()                                       # no sidecar: conservation missing
    ei, d = g[NEAR].edge_index, g[NEAR].edge_attr[:, 0]
    ca = torch.tensor(table.ca)
    assert torch.allclose(d, (ca[ei[0]] - ca[ei[1]]).norm(dim=1).float(), atol=1e-4)
    assert d.max().item() <= 8.0 and ei.shape[1] % 2 == 0
    pairs = set(map(tuple, ei.t().tolist()))
    assert all((j, i) in pairs for i, j in pairs)                       # both directions
    # brute force: every CA pair under 8 A is an edge
    dm = torch.cdist(ca, ca)
    assert int(((dm <= 8.0).sum() - len(ca)).item()) == ei.shape[1]
    assert g[NEXT].edge_attr.max().item() <= 4.2 and g[NEXT].edge_attr.min().item() >= 2.8


def test_no_next_edge_across_missing_residues(shared_data):
    path = shared_data / "proteins" / "1uyd.pdb"
    table = read_residues(path)
    gaps = [i for i in range(len(table) - 1) if table.chain[i] == table.chain[i + 1]
            and np.linalg.norm(table.ca[i + 1] - table.ca[i]) > 4.2]
    g = geometry_builder().build(path)
    pairs = set(map(tuple, g[NEXT].edge_index.t().tolist()))
    assert g[NEXT].edge_index.shape[1] == 2 * (len(table) - 1 - len(gaps))
    assert all((i, i + 1) not in pairs for i in gaps)


def test_closest_atom_contacts(shared_data):
    path = shared_data / "proteins" / "3p5o.pdb"
    table = read_residues(path)
    g = geometry_builder(contact="closest_atom", cutoff=4.5).build(path)
    ei, d = g[NEAR].edge_index, g[NEAR].edge_attr[:, 0]
    assert d.max().item() <= 4.5
    i, j = ei[:, 0].tolist()
    ai = table.atom_xyz[table.atom_residue == i]
    aj = table.atom_xyz[table.atom_residue == j]
    brute = np.min(np.linalg.norm(ai[:, None] - aj[None], axis=2))
    assert d[0].item() == pytest.approx(brute, abs=1e-4)


def test_secondary_structure_fallback_when_mkdssp_absent(shared_data, monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert not dssp_available()
    b = BiopythonProteinBuilder()                                      # auto
    assert b.ss_method == "geometry" and b.describe()["secondary_structure"] == "backbone-geometry fallback"
    g = b.build(shared_data / "proteins" / "3p5o.pdb")
    assert g["protein"].ss_method.tolist() == [1]
    counts = torch.bincount(g["residue"].x_cat[:, 1], minlength=4).tolist()
    assert counts[0] > 50 and counts[3] == 0                           # BRD4 BD1: a helix bundle
    with pytest.raises(ValueError, match="apt-get install dssp"):
        BiopythonProteinBuilder(BiopythonProteinParams(secondary_structure="dssp"))


@pytest.mark.skipif(not dssp_available(), reason="mkdssp (Debian package 'dssp') not installed")
def test_dssp_when_installed_and_fallback_agreement(shared_data):
    path = shared_data / "proteins" / "3p5o.pdb"
    b = BiopythonProteinBuilder()
    assert b.ss_method == "dssp"
    g = b.build(path)
    assert g["protein"].ss_method.tolist() == [0]
    dssp = g["residue"].x_cat[:, 1].numpy()
    assert (dssp == geometry_states(read_residues(path))).mean() >= 0.65
    assert np.bincount(dssp, minlength=4)[0] >= 60                      # 4 long helices


def test_conservation_sidecar(shared_data, tmp_path):
    path = shared_data / "proteins" / "3p5o.pdb"
    table = read_residues(path)
    rows = [(table.chain[i], int(table.resseq[i]), 0.25 * (i % 4)) for i in range(10)]
    (tmp_path / "3p5o.csv").write_text("chain,residue_number,conservation\n"
                                       + "".join(f"{c},{r},{v}\n" for c, r, v in rows))
    b = geometry_builder(conservation_dir=tmp_path)
    x = b.build(path)["residue"].x
    assert x[:10, 4].tolist() == [v for _, _, v in rows] and x[:10, 5].eq(1).all()
    assert x[10:, 4:6].eq(0).all()                                     # not in the sidecar: missing
    assert [p.name for p in b.cache_inputs(path)] == ["3p5o.pdb", "3p5o.csv"]
    (tmp_path / "3p5o.csv").write_text("chain,residue_number,conservation\nA,x,1\n")
    with pytest.raises(RecordError, match=r"3p5o\.csv:2: bad conservation row"):
        b.build(path)


def _corpus(shared_data: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    src = (shared_data / "proteins" / "3p5o.pdb").read_text().splitlines(keepends=True)
    atom_lines = [i for i, line in enumerate(src) if line.startswith("ATOM")]
    cut = atom_lines[40]
    (tmp / "truncated.pdb").write_text("".join(src[:cut]) + src[cut][:35])
    (tmp / "empty.pdb").write_text("")
    cif = (shared_data / "proteins" / "1uyd.cif").read_text()
    (tmp / "noatoms.cif").write_text(cif[:cif.index("loop_\n_atom_site.group_PDB")])
    nan = list(src)
    k = next(i for i in atom_lines if src[i][16] == " ")              # an atom without altlocs
    nan[k] = nan[k][:30] + "     nan" + nan[k][38:]
    (tmp / "nan.pdb").write_text("".join(nan))
    (tmp / "ligand_only.pdb").write_text("".join(line for line in src if line.startswith(("HETATM", "END"))))
    return {
        "truncated": (tmp / "truncated.pdb", rf"truncated\.pdb: cannot parse as PDB: .*line {cut + 1}"),
        "empty": (tmp / "empty.pdb", r"empty\.pdb: empty file"),
        "cif_without_atoms": (tmp / "noatoms.cif", r"noatoms\.cif: (cannot parse as mmCIF|no ATOM)"),
        "nan": (tmp / "nan.pdb", r"nan\.pdb: non-finite \(NaN/inf\) coordinates in residue A:\d+"),
        "no_protein_chain": (tmp / "ligand_only.pdb", r"ligand_only\.pdb: no protein chain"),
        "missing": (tmp / "missing.pdb", r"missing\.pdb: structure file not found"),
    }


def test_bad_input_corpus_gives_clear_errors(shared_data, tmp_path):
    b = geometry_builder()
    for path, pattern in _corpus(shared_data, tmp_path).values():
        with pytest.raises(RecordError, match=pattern):
            b.build(path)


class _Targets(Dataset):
    """Compound + target-structure records; two are bad (a broken file, an invalid SMILES)."""

    def __init__(self, rows):
        self.rows = rows

    def records(self, skips):
        for i, (smiles, path) in enumerate(self.rows):
            yield Record(f"r{i}", {"smiles": smiles, "structure_path": str(path), "dose_um": 1.0})


def test_pretraining_run_with_molecule_and_protein_builders(shared_data, tmp_path):
    p = shared_data / "proteins"
    (tmp_path / "empty.pdb").write_text("")
    rows = [("CC(=O)Oc1ccccc1C(=O)O", p / "3p5o.pdb"), ("Cn1c(=O)c2c(ncn2C)n(C)c1=O", p / "1hpx.pdb"),
            ("c1ccncc1", p / "1e3g.pdb"), ("CCO", tmp_path / "empty.pdb"), ("c1cccc1", p / "3p5o.pdb"),
            ("N[C@@H](C)C(=O)O", p / "3p5o.pdb")]

    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            register("targets_test", lambda params: _Targets(rows))

    cfg = validate_config({
        "run": {"name": "prot", "output_dir": str(tmp_path / "runs")},
        "data": {"dataset": {"name": "targets_test"}, "cache_dir": str(tmp_path / "cache")},
        "graph": {"modalities": {"molecule": {"builder": "rdkit_molecule"},
                                 "protein": {"builder": "biopython_protein",
                                             "params": {"secondary_structure": "geometry", "cutoff": 7.0}}}},
        "model": {"encoder": {"name": "hgt", "params": {"hidden_dim": 16, "num_layers": 1, "heads": 2}}},
        "tasks": {"mask": {"name": "masked_recovery", "params": {"mask_rate": 0.3}}},
        "stages": [{"name": "mask", "epochs": 2, "weights": {"mask": 1.0}}],
        "optimizer": {"lr": 1e-3, "batch_size": 2},
        "trainer": {"num_workers": 0},
    })
    res = run(cfg, run_dir=tmp_path / "run", progress=False, extra_plugins=(Plugin(),))
    assert res.built.record_ids == ["r0", "r1", "r2", "r5"]
    reasons = {e.record_id: (e.component, e.reason) for e in res.built.skips.entries}
    assert reasons["r3"][0] == "biopython_protein" and "empty.pdb: empty file" in reasons["r3"][1]
    assert reasons["r4"][0] == "rdkit_molecule" and "Can't kekulize" in reasons["r4"][1]
    g = res.built.graphs[1]
    assert g["residue"].num_nodes == 198 and g["atom"].num_nodes == 14
    assert len(res.metrics) > 0
    assert all(math.isfinite(v) for v in res.metrics.select_dtypes("number").iloc[-1].dropna())
    assert "biopython_protein" in (res.run_dir / "summary.md").read_text()


def test_ligand_nodes_off_by_default_and_imatinib_in_1iep(shared_data):
    """``ligands: true`` keeps non-water HETATM groups as ``ligand`` nodes; in 1iep (c-ABL +
    imatinib/STI-571) the two STI copies contact the gatekeeper Thr315 and the DFG Asp381."""
    path = shared_data / "proteins" / "1iep.pdb"
    plain = BiopythonProteinBuilder(BiopythonProteinParams(secondary_structure="geometry")).build(path)
    assert "ligand" not in plain.node_types
    b = BiopythonProteinBuilder(BiopythonProteinParams(secondary_structure="geometry", ligands=True))
    g = b.build(path)
    b.schema().conform(g)
    b.schema().validate(g, where="1iep")
    # HETATM groups of 1iep: STI A201, STI B202, CL x6; the 172 waters are not ligands
    het = OrderedDict()
    for line in path.read_text().splitlines():
        if line.startswith("HETATM") and line[17:20] != "HOH":
            het.setdefault((line[21], int(line[22:26]), line[17:20].strip()), []).append(line[76:78].strip())
    assert g["ligand"].num_nodes == len(het) == 8
    sti = [i for i, k in enumerate(het) if k[2] == "STI"]
    x, kind = g["ligand"].x, g["ligand"].x_cat[:, 0]
    for i in sti:
        assert x[i, 0].item() == pytest.approx(3.7)                           # 37 heavy atoms / 10
        assert x[i, 1:4].tolist() == pytest.approx([29 / 37, 7 / 37, 1 / 37])  # C29 N7 O1
        assert kind[i].item() == 1
    assert all(kind[i].item() == 0 and x[i, 6].item() == 1.0 for i in range(8) if i not in sti)  # Cl- ions
    table = read_residues(path)
    e = g["ligand", "contacts", "residue"]
    names = {(table.chain[r], int(table.resseq[r]), table.resname[r])
             for l_, r in e.edge_index.t().tolist() if l_ == sti[0]}
    assert {("A", 315, "THR"), ("A", 318, "MET"), ("A", 381, "ASP"), ("A", 286, "GLU")} <= names
    assert all(c == "A" for c, _, _ in names)
    assert e.edge_attr.max().item() <= 4.5 and e.edge_attr.min().item() > 2.0
    back = g["residue", "contacts", "ligand"]
    assert torch.equal(back.edge_index, e.edge_index.flip(0)) and torch.equal(back.edge_attr, e.edge_attr)
    assert g["ligand", "in", "protein"].edge_index.shape == (2, 8)
    # residues and their edges are unchanged by the option
    for key in (("residue", "near", "residue"), ("residue", "next", "residue")):
        assert torch.equal(g[key].edge_index, plain[key].edge_index)
    assert torch.equal(g["residue"].x, plain["residue"].x)
    # an AlphaFold model has no HETATM: zero ligand nodes, empty contact edges
    af = b.build(shared_data / "proteins" / "AF-P04629-F1-model.pdb")
    assert af["ligand"].num_nodes == 0 and af["ligand", "contacts", "residue"].edge_index.shape == (2, 0)
