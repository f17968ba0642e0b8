"""Hot issues (热点): group recent cases about the same issue, with counts, districts and weekly trend.

Different petitioners writing about one issue (a concrete plant next to an estate, a bus line
cut) are linked by a context-free same-issue model (`issue.json` in the linker directory:
logistic regression over text similarity, shared organisation/place, days apart; trained by
`triage train-linker`). Candidate pairs come from the CaseIndex (LSH bands + nearest vectors) as
for duplicate links; groups are formed by greedy average linkage (HotspotFinder.issues), and
groups with at least `min_size` cases are the issues.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from triage.linking.features import DEFAULT_LINKER_DIR, HashedTfidfEncoder, LinkFeaturizer, load_encoder
from triage.linking.index import CaseIndex, CaseSnapshot
from triage.linking.verifier import CaseView, LinkVerifier, pair_features, view_of

ISSUE_FILE = "issue.json"


@dataclass
class Issue:
    """One hot issue: its cases and how it developed."""

    case_ids: list[str]
    districts: dict[str, int]
    first: datetime | None
    last: datetime | None
    weekly: dict[str, int]  # ISO week (2026-W09) → cases
    trend: str  # 上升 / 下降 / 持平 / 新出现: the last 7 days before `now` vs the 7 days before those
    keywords: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.case_ids)


def _week(at: datetime) -> str:
    y, w, _ = at.isocalendar()
    return f"{y}-W{w:02d}"


def _trend(times: Sequence[datetime], now: datetime | None) -> str:
    """Cases in the last 7 days before `now` against the 7 days before those."""
    if not times or now is None:
        return "—"
    last = sum(1 for t in times if now - timedelta(days=7) <= t < now)
    prev = sum(1 for t in times if now - timedelta(days=14) <= t < now - timedelta(days=7))
    if last and not prev and min(times) >= now - timedelta(days=7):
        return "新出现"
    return "上升" if last > prev else "下降" if last < prev else "持平"


class HotspotFinder:
    """Group snapshots into issues with the same-issue model (see the module docstring)."""

    def __init__(self, featurizer: LinkFeaturizer, model: LinkVerifier, *, neighbours: int = 50,
                 min_size: int = 2, min_cover: float = 0.3) -> None:
        if not isinstance(featurizer.encoder, HashedTfidfEncoder):
            raise TypeError("HotspotFinder needs a featurizer with a HashedTfidfEncoder")
        self.featurizer = featurizer
        self.encoder: HashedTfidfEncoder = featurizer.encoder
        self.model = model
        self.neighbours = neighbours
        self.min_size = min_size
        self.min_cover = min_cover

    def pair_probabilities(self, snapshots: Sequence[CaseSnapshot], index: CaseIndex) -> dict[tuple[str, str], float]:
        """Same-issue probability of every candidate pair inside `snapshots` (keys ordered)."""
        window = {s.case_id: s for s in snapshots}
        views: dict[str, CaseView] = {}

        def view(s: CaseSnapshot) -> CaseView:
            if s.case_id not in views:
                views[s.case_id] = view_of(s.text, s.entities, self.encoder, submitted_at=s.submitted_at,
                                           district=s.district, subdivision=s.subdivision)
            return views[s.case_id]

        pairs: list[tuple[str, str]] = []
        for s in snapshots:
            feats = self.featurizer.features(s.text)
            cands = {cid for cid, _ in index.band_candidates(feats.bands, limit=self.neighbours)}
            if feats.vector is not None:
                cands |= {cid for cid, _ in index.vector_candidates(feats.vector, k=self.neighbours)}
            for cid in cands:
                if cid != s.case_id and cid in window:
                    pairs.append((min(s.case_id, cid), max(s.case_id, cid)))
        pairs = sorted(set(pairs))
        if not pairs:
            return {}
        rows = [pair_features(view(window[a]), view(window[b])) for a, b in pairs]
        probs = self.model.probability(self.model.matrix(rows))
        return {p: float(x) for p, x in zip(pairs, probs, strict=True)}

    def issues(self, snapshots: Sequence[CaseSnapshot], index: CaseIndex, *, threshold: float | None = None,
               now: datetime | None = None) -> list[Issue]:
        """Issues by greedy average linkage over the same-issue graph, largest first.

        Pairs are taken best first; two groups merge when the mean probability over their scored
        cross pairs is at least the threshold and at least `min_cover` of the cross pairs were
        scored (were candidates of each other). Plain connected components chain unrelated
        matters through one ambiguous message into a single giant group; this does not.
        """
        t = self.model.threshold if threshold is None else threshold
        probs = self.pair_probabilities(snapshots, index)
        members: dict[str, list[str]] = {s.case_id: [s.case_id] for s in snapshots}
        owner = {s.case_id: s.case_id for s in snapshots}
        for (a, b), p in sorted(probs.items(), key=lambda kv: -kv[1]):
            if p < t:
                break
            ra, rb = owner[a], owner[b]
            if ra == rb:
                continue
            scored = [probs[(x, y) if x < y else (y, x)] for x in members[ra] for y in members[rb]
                      if ((x, y) if x < y else (y, x)) in probs]
            if sum(scored) / len(scored) < t or len(scored) < self.min_cover * len(members[ra]) * len(members[rb]):
                continue
            if len(members[ra]) < len(members[rb]):
                ra, rb = rb, ra
            for x in members[rb]:
                owner[x] = ra
            members[ra].extend(members.pop(rb))
        by_id = {s.case_id: s for s in snapshots}
        if now is None:
            now = max((s.submitted_at for s in snapshots if s.submitted_at), default=None)
            now = now + timedelta(seconds=1) if now else None
        out = [self._describe([by_id[c] for c in m], now) for m in members.values() if len(m) >= self.min_size]
        return sorted(out, key=lambda i: (-i.count, i.case_ids[0]))

    def _describe(self, members: list[CaseSnapshot], now: datetime | None) -> Issue:
        members = sorted(members, key=lambda s: (s.submitted_at is None, s.submitted_at or datetime.min, s.case_id))
        times = [s.submitted_at for s in members if s.submitted_at]
        weekly = dict(sorted(Counter(_week(t) for t in times).items()))
        districts = Counter(s.district or "未识别" for s in members)
        words: Counter[str] = Counter()
        for s in members:
            words.update(view_of(s.text, s.entities, self.encoder).rare_words)
        keywords = [w for w, n in words.most_common(8) if n >= max(2, len(members) // 2)][:5]
        return Issue(case_ids=[s.case_id for s in members], districts=dict(districts.most_common()),
                     first=min(times) if times else None, last=max(times) if times else None,
                     weekly=weekly, trend=_trend(times, now), keywords=keywords)


def load_hotspot_finder(model_dir: Path = DEFAULT_LINKER_DIR, *, min_size: int = 2) -> HotspotFinder:
    """A HotspotFinder with the encoder and same-issue model of a linker directory.

    Raises:
        ArtifactMismatchError: the directory lacks the encoder or issue.json.
    """
    return HotspotFinder(LinkFeaturizer(load_encoder(model_dir)), LinkVerifier.load(model_dir / ISSUE_FILE),
                         min_size=min_size)
