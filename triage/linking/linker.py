"""CaseLinker: the pipeline's link stage (triage.pipeline.Linker) — candidates → verifier → links.

Candidates come from three sources in the CaseIndex: (a) cases of the same petitioner (keyed
hashes of the ID number and phone, triage.pii.petitioner_key), (b) cases sharing a MinHash-LSH
band (near-verbatim re-posts), (c) the nearest vectors (reworded re-submissions). Only cases
submitted no later than the petition are linked (重复信访 points to earlier petitions). Each
candidate is scored by the LinkVerifier; links above its decision threshold (tuned on the corpus
dev split) are returned best first, with the earlier case's status and Chinese reasons.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from triage.linking.features import DEFAULT_LINKER_DIR, HashedTfidfEncoder, LinkFeaturizer, load_encoder
from triage.linking.index import CandidateLimits, CaseIndex, CaseSnapshot, LinkFeatures
from triage.linking.verifier import FEATURES, VERIFIER_FILE, CaseView, LinkVerifier, feature_rows, reasons_for, view_of
from triage.pii import petitioner_key
from triage.schemas import DuplicateLink, Entities, Petition, Petitioner

logger = logging.getLogger(__name__)

# Incoming petitions may carry a clock a little ahead of the store's; beyond this a case is "later".
CLOCK_SLACK = timedelta(hours=1)


def petition_keys(petitioner: Petitioner | None, entities: Entities | None, secret: bytes) -> tuple[str, ...]:
    """Keyed hashes of the petitioner's ID number and phone (fields, plus those written in the text)."""
    if not secret:
        return ()
    keys: list[str] = []
    if petitioner is not None:
        if petitioner.id_number:
            keys.append(petitioner_key("id_number", petitioner.id_number, secret))
        if petitioner.phone:
            keys.append(petitioner_key("phone", petitioner.phone, secret))
    if entities is not None:
        for e in entities.items:
            if e.type == "id_number" and e.valid and "*" not in e.text:
                keys.append(petitioner_key("id_number", e.text, secret))
            elif e.type == "phone" and "*" not in e.text:
                keys.append(petitioner_key("phone", e.text, secret))
    return tuple(dict.fromkeys(keys))


@dataclass
class ScoredCandidate:
    snapshot: CaseSnapshot
    values: list[float]  # the pair's features, in verifier.FEATURES order
    probability: float
    days: float | None

    @property
    def features(self) -> dict[str, float]:
        return dict(zip(FEATURES, self.values, strict=True))


