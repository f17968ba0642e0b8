"""Validate a writer's raw corpus file and print progress against the quotas.

Usage: python data/corpus/tools/check_raw.py data/corpus/raw/written_w1.jsonl [--quota w1]

A light, dependency-free (PyYAML only) check for writers; the full validation of the built
corpus is `triage data check`.
"""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
LABELS = yaml.safe_load((ROOT / "data/taxonomy/labels.yaml").read_text(encoding="utf-8"))
PLACES = yaml.safe_load((ROOT / "data/places/chongqing.yaml").read_text(encoding="utf-8"))

TRACKS = {t["code"] for t in LABELS["tracks"]}
DEPTS = {d["code"] for d in LABELS["departments"]}
RTYPES = {r["code"] for r in LABELS["request_types"]}
FLAGS = {f["code"] for f in LABELS["flags"]} - {"deadline_risk"}
DISTRICTS = {d["name"] for d in PLACES["districts"]}
ENTITY_TYPES = {"person", "official", "org", "place", "phone", "id_number", "bank_card", "amount",
                "date", "case_number", "plate", "headcount"}
STYLES = {"online": "online", "letter": "letter", "visit": "visit", "hotline": "phone"}
PLACEHOLDER = re.compile(r"\{(ID|PHONE|TEL|CARD):([a-z0-9]+)\}")
ID_RE = re.compile(r"^[A-Za-z0-9]+-\d{4,5}$")
DATE_RE = re.compile(r"^20(2[4-6])-\d\d-\d\dT\d\d:\d\d(:\d\d)?\+08:00$")
REQUIRED = ["id", "style", "channel", "submitted_at", "text", "track", "department", "request_type",
            "flags", "district", "district_raw", "duplicate_of", "hard_negative_of", "entities"]


def check(path: Path) -> int:
    errors: list[str] = []
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {lineno}: not valid JSON ({exc})")
            continue
        records.append((lineno, rec))
    ids: dict[str, int] = {}
    for lineno, r in records:
        where = f"line {lineno} ({r.get('id')})"
        for key in REQUIRED:
            if key not in r:
                errors.append(f"{where}: missing field {key!r}")
        rid = r.get("id", "")
        if not ID_RE.match(str(rid)):
            errors.append(f"{where}: id must look like W1-0001")
        if rid in ids:
            errors.append(f"{where}: id repeats line {ids[rid]}")
        ids[rid] = lineno
        if r.get("style") not in STYLES:
            errors.append(f"{where}: style must be one of {sorted(STYLES)}")
        elif r.get("channel") != STYLES[r["style"]]:
            errors.append(f"{where}: channel for style {r['style']} must be {STYLES[r['style']]}")
        if not DATE_RE.match(str(r.get("submitted_at", ""))):
            errors.append(f"{where}: submitted_at must be ISO 2024-2026 with +08:00")
        if r.get("track") not in TRACKS:
            errors.append(f"{where}: unknown track {r.get('track')!r}")
        if r.get("department") not in DEPTS:
            errors.append(f"{where}: unknown department {r.get('department')!r}")
        for c in r.get("co_departments") or []:
            if c not in DEPTS or c == r.get("department"):
                errors.append(f"{where}: bad co_department {c!r}")
        if r.get("request_type") not in RTYPES:
            errors.append(f"{where}: unknown request_type {r.get('request_type')!r}")
        for f in r.get("flags") or []:
            if f not in FLAGS:
                errors.append(f"{where}: unknown flag {f!r}")
        text = r.get("text") or ""
        if not text.strip():
            errors.append(f"{where}: empty text")
        d = r.get("district")
        if d is not None and d not in DISTRICTS:
            errors.append(f"{where}: district {d!r} is not one of the 37 official names")
        if d is None and "place_unknown" not in (r.get("flags") or []):
            errors.append(f"{where}: district null needs flag place_unknown")
        if d is not None and "place_unknown" in (r.get("flags") or []):
            errors.append(f"{where}: place_unknown but district set")
        raw = r.get("district_raw")
        if raw and raw not in text:
            errors.append(f"{where}: district_raw {raw!r} does not occur in the text")
        if r.get("track") == "discipline" and "confidential" not in (r.get("flags") or []):
            errors.append(f"{where}: discipline track needs flag confidential")
        for ent in r.get("entities") or []:
            if not (isinstance(ent, list) and len(ent) == 2):
                errors.append(f"{where}: entity {ent!r} must be [type, surface]")
                continue
            etype, surface = ent
            if etype not in ENTITY_TYPES:
                errors.append(f"{where}: unknown entity type {etype!r}")
            if not surface or surface not in text:
                errors.append(f"{where}: entity {surface!r} not found in text")
        for m in PLACEHOLDER.finditer(text):
            if not m.group(2).startswith(str(rid).split("-")[0].lower()):
                errors.append(f"{where}: placeholder key {m.group(2)!r} should start with your writer id")
        stray = re.sub(PLACEHOLDER, "", text)
        if re.search(r"\{[A-Z]+:", stray):
            errors.append(f"{where}: malformed placeholder")
        if re.search(r"\d{15,19}", stray):
            errors.append(f"{where}: write ID/card numbers as placeholders, not digits")
        if re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", stray):
            errors.append(f"{where}: write phone numbers as placeholders")
    by_id = {r["id"]: r for _, r in records if "id" in r}
    for lineno, r in records:
        for key in ("duplicate_of", "hard_negative_of"):
            ref = r.get(key)
            if ref is None:
                continue
            if ref not in by_id:
                errors.append(f"line {lineno} ({r.get('id')}): {key} {ref!r} is not an id in this file")
            elif by_id[ref].get("submitted_at", "") >= r.get("submitted_at", ""):
                errors.append(f"line {lineno} ({r.get('id')}): {key} must point to an EARLIER record")
            elif key == "duplicate_of" and by_id[ref].get("duplicate_of"):
                errors.append(f"line {lineno} ({r.get('id')}): duplicate_of must point to the earliest record of the group")

    for e in errors[:200]:
        print("ERROR", e)
    recs = [r for _, r in records]
    count = collections.Counter
    print(f"\n{len(recs)} records, {len(errors)} errors")
    print("styles:", dict(count(r.get("style") for r in recs)))
    print("tracks:", dict(count(r.get("track") for r in recs).most_common()))
    print("departments:", dict(count(r.get("department") for r in recs).most_common()))
    print("request_types:", dict(count(r.get("request_type") for r in recs).most_common()))
    print("flags:", dict(count(f for r in recs for f in r.get("flags") or []).most_common()))
    dist = count(r.get("district") for r in recs)
    print("districts:", dict(dist.most_common()))
    missing = sorted(DISTRICTS - set(dist))
    print("districts with < 5:", sorted(d for d in DISTRICTS if dist.get(d, 0) < 5), "missing:", missing)
    groups = {r["duplicate_of"] for r in recs if r.get("duplicate_of")}
    print("re-submission groups:", len(groups), "re-submissions:", sum(1 for r in recs if r.get("duplicate_of")),
          "hard negatives:", sum(1 for r in recs if r.get("hard_negative_of")))
    lengths = sorted(len(r.get("text") or "") for r in recs)
    if lengths:
        print("text length min/median/max:", lengths[0], lengths[len(lengths) // 2], lengths[-1])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(check(Path(sys.argv[1])))
