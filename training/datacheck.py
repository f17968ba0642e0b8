"""`triage data check`: validate the labelled corpus and print its distributions.

Checks: the built written corpus is up to date with the raw files; every record's schema, codes,
entity spans and identifier checksums; split leakage (a duplicate group across splits, exact text
repeats and near-duplicates across splits by MinHash-LSH over character 5-grams); the real-message
labels (codes, keys present in the public data, no message labelled twice); writer phrasing
overlap. Quotas from the corpus issues are reported as met / NOT MET.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.corpus import (
    CORPUS_DIR,
    PUBLIC_DIR,
    SPLITS,
    build_written,
    load_real_labels,
    materialize_real,
    near_duplicate_pairs,
    read_jsonl,
    real_splits,
    validate_written_record,
)
from triage.taxonomy import Taxonomy

QUOTAS_WRITTEN = {"records": 3000, "per_track": 150, "per_department": 40, "per_flag": 60, "per_district": 15,
                  "duplicate_groups": 400, "hard_negatives": 400}
QUOTAS_REAL = {"records": 2000, "replies": 400, "verified_pairs": 300, "pair_hard_negatives": 200}
LABELLED_FLAGS = ("group", "risk", "repeat", "confidential", "pii_sensitive", "place_unknown")


@dataclass
class CheckResult:
    errors: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    targets: dict[str, bool] = field(default_factory=dict)

    def say(self, line: str = "") -> None:
        self.lines.append(line)

    def target(self, name: str, value: int, minimum: int) -> None:
        ok = value >= minimum
        self.targets[name] = ok
        self.say(f"  {'met    ' if ok else 'NOT MET'}  {name}: {value} (>= {minimum})")


def near_duplicates_across_splits(records: list[dict[str, Any]], threshold: float = 0.7) -> list[tuple[str, str, float]]:
    """Near-duplicate pairs (see corpus.near_duplicate_pairs) that sit in different splits and groups."""
    by_id = {r["id"]: r for r in records}
    return [
        (a, b, j) for a, b, j in near_duplicate_pairs(records, threshold)
        if by_id[a]["split"] != by_id[b]["split"] and by_id[a].get("group", a) != by_id[b].get("group", b)
    ]


def _distribution(result: CheckResult, title: str, counter: Counter[Any], order: list[str] | None = None) -> None:
    keys = order if order is not None else [k for k, _ in counter.most_common()]
    result.say(f"{title}: " + ", ".join(f"{k} {counter.get(k, 0)}" for k in keys))


def phrasing_overlap(records: list[dict[str, Any]], n: int = 12) -> tuple[float, float, list[tuple[str, int]]]:
    """Share of records whose opening 8 characters repeat another record's, share of records that
    share a 12-character passage with a record of ANOTHER writer, and the most repeated passages."""
    # Digits are masked so filled-in identifiers (all IDs start 500…) do not count as shared phrasing.
    def masked(text: str) -> str:
        return re.sub(r"\d", "0", re.sub(r"\s+", "", text))

    openings = Counter(masked(r["text"])[:8] for r in records)
    repeated_openings = sum(1 for r in records if openings[masked(r["text"])[:8]] > 1) / max(1, len(records))
    owners: dict[str, set[str]] = defaultdict(set)
    grams_of: dict[str, set[str]] = {}
    for r in records:
        t = masked(r["text"])
        grams = {t[i:i + n] for i in range(0, max(0, len(t) - n + 1))}
        grams = {g for g in grams if g.count("0") <= 3}  # identifier runs are not phrasing
        grams_of[r["id"]] = grams
        for g in grams:
            owners[g].add(r.get("writer", ""))
    shared = {g for g, w in owners.items() if len(w) > 1}
    cross = sum(1 for r in records if grams_of[r["id"]] & shared) / max(1, len(records))
    counts = Counter(g for r in records for g in grams_of[r["id"]] if g in shared)
    return repeated_openings, cross, counts.most_common(5)


def check_written(taxonomy: Taxonomy, corpus_dir: Path, result: CheckResult) -> list[dict[str, Any]]:
    out_dir = corpus_dir / "written"
    report = build_written(taxonomy, corpus_dir, write=False)
    stale = [s for s in SPLITS
             if not (out_dir / f"{s}.jsonl").exists()
             or (out_dir / f"{s}.jsonl").read_text(encoding="utf-8") != report.rendered[s]]
    if stale:
        result.errors.append(
            f"data/corpus/written/{{{','.join(stale)}}}.jsonl are out of date with data/corpus/raw: "
            "run `triage data build` and commit them")
    result.errors.extend(report.problems)
    records = [json.loads(line) for s in SPLITS for line in report.rendered[s].splitlines()]
    seen: dict[str, str] = {}
    for r in records:
        for p in validate_written_record(r, taxonomy):
            result.errors.append(f"written {r.get('id')}: {p}")
        if r["id"] in seen:
            result.errors.append(f"written {r['id']}: id appears twice")
        seen[r["id"]] = r["split"]
    ids = {r["id"] for r in records}
    group_splits: dict[str, set[str]] = defaultdict(set)
    for r in records:
        group_splits[r["group"]].add(r["split"])
        for f in ("duplicate_of", "hard_negative_of"):
            if r.get(f) and r[f] not in ids:
                result.errors.append(f"written {r['id']}: {f} {r[f]!r} is not a record id")
    for g, splits in group_splits.items():
        if len(splits) > 1:
            result.errors.append(f"written group {g} straddles splits {sorted(splits)}")
    texts: dict[str, str] = {}
    for r in records:
        key = re.sub(r"\s+", "", r["text"])
        if key in texts and seen[texts[key]] != r["split"]:
            result.errors.append(f"written {r['id']}: same text as {texts[key]} in another split")
        texts.setdefault(key, r["id"])
    near = near_duplicates_across_splits(records)
    for a, b, j in near:
        result.errors.append(f"written {a} and {b}: near-duplicates (Jaccard {j}) in different splits")

    result.say(f"written corpus: {len(records)} records; " + ", ".join(
        f"{s} {sum(1 for r in records if r['split'] == s)}" for s in SPLITS))
    c = Counter
    _distribution(result, "  style", c(r.get("style") for r in records))
    _distribution(result, "  writer", c(r.get("writer") for r in records))
    tracks, depts = c(r["track"] for r in records), c(r["department"] for r in records)
    flags = c(f for r in records for f in r.get("flags") or [])
    dists = c(r.get("district") for r in records)
    _distribution(result, "  track", tracks, taxonomy.codes("tracks"))
    _distribution(result, "  department", depts, taxonomy.codes("departments"))
    _distribution(result, "  request_type", c(r["request_type"] for r in records), taxonomy.codes("request_types"))
    _distribution(result, "  flags", flags, list(LABELLED_FLAGS))
    _distribution(result, "  district", dists, sorted(taxonomy.gazetteer.names) + [None])  # type: ignore[list-item]
    lengths = sorted(len(r["text"]) for r in records) or [0]
    result.say(f"  text length: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]}")
    ents = c(e["type"] for r in records for e in r.get("entities") or [])
    _distribution(result, "  entities", ents)
    dup_groups = {r["duplicate_of"] for r in records if r.get("duplicate_of")}
    hard = sum(1 for r in records if r.get("hard_negative_of"))
    result.say(f"  duplicates: {len(dup_groups)} groups, {sum(1 for r in records if r.get('duplicate_of'))} "
               f"re-submissions; {hard} hard negatives")
    rep, cross, top = phrasing_overlap(records)
    result.say(f"  phrasing: {rep:.1%} of records share their first 8 characters with another; "
               f"{cross:.1%} share a 12-character passage with another writer's record")
    if top:
        result.say("  most shared cross-writer passages: " + "; ".join(f"{g} ×{n}" for g, n in top))
    result.say("  targets (corpus part 1):")
    result.target("records", len(records), QUOTAS_WRITTEN["records"])
    result.target("smallest track", min(tracks.get(t, 0) for t in taxonomy.codes("tracks")),
                  QUOTAS_WRITTEN["per_track"])
    result.target("smallest department", min(depts.get(d, 0) for d in taxonomy.codes("departments")),
                  QUOTAS_WRITTEN["per_department"])
    result.target("smallest flag", min(flags.get(f, 0) for f in LABELLED_FLAGS), QUOTAS_WRITTEN["per_flag"])
    result.target("smallest district", min(dists.get(d, 0) for d in taxonomy.gazetteer.names),
                  QUOTAS_WRITTEN["per_district"])
    result.target("duplicate groups", len(dup_groups), QUOTAS_WRITTEN["duplicate_groups"])
    result.target("hard negatives", hard, QUOTAS_WRITTEN["hard_negatives"])
    return records


def check_real(taxonomy: Taxonomy, corpus_dir: Path, public_dir: Path, result: CheckResult) -> None:
    labels = load_real_labels(corpus_dir)
    codes = {k: set(taxonomy.codes(v)) for k, v in taxonomy.field_kinds.items()}
    seen: dict[tuple[str, str], str] = {}
    for lab in labels:
        where = f"{lab['labeller_file']} {lab.get('source')}:{lab.get('key')}"
        for f, allowed in codes.items():
            if lab.get(f) not in allowed:
                result.errors.append(f"{where}: unknown {f} {lab.get(f)!r}")
        k = (lab.get("source"), str(lab.get("key")))
        if k in seen:
            result.errors.append(f"{where}: also labelled in {seen[k]}")
        seen[k] = lab["labeller_file"]
    if not public_dir.exists():
        result.say(f"real corpus: {len(labels)} labels (texts not checked: {public_dir} absent)")
        return
    try:
        records = materialize_real(public_dir, corpus_dir)
    except (KeyError, FileNotFoundError) as exc:
        result.errors.append(str(exc))
        return
    splits = real_splits(records)
    for a, b, j in near_duplicates_across_splits(records):
        result.errors.append(f"real {a} and {b}: near-duplicates (Jaccard {j}) in different splits")
    dup_groups = sum(1 for n in Counter(r["group"] for r in records).values() if n > 1)
    c = Counter
    result.say(f"real corpus: {len(records)} labelled messages; " + ", ".join(
        f"{s} {len(splits.get(s, []))}" for s in (*SPLITS, "active", "excluded"))
        + f"; {dup_groups} near-duplicate groups kept within a split")
    _distribution(result, "  source", c(r["source"] for r in records))
    _distribution(result, "  topic (board label)", c(r["topic"] for r in records if r.get("topic")))
    _distribution(result, "  track", c(r["track"] for r in records), taxonomy.codes("tracks"))
    _distribution(result, "  department", c(r["department"] for r in records))
    _distribution(result, "  request_type", c(r["request_type"] for r in records), taxonomy.codes("request_types"))
    _distribution(result, "  confidence", c(r.get("confidence") for r in records))
    pairs_path = corpus_dir / "real" / "hot_pairs_verified.jsonl"
    pairs = [p for _, p in read_jsonl(pairs_path)] if pairs_path.exists() else []
    silver = [p for p in pairs if p.get("origin") == "silver"]
    same = sum(1 for p in silver if p.get("verdict") == "same")
    hard = [p for p in pairs if p.get("origin") == "hard_negative"]
    result.say(f"  hot-issue pairs: {len(silver)} silver pairs verified, {same} same matter "
               f"({same / max(1, len(silver)):.1%}); {len(hard)} hard negatives found")
    result.say("  targets (corpus part 2):")
    result.target("labelled real messages", len(records), QUOTAS_REAL["records"])
    result.target("replies labelled", sum(1 for r in records if r["source"] == "teddy2020_replies"),
                  QUOTAS_REAL["replies"])
    result.target("silver pairs verified", len(silver), QUOTAS_REAL["verified_pairs"])
    result.target("pair hard negatives", len(hard), QUOTAS_REAL["pair_hard_negatives"])


def run_check(taxonomy: Taxonomy, corpus_dir: Path = CORPUS_DIR, public_dir: Path = PUBLIC_DIR) -> CheckResult:
    result = CheckResult()
    check_written(taxonomy, corpus_dir, result)
    check_real(taxonomy, corpus_dir, public_dir, result)
    return result


def to_json(result: CheckResult) -> str:
    return json.dumps({"errors": result.errors, "targets": result.targets}, ensure_ascii=False)
