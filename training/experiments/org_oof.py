"""Out-of-fold organisation F1 over written train+dev: the yardstick the organisation tagger is chosen by (issue 6).

    .venv/bin/python -m training.experiments.org_oof [--folds 5] [--only 0,1] [--frac 1.0] [--c2 0.01] [--bits 16]
        [--json var/eval/org-oof.json]

Dev-chosen extractor changes did not carry to the written test split three times, so choices about the tagger are
made here: the written train+dev records (3,215) are cut into K folds by their `group` (linked records stay
together; sha256 of "oof:" + group, independent of training/orgs.py's lexicon folds); each fold is extracted by the
WHOLE served extractor (patterns, gazetteer, LAC, convention names) with an organisation tagger — CRF weights and
name lexicon — fitted (training/orgs.train_crf) on the other folds only, optionally on a seeded share `--frac` of
their groups (learning curve). Prints one JSON object: per fold tp/fp/fn and exact F1, mean ± sd over folds and
the pooled F1. The test split is never read. LAC words are cached under var/cache/orgs/ (training/orgs.py).
A full 5-fold run fits five CRFs: 2.5–3 minutes each on a quiet 2-core machine (two processes at once, `--only
0,1,2` and `--only 3,4`), up to 50 minutes each under heavy load.

Session 6 (orgs-2 configuration, c2 0.01, bits 16): folds 0.856 / 0.867 / 0.855 / 0.831 / 0.844, 0.850 ± 0.014,
pooled 0.850 (tp 2090, fp 276, fn 461) — first with the scratch harness this module was made from (load 6–12), then
reproduced fold for fold by this module (load ~1); fold 0 with 50% / 75% of the other folds' groups 0.841 / 0.852;
c2 0.003 and 0.03 on fold 0 0.856, the same as 0.01; 2^18 hashed feature rows (`--bits 18`) 0.855 / 0.869 / 0.854 /
0.830 / 0.842, 0.850 — no gain from fewer collisions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.orgs import (
    CORPUS,
    STATE_C,
    Example,
    load_examples,
    load_real_examples,
    load_supplement_examples,
    real_answers,
    train_crf,
)
from triage.entities import EntityExtractor
from triage.schemas import Petition
from triage.taxonomy import load_taxonomy
from triage.words import ner_spans


class CachedWords:
    """The LAC tagger's interface over words already computed for these texts (load_examples caches them)."""

    def __init__(self, version: str, words: dict[str, list[tuple[int, int, str]]]) -> None:
        self.version = version
        self._words = words

    def words(self, text: str) -> list[tuple[int, int, str]]:
        return self._words[text]

    def tag(self, text: str) -> list[tuple[int, int, str]]:
        return ner_spans(text, self.words(text))


class CachedWordStates(CachedWords):
    """CachedWords with LAC's encoder states too (for a tagger with a state layer)."""

    def __init__(self, version: str, words: dict[str, list[tuple[int, int, str]]], states: dict[str, np.ndarray]) -> None:
        super().__init__(version, words)
        self._states = states

    def words_states(self, text: str) -> tuple[list[tuple[int, int, str]], np.ndarray]:
        return self._words[text], self._states[text]


def outer_fold(group: str, k: int) -> int:
    return int(hashlib.sha256(("oof:" + group).encode()).hexdigest(), 16) % k


def org_counts(extractor: EntityExtractor, records: list[dict[str, Any]]) -> tuple[int, int, int]:
    """Exact-span organisation tp, fp, fn of the served extractor on `records` (gold stripped: text and title only)."""
    tp = fp = fn = 0
    for rec in records:
        petition = Petition.model_validate({k: rec[k] for k in ("text", "title", "submitted_at", "channel") if k in rec})
        pred = {(e.start, e.end) for e in extractor.extract(petition.text, petition).items if e.type == "org"}
        gold = {(int(e["start"]), int(e["end"])) for e in rec.get("entities") or [] if e.get("type") == "org"}
        tp, fp, fn = tp + len(pred & gold), fp + len(pred - gold), fn + len(gold - pred)
    return tp, fp, fn


def f1(tp: int, fp: int, fn: int) -> float:
    return round(2 * tp / (2 * tp + fp + fn), 4) if tp else 0.0


