"""Dump every duplicate link (case id, probability, reasons, status, same petitioner) of the linking splits.

Run it with two trees and compare the outputs to check that a performance change left linking identical:

    .venv/bin/python bench/link_identity.py --out /tmp/after.json                       # this tree
    cd /tmp/before && /work/main/.venv/bin/python bench/link_identity.py --out /tmp/before.json
    .venv/bin/python bench/link_identity.py --compare /tmp/before.json /tmp/after.json

Each split is linked twice: at the linker's threshold (the served links) and at threshold 0 (the five most
probable candidates of every petition, so probabilities below the threshold are compared too).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def dump(splits: list[str], ner: bool) -> dict[str, Any]:
    from training.linking_eval import evaluate_links

    out: dict[str, Any] = {}
    base = ROOT / "data" / "datasets" / "linking"
    for split in splits:
        for threshold in (None, 0.0):
            ev = evaluate_links(base / f"{split}-eval.jsonl", base / f"{split}-history.jsonl", ner=ner, threshold=threshold)
            metrics = {k: v for k, v in ev.metrics.items() if k != "link_latency_ms"}
            out[f"{split}@{'default' if threshold is None else threshold}"] = {"metrics": metrics, "links": ev.links}
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
    bad = 0
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            print(f"{key}: only in one file")
            bad += 1
            continue
        if a[key]["metrics"] != b[key]["metrics"]:
            print(f"{key}: metrics differ: {a[key]['metrics']} != {b[key]['metrics']}")
            bad += 1
        la, lb = a[key]["links"], b[key]["links"]
        diff = [r for r in sorted(set(la) | set(lb)) if la.get(r) != lb.get(r)]
        n_links = sum(len(v) for v in la.values())
        print(f"{key}: {len(la)} records, {n_links} links, {len(diff)} records differ")
        bad += len(diff)
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--split", action="append", help="dev, test (default both)")
    ap.add_argument("--no-ner", action="store_true")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = ap.parse_args()
    if args.compare:
        a, b = (json.loads(p.read_text(encoding="utf-8")) for p in args.compare)
        sys.exit(1 if compare(a, b) else 0)
    if not args.out:
        ap.error("--out or --compare is required")
    data = dump(args.split or ["dev", "test"], ner=not args.no_ner)
    args.out.write_text(json.dumps(data, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    print(json.dumps({k: v["metrics"] for k, v in data.items()}, ensure_ascii=False))


if __name__ == "__main__":
    main()
