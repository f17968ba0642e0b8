"""Entity extraction: quality by source and speed, in one run.

    .venv/bin/python bench/entities.py [--split dev|test]

Compares on the written corpus split (gold spans):
  - jieba.posseg baseline (nr → person, ns → place, nt → org) — the obvious off-the-shelf tagger;
  - patterns + gazetteer (no statistical NER);
  - patterns + gazetteer + LAC (the shipped extractor).
Reports per-type F1 (exact / overlap), district accuracy, ms per petition and characters/s, and
LAC's share of extraction time. Ratios are within this run (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from serving.ner import LacTagger
from training.entity_eval import entity_scores, evaluate_entities
from triage.entities import EntityExtractor
from triage.schemas import Petition
from triage.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parent.parent


def posseg_baseline(records: list[dict]) -> dict:
    import jieba.posseg as pseg

    mapping = {"nr": "person", "ns": "place", "nt": "org"}
    pairs = []
    for r in records:
        text = Petition.model_validate(r).text
        pos, pred = 0, []
        for w, flag in pseg.cut(text):
            if flag in mapping:
                pred.append((mapping[flag], pos, pos + len(w)))
            pos += len(w)
        gold = [(e["type"], e["start"], e["end"]) for e in r["entities"] if e["type"] in mapping.values()]
        pairs.append((gold, pred))
    return entity_scores(pairs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="dev")
    args = ap.parse_args()
    records = [json.loads(line) for line in (ROOT / f"data/corpus/written/{args.split}.jsonl").open(encoding="utf-8")]
    petitions = [Petition.model_validate(r) for r in records]
    g = load_taxonomy().gazetteer
    lac = LacTagger()
    results = {"split": args.split, "n": len(records)}
    results["jieba_posseg"] = posseg_baseline(records)
    for name, ner in (("patterns_gazetteer", None), ("patterns_gazetteer_lac", lac)):
        x = EntityExtractor(g, ner)
        by_id = {id(r): p for r, p in zip(records, petitions, strict=True)}
        results[name] = evaluate_entities(records, lambda r, x=x: x.extract(by_id[id(r)].text, by_id[id(r)]))
        times = []
        for p in petitions:
            t = time.perf_counter()
            x.extract(p.text, p)
            times.append((time.perf_counter() - t) * 1000)
        chars = sum(len(p.text) for p in petitions)
        results[name]["total_ms"] = round(sum(times), 1)
        results[name]["ms_p50"] = round(statistics.median(times), 2)
        results[name]["chars_per_s"] = round(chars / (sum(times) / 1000))
    lac_times = []
    for p in petitions:
        t = time.perf_counter()
        lac.tag(p.text)
        lac_times.append((time.perf_counter() - t) * 1000)
    results["lac_share_of_extraction"] = round(sum(lac_times) / results["patterns_gazetteer_lac"]["total_ms"], 3)
    # 500-character petitions: concatenate texts to ~500 characters.
    long_texts, buf = [], ""
    for p in petitions:
        buf += p.text
        if len(buf) >= 500:
            long_texts.append(buf[:500])
            buf = ""
    x = EntityExtractor(g, lac)
    times = []
    for t500 in long_texts:
        t = time.perf_counter()
        x.extract(t500, None)
        times.append((time.perf_counter() - t) * 1000)
    results["500_chars"] = {"n": len(times), "ms_p50": round(statistics.median(times), 2),
                            "ms_p99": round(sorted(times)[int(0.99 * (len(times) - 1))], 2),
                            "chars_per_s": round(500 * len(times) / (sum(times) / 1000))}
    print(json.dumps(results, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