def run(folds: int, only: list[int] | None, frac: float, c2: float, bits: int, seed: int = 0, states: bool = False,
        state_c: float = STATE_C, real: list[Path] | None = None,
        augment: bool = False, supplement: list[Path] | None = None, supplement_domain: str = "written",
        save_taggers: Path | None = None) -> dict[str, Any]:
    from serving.ner import LacTagger

    taxonomy = load_taxonomy()
    lac = LacTagger()
    rules = EntityExtractor(taxonomy.gazetteer, lac, departments=taxonomy.responsibilities.values(), org_tagger=None)
    examples: list[Example] = load_examples("train", rules, lac, states) + load_examples("dev", rules, lac, states)
    records = [json.loads(line) for split in ("train", "dev")
               for line in (CORPUS / f"{split}.jsonl").open(encoding="utf-8") if line.strip()]
    words = {x.text: x.words for x in examples}
    cached = (CachedWordStates(lac.version, words, {x.text: x.states for x in examples if x.states is not None}) if states
              else CachedWords(lac.version, words))
    fold_of = [outer_fold(x.group, folds) for x in examples]
    # real messages read for organisations: added to every fold's fit, never scored
    extra = load_real_examples(rules, lac, states, real_answers(real or None)) if real is not None else []
    sup = (load_supplement_examples(rules, lac, states, supplement or None, supplement_domain) if supplement is not None
           else [])
    out: dict[str, Any] = {"records": len(examples), "folds": folds, "frac": frac, "c2": c2, "bits": bits, "per_fold": {}}
    if real is not None:
        out.update(real_records=len(extra), real_org_spans=sum(len(x.gold) for x in extra))
    if supplement is not None:
        out.update(supplement_records=len(sup), supplement_org_spans=sum(len(x.gold) for x in sup),
                   supplement_domain=supplement_domain)
    extra += sup
    if augment:
        out.update(augment=True)
    if states:
        out.update(states=True, state_c=state_c)
    for k in only if only is not None else range(folds):
        t0 = time.perf_counter()
        fit = [x for x, f in zip(examples, fold_of, strict=True) if f != k]
        if frac < 1.0:
            groups = sorted({x.group for x in fit})
            keep = set(random.Random(seed + k).sample(groups, round(frac * len(groups))))
            fit = [x for x in fit if x.group in keep]
        tagger = train_crf(fit + extra, bits, 0.0, c2, 200, states=states, state_c=state_c, augment=augment)
        if save_taggers is not None:  # for decode-time experiments on the same fold taggers (org_rerank)
            tagger.save(save_taggers / f"fold{k}-of{folds}.npz", {"fold": k, "folds": folds})
        served = EntityExtractor(taxonomy.gazetteer, cached, departments=taxonomy.responsibilities.values(), org_tagger=tagger)
        counts = org_counts(served, [r for r, f in zip(records, fold_of, strict=True) if f == k])
        out["per_fold"][k] = {"fit_records": len(fit), "tp_fp_fn": counts, "f1": f1(*counts),
                              "seconds": round(time.perf_counter() - t0)}
        print(f"fold {k}: {json.dumps(out['per_fold'][k])}", file=sys.stderr, flush=True)  # progress of a long run
    scores = [v["f1"] for v in out["per_fold"].values()]
    pooled = [sum(v["tp_fp_fn"][i] for v in out["per_fold"].values()) for i in range(3)]
    out.update(mean=round(statistics.mean(scores), 4), sd=round(statistics.stdev(scores), 4) if len(scores) > 1 else 0.0,
               pooled=f1(*pooled), pooled_tp_fp_fn=pooled)
    return out


def emit(result: dict[str, Any], path: Path | None) -> None:
    """Print a harness's result as JSON, and also write it to `path` when given (the experiments' common output)."""
    text = json.dumps(result, ensure_ascii=False, indent=1)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only", help="comma-separated fold numbers to run (default: all)")
    ap.add_argument("--frac", type=float, default=1.0, help="share of the other folds' groups the tagger is fitted on")
    ap.add_argument("--c2", type=float, default=0.01)
    ap.add_argument("--bits", type=int, default=16)
    ap.add_argument("--states", action="store_true", help="the tagger also reads LAC's encoder states (orgs-4, orgs-5)")
    ap.add_argument("--state-c", type=float, default=STATE_C, help="with --states: the state layer's inverse L2 penalty")
    ap.add_argument("--real", type=Path, nargs="*",
                    help="also fit every fold on real messages read for organisations: these answer files "
                         "(none given: all data/corpus/real/orgs_*.jsonl)")
    ap.add_argument("--supplement", type=Path, nargs="*",
                    help="also fit every fold on the organisation supplement: these files "
                         "(none given: all data/corpus/supplement/orgs_W*.jsonl)")
    ap.add_argument("--supplement-domain", choices=("written", "supplement"), default="written",
                    help="the supplement's domain under --augment (its own copies, or the written ones)")
    ap.add_argument("--augment", action="store_true",
                    help="feature augmentation by domain (training.orgs.train_crf): with --real, or --supplement "
                         "--supplement-domain supplement")
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--save-taggers", type=Path, metavar="DIR", help="also save each fold's tagger as DIR/fold<k>-of<K>.npz")
    args = ap.parse_args()
    only = [int(x) for x in args.only.split(",")] if args.only else None
    result = run(args.folds, only, args.frac, args.c2, args.bits, states=args.states, state_c=args.state_c,
                 real=args.real, augment=args.augment, supplement=args.supplement,
                 supplement_domain=args.supplement_domain, save_taggers=args.save_taggers)
    emit(result, args.json)


if __name__ == "__main__":
    main()
