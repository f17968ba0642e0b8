"""Entity and district evaluation against gold spans (the written corpus carries them).

Per entity type: precision/recall/F1 with exact span match and with overlap match (a predicted
span counts when it overlaps a gold span of the same type, one-to-one). District accuracy over
records that carry a `district` gold (null gold = "no Chongqing place": correct when the
extractor resolves none).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from training.metrics import prf
from triage.schemas import Entities

Span = tuple[str, int, int]


def entity_scores(pairs: Iterable[tuple[list[Span], list[Span]]]) -> dict[str, dict[str, Any]]:
    """pairs of (gold spans, predicted spans) per record → per-type exact and overlap scores."""
    exact: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    overlap: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for gold, pred in pairs:
        gset, pset = set(gold), set(pred)
        for t in {s[0] for s in gset | pset}:
            g = [s for s in gset if s[0] == t]
            p = [s for s in pset if s[0] == t]
            tp = len(set(g) & set(p))
            exact[t][0] += tp
            exact[t][1] += len(p) - tp
            exact[t][2] += len(g) - tp
            used: set[Span] = set()
            otp = 0
            for ps in sorted(p, key=lambda s: s[1]):
                match = next((gs for gs in g if gs not in used and gs[1] < ps[2] and ps[1] < gs[2]), None)
                if match:
                    used.add(match)
                    otp += 1
            overlap[t][0] += otp
            overlap[t][1] += len(p) - otp
            overlap[t][2] += len(g) - otp
    out = {}
    for t in sorted(set(exact) | set(overlap)):
        out[t] = {"exact": prf(*exact[t]), "overlap": prf(*overlap[t]), "support": exact[t][0] + exact[t][2]}
    return out


def evaluate_entities(
    records: list[dict[str, Any]], extract: Callable[[dict[str, Any]], Entities]
) -> dict[str, Any]:
    pairs = []
    district_ok = district_n = 0
    for rec in records:
        ents = extract(rec)
        gold = [(e["type"], e["start"], e["end"]) for e in rec.get("entities") or []]
        pred = [(e.type, e.start, e.end) for e in ents.items]
        pairs.append((gold, pred))
        if "district" in rec:
            district_n += 1
            district_ok += int(ents.place.district == rec["district"])
    return {"entities": entity_scores(pairs),
            "district": {"accuracy": round(district_ok / district_n, 4) if district_n else None, "n": district_n}}


ENTITY_GOLD = ("entities", "district", "district_raw")
BASELINE_TYPES = {"nr": "person", "ns": "place", "nt": "org"}


def gold_spans(rec: dict[str, Any]) -> list[Span]:
    return [(e["type"], int(e["start"]), int(e["end"])) for e in rec.get("entities") or [] if isinstance(e, dict)]


def has_entity_gold(rows: list[dict[str, Any]]) -> bool:
    """Records carry span gold ({type,start,end} dicts) or a district key."""
    return any("district" in r or any(isinstance(e, dict) for e in r.get("entities") or []) for r in rows)


def posseg_spans(text: str) -> list[Span]:
    """jieba.posseg baseline: nr → person, ns → place, nt → org (the obvious off-the-shelf tagger)."""
    import jieba.posseg as pseg

    pos, out = 0, []
    for word, flag in pseg.cut(text):
        if flag in BASELINE_TYPES:
            out.append((BASELINE_TYPES[flag], pos, pos + len(word)))
        pos += len(word)
    return out


def entity_report(rows: list[dict[str, Any]], extractor: Any, *, baseline: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Entity and district metrics for `triage evaluate`, plus predictions per record id.

    Each record is stripped of its gold (entities, district, district_raw) before extraction; offsets
    index the normalised text, like the gold spans. Returns (report keys, {id: prediction}).
    `baseline` adds "entities_baseline": jieba.posseg on person/place/org with gold restricted to
    those types.
    """
    from triage.schemas import Petition

    pairs, base_pairs, preds = [], [], {}
    district_ok = district_n = 0
    for rec in rows:
        inp = {k: v for k, v in rec.items() if k not in ENTITY_GOLD}
        pet = Petition.model_validate({k: inp[k] for k in ("text", "title", "submitted_at", "channel") if k in inp})
        ents = extractor.extract(pet.text, pet)
        pred = [(e.type, e.start, e.end) for e in ents.items]
        gold = gold_spans(rec)
        pairs.append((gold, pred))
        if baseline:
            base_pairs.append(([g for g in gold if g[0] in BASELINE_TYPES.values()], posseg_spans(pet.text)))
        if "district" in rec:
            district_n += 1
            district_ok += int(ents.place.district == rec["district"])
        preds[str(rec.get("id"))] = {"entities": [{"type": t, "start": s, "end": e} for t, s, e in pred],
                                     "district": ents.place.district}
    report: dict[str, Any] = {}
    if any(g for g, _ in pairs):
        report["entities"] = entity_scores(pairs)
    if district_n:
        report["district"] = {"accuracy": round(district_ok / district_n, 4), "n": district_n}
    if baseline and base_pairs:
        report["entities_baseline"] = {"tagger": "jieba.posseg", **entity_scores(base_pairs)}
    return report, preds
