"""The link verifier: pair features → calibrated probability (logistic regression, numpy) → reasons.

A pair is (the incoming petition, one earlier case from the candidates). Features compare the
two texts (idf-weighted word cosine, character 3-gram Jaccard and containment, shared rare
words), the entities (same petitioner, place, organisation, official, person name, amount,
case number, plate) and the time between them. The model is a standardised logistic regression
plus Platt calibration, trained by training/linking.py and stored as JSON: serving needs numpy only.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

from triage.errors import ArtifactMismatchError
from triage.linking.features import HashedTfidfEncoder, shingle_text, sparse_cosines, word_tokens
from triage.schemas import Entities

VERIFIER_FILE = "verifier.json"
RARE_IDF = 6.0  # a word in fewer than ~0.3% of the fitting texts
_DISTRICT_SUFFIX = re.compile(r"(区|县|自治县|新区|市)$")
_MASKED = re.compile(r"\*")

FEATURES = (
    "word_cos", "char_jaccard", "char_containment", "rare_shared", "rare_only_query", "len_ratio",
    "same_petitioner", "same_person_name", "same_subdivision", "district_same", "district_conflict",
    "shared_place_detail", "shared_org", "org_conflict", "shared_official", "shared_amount", "amount_conflict",
    "shared_case_number", "shared_plate", "log_days", "days_unknown",
    "repeat_cue", "cue_x_cos", "cos_gap", "is_top",
)
# Context-free subset for same-issue grouping (hotspots): pairs of different petitioners, no ranking.
ISSUE_FEATURES = ("word_cos", "char_jaccard", "char_containment", "rare_shared", "shared_org", "shared_place_detail",
                  "log_days", "len_ratio", "district_conflict")
# The writer says the matter was raised before (重信重访): 曾在网上反映, 再次反映, 打12345反映过, 至今未解决.
REPEAT_CUE = re.compile(
    r"(曾|已|之前|此前|先前|上次|前次|早在|多次|几次|两次|三次|又|再次|再一次|继续).{0,12}"
    r"(反映|投诉|举报|留言|咨询|来信|来访|来电|打过|打12345|发帖|问过|申请)"
    r"|(反映|投诉|举报|留言|咨询|问)过|再次|至今.{0,6}(未|没|无)|回复(说|称)|答复(说|称)?"
)


@dataclass
class CaseView:
    """What the verifier reads of one side of a pair (built once per text)."""

    text: str
    entities: Entities
    petitioner_keys: frozenset[str] = frozenset()
    submitted_at: datetime | None = None
    district: str | None = None
    subdivision: str | None = None
    tfidf: tuple[np.ndarray, np.ndarray] = field(default=(np.zeros(0, np.int64), np.zeros(0, np.float32)))
    shingles: frozenset[int] = frozenset()
    rare_words: frozenset[str] = frozenset()
    repeat_cue: bool = False

    @functools.cached_property
    def sets(self) -> _EntitySets:
        """The entity sets pair_features compares, computed once per view (a view meets many candidates)."""
        return _entity_sets(self.entities)


class _EntitySets(NamedTuple):
    persons: set[str]
    ident: set[str]  # phones and ID numbers written out (unmasked)
    places: set[str]  # place details: places of 3+ characters that are not districts
    orgs: set[str]
    officials: set[str]
    amounts: set[float]
    case_numbers: set[str]
    plates: set[str]


def _entity_set(entities: Entities, kind: str, min_len: int = 2) -> set[str]:
    return {e.text for e in entities.of_type(kind) if len(e.text) >= min_len and not _MASKED.search(e.text)}


def _amounts(entities: Entities) -> set[float]:
    return {round(float(e.value), 0) for e in entities.of_type("amount")
            if isinstance(e.value, int | float) and float(e.value) >= 100}


def _entity_sets(e: Entities) -> _EntitySets:
    districts = {x.text for x in e.of_type("place") if _DISTRICT_SUFFIX.search(x.text)}
    return _EntitySets(
        persons=_entity_set(e, "person"), ident=_entity_set(e, "phone", 7) | _entity_set(e, "id_number", 15),
        places=_entity_set(e, "place", 3) - districts, orgs=_entity_set(e, "org", 3), officials=_entity_set(e, "official"),
        amounts=_amounts(e), case_numbers=_entity_set(e, "case_number"), plates=_entity_set(e, "plate"),
    )


def _overlap(a: set[str], b: set[str]) -> bool:
    """Any shared value, allowing one to contain the other (巴渝老灶火锅 / 杨家坪巴渝老灶火锅店)."""
    if a & b:
        return True
    return any(len(x) >= 3 and len(y) >= 3 and (x in y or y in x) for x in a for y in b)


def view_of(text: str, entities: Entities, encoder: HashedTfidfEncoder, *, petitioner_keys: Sequence[str] = (),
            submitted_at: datetime | None = None, district: str | None = None, subdivision: str | None = None) -> CaseView:
    """Precompute the per-text parts of the pair features (one segmentation, one hashing pass)."""
    s = shingle_text(text)
    shingles = frozenset(hash(s[i:i + 3]) for i in range(max(0, len(s) - 2)))
    tokens = word_tokens(text)
    buckets = encoder.bucket_ids(tokens)
    rare_mask = encoder.idf[buckets] >= RARE_IDF if buckets.size else np.zeros(0, dtype=bool)
    rare = frozenset(t for t, r in zip(tokens, rare_mask, strict=True) if r and len(t) >= 2)
    return CaseView(text=text, entities=entities, petitioner_keys=frozenset(petitioner_keys), submitted_at=submitted_at,
                    district=district or entities.place.district, subdivision=subdivision or entities.place.subdivision,
                    tfidf=encoder.tfidf_of_buckets(buckets), shingles=shingles, rare_words=rare,
                    repeat_cue=bool(REPEAT_CUE.search(text)))


def pair_features(q: CaseView, c: CaseView) -> dict[str, float]:
    """Features of (incoming petition q, earlier case c); every value a float, names in FEATURES.

    One row of `feature_rows` (the single implementation): alone, c is the top candidate (is_top 1) and its
    cos_gap is its word cosine; `add_query_context` sets both once all candidates of q are known.
    """
    return dict(zip(FEATURES, feature_rows(q, [c])[0].tolist(), strict=True))


_COL = {name: i for i, name in enumerate(FEATURES)}
_WORD_COS, _COS_GAP, _IS_TOP = _COL["word_cos"], _COL["cos_gap"], _COL["is_top"]


def _any_overlap(a: set[str], b: set[str]) -> bool:
    return bool(a and b) and _overlap(a, b)


def feature_rows(q: CaseView, cands: Sequence[CaseView]) -> np.ndarray:
    """`pair_features` of q with every candidate plus `add_query_context`, as one float64 matrix
    [len(cands), len(FEATURES)] in FEATURES order — the same values (same expressions, no dict per pair)."""
    n = len(cands)
    if not n:
        return np.zeros((0, len(FEATURES)), dtype=np.float64)
    q_sh, q_rare, qs = q.shingles, q.rare_words, q.sets
    n_q = len(q_sh)
    q_keys, q_ident = q.petitioner_keys, qs.ident
    q_persons, q_places, q_orgs, q_officials = qs.persons, qs.places, qs.orgs, qs.officials
    q_amounts, q_cases, q_plates = qs.amounts, qs.case_numbers, qs.plates
    q_len1, q_at, q_district, q_sub = len(q.text) + 1, q.submitted_at, q.district, q.subdivision
    cue = float(q.repeat_cue)
    log, log1p = math.log, math.log1p
    rows = []
    for c, word_cos in zip(cands, sparse_cosines(q.tfidf, [c.tfidf for c in cands]), strict=True):
        c_sh = c.shingles
        inter = len(q_sh & c_sh)
        n_c = len(c_sh)
        union = (n_q + n_c - inter) or 1
        smaller = min(n_q, n_c) or 1
        cs = c.sets
        shared_org = _any_overlap(q_orgs, cs.orgs)
        am_c = cs.amounts
        days = None
        if q_at and c.submitted_at:
            days = abs((q_at - c.submitted_at).total_seconds()) / 86400.0
        shared_amount = bool(q_amounts & am_c)
        rows.append((
            word_cos,
            inter / union,
            inter / smaller,
            log1p(len(q_rare & c.rare_words)),
            log1p(len(q_rare - c.rare_words)),
            abs(log(q_len1 / (len(c.text) + 1))),
            float(bool(q_keys & c.petitioner_keys) or bool(q_ident & cs.ident)),
            float(_any_overlap(q_persons, cs.persons)),
            float(bool(q_sub and q_sub == c.subdivision)),
            float(bool(q_district and q_district == c.district)),
            float(bool(q_district and c.district and q_district != c.district)),
            float(_any_overlap(q_places, cs.places)),
            float(shared_org),
            float(bool(q_orgs and cs.orgs and not shared_org)),
            float(_any_overlap(q_officials, cs.officials)),
            float(shared_amount),
            float(bool(q_amounts and am_c and not shared_amount)),
            float(bool(q_cases & cs.case_numbers)),
            float(bool(q_plates & cs.plates)),
            log1p(days) if days is not None else 0.0,
            float(days is None),
            cue,
            cue * word_cos,
            word_cos,
            1.0,
        ))
    m = np.array(rows, dtype=np.float64)
    cos = m[:, _WORD_COS]
    order = np.sort(cos)[::-1]
    best, second = order[0], (order[1] if n > 1 else 0.0)
    top = cos == best
    m[:, _COS_GAP] = cos - np.where(top, second, best)
    m[:, _IS_TOP] = top
    return m


def add_query_context(feats: Sequence[dict[str, float]]) -> None:
    """Set the features that compare a candidate with the other candidates of the same petition.

    cos_gap: this candidate's word cosine minus the best other candidate's (0 when alone);
    is_top: 1 for the candidate(s) with the highest word cosine.
    """
    cos = [f["word_cos"] for f in feats]
    if not cos:
        return
    order = sorted(cos, reverse=True)
    best, second = order[0], (order[1] if len(order) > 1 else 0.0)
    for f in feats:
        other = second if f["word_cos"] == best else best
        f["cos_gap"] = f["word_cos"] - other
        f["is_top"] = float(f["word_cos"] == best)


def reasons_for(f: dict[str, float], days: float | None = None) -> list[str]:
    """Short Chinese reasons an officer reads next to the link (no names, numbers or text quoted)."""
    out = []
    if f["same_petitioner"]:
        out.append("同一信访人")
    elif f["same_person_name"]:
        out.append("同名信访人")
    if f["same_subdivision"]:
        out.append("同一街道/乡镇")
    elif f["district_same"]:
        out.append("同一区县")
    if f["shared_place_detail"]:
        out.append("同一地点")
    if f["shared_org"]:
        out.append("同一单位")
    if f["shared_official"]:
        out.append("同一被反映人")
    if f["shared_case_number"]:
        out.append("同一案号")
    if f["shared_plate"]:
        out.append("同一车牌")
    if f["shared_amount"]:
        out.append("金额相同")
    out.append(f"相似度{f['word_cos']:.2f}")
    if days is not None:
        out.append(f"间隔{int(round(days))}天")
    return out


@dataclass(frozen=True)
class LinkVerifier:
    """Standardised logistic regression + Platt calibration; `threshold` is the decision threshold."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    platt_a: float
    platt_b: float
    threshold: float
    version: str

    def margin(self, rows: np.ndarray) -> np.ndarray:
        return ((rows - self.mean) / self.scale) @ self.coef + self.intercept

    def probability(self, rows: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for feature rows [n, len(features)]."""
        z = self.platt_a * self.margin(rows) + self.platt_b
        return 1.0 / (1.0 + np.exp(-z))

    @functools.cached_property
    def columns(self) -> np.ndarray:
        """Where this model's features sit in a `feature_rows` matrix."""
        return np.asarray([_COL[name] for name in self.features], dtype=np.intp)

    def probability_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for a `feature_rows` matrix (all of FEATURES, in that order)."""
        return self.probability(rows[:, self.columns])

    def matrix(self, feats: Sequence[dict[str, float]]) -> np.ndarray:
        return np.asarray([[f[name] for name in self.features] for f in feats], dtype=np.float64).reshape(-1, len(self.features))

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "features": list(self.features), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "coef": self.coef.tolist(), "intercept": self.intercept,
                "platt": {"a": self.platt_a, "b": self.platt_b}, "threshold": self.threshold}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> LinkVerifier:
        """Raises ArtifactMismatchError when the file is missing or names features this code does not compute."""
        if not path.exists():
            raise ArtifactMismatchError(f"No link verifier at {path}. Train one with `triage train-linker`.")
        d = json.loads(path.read_text(encoding="utf-8"))
        unknown = [f for f in d["features"] if f not in FEATURES]
        if unknown:
            raise ArtifactMismatchError(f"{path}: verifier features {unknown} are not computed by this code; retrain it.")
        return cls(features=tuple(d["features"]), mean=np.asarray(d["mean"]), scale=np.asarray(d["scale"]),
                   coef=np.asarray(d["coef"]), intercept=float(d["intercept"]), platt_a=float(d["platt"]["a"]),
                   platt_b=float(d["platt"]["b"]), threshold=float(d["threshold"]), version=str(d["version"]))
