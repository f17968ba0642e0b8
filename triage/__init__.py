"""Petition triage domain core: schemas, text, taxonomy and the pipeline.

Knows nothing of HTTP, onnxruntime sessions or training.
"""

from triage.errors import (
    ArtifactMismatchError,
    InvalidPetitionError,
    StageNotReadyError,
    TaxonomyError,
    TriageError,
)
from triage.pipeline import DecisionContext, TriagePipeline
from triage.schemas import Decision, DuplicateLink, Entities, Entity, Petition, Suggestion, TriageResult
from triage.taxonomy import Taxonomy, load_taxonomy
from triage.text import normalize, segment

__all__ = [
    "ArtifactMismatchError",
    "Decision",
    "DecisionContext",
    "DuplicateLink",
    "Entities",
    "Entity",
    "InvalidPetitionError",
    "Petition",
    "StageNotReadyError",
    "Suggestion",
    "Taxonomy",
    "TaxonomyError",
    "TriageError",
    "TriagePipeline",
    "TriageResult",
    "load_taxonomy",
    "normalize",
    "segment",
]