class CaseLinker:
    """Implements triage.pipeline.Linker over any CaseIndex (MemoryCaseIndex, SqlCaseIndex)."""

    def __init__(self, index: CaseIndex, featurizer: LinkFeaturizer, verifier: LinkVerifier, *, secret: bytes = b"",
                 limits: CandidateLimits | None = None, threshold: float | None = None, view_cache_size: int = 20_000) -> None:
        if not isinstance(featurizer.encoder, HashedTfidfEncoder):
            raise TypeError("CaseLinker needs a featurizer with a HashedTfidfEncoder (its idf drives the text features)")
        self.index = index
        self.featurizer = featurizer
        self.encoder: HashedTfidfEncoder = featurizer.encoder
        self.verifier = verifier
        self.secret = secret
        self.limits = limits or CandidateLimits()
        self.threshold = verifier.threshold if threshold is None else threshold
        self.version = f"linker-{verifier.version}"
        self.view_cache_size = view_cache_size
        self._views: OrderedDict[str, tuple[tuple[object, ...], CaseView]] = OrderedDict()

    # -- registration (history, ingest, tests)
    def snapshot_of(self, petition: Petition, text: str, entities: Entities, *, status: str | None = None) -> CaseSnapshot:
        if not petition.id:
            raise ValueError("a case needs an id to be registered")
        return CaseSnapshot(case_id=petition.id, text=text, entities=entities,
                            petitioner_keys=petition_keys(petition.petitioner, None, self.secret),
                            submitted_at=petition.submitted_at, status=status,
                            district=entities.place.district, subdivision=entities.place.subdivision)

    def register(self, petition: Petition, text: str, entities: Entities, *, status: str | None = None) -> LinkFeatures:
        """Add one case to the index (the store does this itself when it registers cases)."""
        feats = self.featurizer.features(text)
        self.index.add(self.snapshot_of(petition, text, entities, status=status), feats)
        return feats

    # -- the link stage
    def candidates(self, petition: Petition, text: str, entities: Entities,
                   features: LinkFeatures | None = None) -> list[CaseSnapshot]:
        """Earlier cases worth verifying, from petitioner keys, LSH bands and vectors (deduplicated)."""
        feats = features or self.featurizer.features(text)
        keys = petition_keys(petition.petitioner, entities, self.secret)
        # one call: the SQL index gathers all three channels and the snapshots in two round trips
        snaps = [s for s in self.index.candidate_snapshots(keys, feats.bands, feats.vector, self.limits)
                 if s.case_id != petition.id]
        at = petition.submitted_at
        if at is not None:
            snaps = [s for s in snaps if s.submitted_at is None or s.submitted_at <= at + CLOCK_SLACK]
        return snaps

    def score(self, petition: Petition, text: str, entities: Entities,
              snapshots: list[CaseSnapshot]) -> list[ScoredCandidate]:
        """Verifier probability for every candidate (unsorted)."""
        if not snapshots:
            return []
        q = self.view(text, entities, petition_keys(petition.petitioner, entities, self.secret), petition.submitted_at)
        rows = feature_rows(q, [self.view_of_snapshot(s) for s in snapshots])  # one matrix, one product
        probs = self.verifier.probability_of_rows(rows)
        return [ScoredCandidate(s, f, float(p), _days(petition.submitted_at, s.submitted_at))
                for s, f, p in zip(snapshots, rows.tolist(), probs, strict=True)]

    def link(self, petition: Petition, text: str, entities: Entities) -> list[DuplicateLink]:
        """Links to earlier cases about the same matter, most probable first (empty when none passes)."""
        return self.link_with_features(petition, text, entities)[0]

    def link_with_features(self, petition: Petition, text: str, entities: Entities) -> tuple[list[DuplicateLink], LinkFeatures]:
        """`link()` and the text's LinkFeatures it computed (what the store saves with the case)."""
        features = self.featurizer.features(text)
        scored = self.score(petition, text, entities, self.candidates(petition, text, entities, features))
        scored = sorted((c for c in scored if c.probability >= self.threshold), key=lambda c: -c.probability)
        links = []
        for c in scored[:self.limits.max_links]:
            f = c.features
            links.append(DuplicateLink(case_id=c.snapshot.case_id, probability=round(c.probability, 4),
                                       reasons=reasons_for(f, c.days), status=c.snapshot.status,
                                       same_petitioner=bool(f["same_petitioner"])))
        logger.debug("link id=%s candidates=%d links=%d", petition.id, len(scored), len(links))
        return links, features

    def view(self, text: str, entities: Entities, keys: tuple[str, ...], at: datetime | None) -> CaseView:
        return view_of(text, entities, self.encoder, petitioner_keys=keys, submitted_at=at)

    def view_of_snapshot(self, s: CaseSnapshot) -> CaseView:
        """The verifier's view of a stored case, cached by case id while what the view reads of it is unchanged."""
        key = _view_key(s)
        hit = self._views.get(s.case_id)
        if hit is not None and hit[0] == key:
            self._views.move_to_end(s.case_id)
            return hit[1]
        v = view_of(s.text, s.entities, self.encoder, petitioner_keys=s.petitioner_keys, submitted_at=s.submitted_at,
                    district=s.district, subdivision=s.subdivision)
        self._views[s.case_id] = (key, v)
        if len(self._views) > self.view_cache_size:
            self._views.popitem(last=False)
        return v


def _view_key(s: CaseSnapshot) -> tuple[object, ...]:
    """Everything `view_of` reads of a snapshot: its text, keys, time, place and, of the entities, type/text/value of
    each and the resolved place (cheap to compare, unlike the pydantic models' ==; the status is not read)."""
    e = s.entities
    return (s.text, s.petitioner_keys, s.submitted_at, s.district, s.subdivision, e.place.district, e.place.subdivision,
            tuple([(x.type, x.text, x.value) for x in e.items]))


def _days(a: datetime | None, b: datetime | None) -> float | None:
    return abs((a - b).total_seconds()) / 86400.0 if a and b else None


def load_linker(index: CaseIndex, *, model_dir: Path = DEFAULT_LINKER_DIR, secret: bytes = b"") -> CaseLinker:
    """A CaseLinker with the encoder and verifier of a linker model directory.

    Raises:
        ArtifactMismatchError: the directory lacks the encoder or the verifier.
    """
    featurizer = LinkFeaturizer(load_encoder(model_dir))
    return CaseLinker(index, featurizer, LinkVerifier.load(model_dir / VERIFIER_FILE), secret=secret)
