"""Validate a labeller's file of real-message labels. Usage: python check_labels.py FILE"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import yaml

from training.corpus import SOURCE_KEY

ROOT = Path(__file__).resolve().parents[3]
LABELS = yaml.safe_load((ROOT / "data/taxonomy/labels.yaml").read_text(encoding="utf-8"))
TRACKS = {t["code"] for t in LABELS["tracks"]}
DEPTS = {d["code"] for d in LABELS["departments"]}
RTYPES = {r["code"] for r in LABELS["request_types"]}
FLAGS = {"group", "risk", "repeat", "confidential", "pii_sensitive"}
SOURCES = {*SOURCE_KEY, "written"}  # the real corpus sources (training.corpus), and written records


def main(path: Path) -> int:
    errors, rows, seen = [], [], set()
    who = path.stem.removeprefix("labels_")
    selection = ROOT / "data/corpus/real/work" / f"selection_{who}.jsonl"
    selected = set()
    if selection.exists():
        for line in selection.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            selected.add((r["source"], str(r["key"])))
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {n}: bad JSON {exc}")
            continue
        rows.append(r)
        w = f"line {n} ({r.get('source')}:{r.get('key')})"
        if r.get("source") not in SOURCES:
            errors.append(f"{w}: unknown source")
        k = (r.get("source"), str(r.get("key")))
        if k in seen:
            errors.append(f"{w}: labelled twice")
        if selected and k not in selected:
            errors.append(f"{w}: this source/key is not in your selection (typo in key?)")
        seen.add(k)
        if r.get("track") not in TRACKS:
            errors.append(f"{w}: unknown track {r.get('track')!r}")
        if r.get("department") not in DEPTS:
            errors.append(f"{w}: unknown department {r.get('department')!r}")
        for c in r.get("co_departments") or []:
            if c not in DEPTS:
                errors.append(f"{w}: unknown co_department {c!r}")
        if r.get("request_type") not in RTYPES:
            errors.append(f"{w}: unknown request_type {r.get('request_type')!r}")
        for f in r.get("flags") or []:
            if f not in FLAGS:
                errors.append(f"{w}: flag {f!r} not allowed here")
        if r.get("confidence") not in {"high", "medium", "low"}:
            errors.append(f"{w}: confidence must be high/medium/low")
        elif r["confidence"] != "high" and not r.get("second_choice"):
            errors.append(f"{w}: second_choice required when confidence is not high")
        sc = r.get("second_choice") or {}
        if sc.get("track") and sc["track"] not in TRACKS or sc.get("department") and sc["department"] not in DEPTS:
            errors.append(f"{w}: bad second_choice {sc}")
        if r.get("track") == "discipline" and "confidential" not in (r.get("flags") or []):
            errors.append(f"{w}: discipline needs flag confidential")
        if r.get("selection", "active") != "active":
            errors.append(f"{w}: selection is either absent (a sampled message) or \"active\" (searched out)")
        if not str(r.get("label_source", "")).startswith("read:"):
            errors.append(f"{w}: label_source must be read:<you>")
    for e in errors[:100]:
        print("ERROR", e)
    c = collections.Counter
    print(f"{len(rows)} rows, {len(errors)} errors")
    print("tracks:", dict(c(r.get("track") for r in rows).most_common()))
    print("departments:", dict(c(r.get("department") for r in rows).most_common()))
    print("request_types:", dict(c(r.get("request_type") for r in rows).most_common()))
    print("confidence:", dict(c(r.get("confidence") for r in rows)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
