"""Secondary structure per residue: DSSP (``mkdssp`` through Biopython) or a backbone-geometry
fallback from CA positions alone.

The fallback follows P-SEA (Labesse et al., 1997, CABIOS 13:291): a residue is in a helix when
the CA-CA distances spanning it, ``d(i-1, i+1)``, ``d(i-1, i+2)``, ``d(i-2, i+2)``, are near
5.5, 5.3 and 6.2 angstrom, and in a strand when they are near 6.7, 9.9 and 12.4 angstrom; a helix
core grows by one residue at each end; every other residue (and every residue whose window
crosses a chain end or break) is coil. On five files of ``shared/data/proteins`` it agrees with
DSSP's 3-state assignment on 66-87% of residues (tests/plugins/test_proteins.py checks >= 65%).
"""

from __future__ import annotations

import shutil
import subprocess
import warnings

import numpy as np

from .residue_features import DSSP_TO_3, SS_UNKNOWN
from .structure_io import ResidueTable

HELIX, STRAND, COIL = 0, 1, 2
# (span of the CA pair relative to i, target distance, tolerance) for helix / strand
_WINDOWS = ((-1, 1), (-1, 2), (-2, 2))
_HELIX = ((5.5, 0.6), (5.3, 0.6), (6.2, 0.7))
_STRAND = ((6.7, 0.7), (9.9, 1.0), (12.4, 1.2))


def dssp_available(executable: str = "mkdssp") -> bool:
    """Whether ``executable`` is on PATH and answers ``--version``."""
    path = shutil.which(executable)
    if path is None:
        return False
    try:
        return subprocess.run([path, "--version"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def dssp_states(table: ResidueTable, executable: str = "mkdssp") -> np.ndarray:
    """3-state index per residue (``[N]`` int64; 3 = no DSSP assignment) from ``mkdssp``."""
    from Bio.PDB.DSSP import DSSP

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dssp = DSSP(table.model, str(table.path), dssp=executable)
    out = np.full(len(table), SS_UNKNOWN, dtype=np.int64)
    for i, (chain, num, ic) in enumerate(zip(table.chain, table.resseq, table.icode)):
        key = (chain, (" ", int(num), ic))
        if key in dssp:
            out[i] = DSSP_TO_3.get(dssp[key][2], SS_UNKNOWN)
    return out


def geometry_states(table: ResidueTable, break_distance: float = 4.2) -> np.ndarray:
    """3-state index per residue (``[N]`` int64) from CA-CA distances (see module docstring)."""
    n = len(table)
    out = np.full(n, COIL, dtype=np.int64)
    ca = table.ca
    chain = np.array(table.chain)
    # segment id: increases at chain changes and at breaks (consecutive CA farther than break_distance)
    step = np.linalg.norm(np.diff(ca, axis=0), axis=1) if n > 1 else np.zeros(0)
    cut = np.concatenate([[True], (chain[1:] != chain[:-1]) | (step > break_distance)])
    seg = np.cumsum(cut)
    idx = np.arange(n)
    helix = np.ones(n, dtype=bool)
    strand = np.ones(n, dtype=bool)
    for (a, b), (h, ht), (s, st) in zip(_WINDOWS, _HELIX, _STRAND):
        ia, ib = idx + a, idx + b
        ok = (ia >= 0) & (ib < n)
        ia_c, ib_c = np.clip(ia, 0, n - 1), np.clip(ib, 0, n - 1)
        ok &= (seg[ia_c] == seg) & (seg[ib_c] == seg)
        d = np.linalg.norm(ca[ia_c] - ca[ib_c], axis=1)
        helix &= ok & (np.abs(d - h) <= ht)
        strand &= ok & (np.abs(d - s) <= st)
    # a helix core found at i extends to i-1 and i+1 (the windows need two residues on each side)
    grown = helix.copy()
    grown[1:] |= helix[:-1] & (seg[1:] == seg[:-1])
    grown[:-1] |= helix[1:] & (seg[:-1] == seg[1:])
    out[strand] = STRAND
    out[grown] = HELIX
    return out
