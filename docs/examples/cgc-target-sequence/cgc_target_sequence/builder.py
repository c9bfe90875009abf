"""Target sequence -> residue-chain graph.

Node type ``aa``: one node per residue of the first listed target gene that has a sequence in the
FASTA file; features: residue identity (categorical, 20 standard amino acids + "other") and
relative position in the chain (continuous, 0..1); role ``target_part`` (a part of a protein
target, like the built-in ``residue`` nodes). Edge type ``(aa, peptide, aa)``: consecutive
residues, both directions. FASTA headers start with the gene symbol (``>EGFR ...``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from Bio import SeqIO
from pydantic import BaseModel, ConfigDict, Field
from torch_geometric.data import HeteroData

from cgc_framework.plugin import (
    EdgeTypeSpec,
    ExistingPath,
    FeatureSpec,
    GraphBuilder,
    GraphSchema,
    NodeTypeSpec,
    RecordError,
)
from cgc_framework.plugin.roles import TARGET_PART

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
_INDEX = {a: i for i, a in enumerate(AMINO_ACIDS)}  # anything else -> len(AMINO_ACIDS) ("other")
DEFAULT_FASTA = Path(__file__).parent / "data" / "targets_seqres.fasta"


class FastaSequenceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fasta: ExistingPath | None = Field(None, description="FASTA keyed by gene symbol; default: bundled SEQRES set")
    max_length: int = Field(1000, gt=0, description="longer sequences are truncated to this many residues")


class FastaSequenceBuilder(GraphBuilder):
    modality = "target_sequence"
    version = "1"

    def __init__(self, params: FastaSequenceParams | None = None):
        self.params = params or FastaSequenceParams()
        self.fasta = Path(self.params.fasta or DEFAULT_FASTA)
        self.sequences = {rec.id: str(rec.seq) for rec in SeqIO.parse(self.fasta, "fasta")}
        if not self.sequences:
            raise ValueError(f"{self.fasta} holds no FASTA records")

    def params_key(self) -> dict:
        return {"fasta": str(self.fasta), "max_length": self.params.max_length}

    def schema(self) -> GraphSchema:
        aa = NodeTypeSpec((FeatureSpec.categorical("residue", len(AMINO_ACIDS) + 1, "amino acid, 20 + other"),
                           FeatureSpec.continuous("position", description="index / (length - 1)")),
                          name="aa", description="residue of the target's sequence", role=TARGET_PART)
        peptide = EdgeTypeSpec((), src="aa", rel="peptide", dst="aa", description="sequence neighbours")
        return GraphSchema.of([aa], [peptide])

    def build(self, value: str) -> HeteroData:
        genes = [g.strip() for g in str(value).split("|") if g.strip()]
        gene = next((g for g in genes if g in self.sequences), None)
        if gene is None:
            raise RecordError(f"none of the targets {genes} has a sequence in {self.fasta.name}")
        seq = self.sequences[gene][: self.params.max_length]
        n = len(seq)
        data = HeteroData()
        data["aa"].x_cat = torch.tensor([_INDEX.get(a, len(AMINO_ACIDS)) for a in seq]).unsqueeze(1)
        data["aa"].x = (torch.arange(n, dtype=torch.float32) / max(n - 1, 1)).unsqueeze(1)
        data["aa"].num_nodes = n
        i = torch.arange(n - 1)
        data["aa", "peptide", "aa"].edge_index = torch.cat([torch.stack([i, i + 1]), torch.stack([i + 1, i])], 1)
        return data
