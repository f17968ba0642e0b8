"""Distil LAC's words into the fast word tagger (triage/words.py), trained on LAC's output for written TRAIN texts.

    .venv/bin/python -m training.words [--extra 1000] [--public unlabeled|all] [--c2 0.01] [--max-iter 60] [--bits 17]
                                       [--out models/entities/word_tagger.npz]

Silver labels: LAC (serving/ner.py) words of the written corpus TRAIN split texts (normalised as the
extractor sees them), plus `--extra N` public message texts (../shared/data/public, no entity gold anywhere).
`--public unlabeled` (the default, words-1's recipe) takes the first N of teddy2020_unlabeled; `--public all` draws
them from the union of the texts of every public message file (PUBLIC_FILES, duplicates and any written dev/test
text dropped) in a fixed seeded shuffle, so a larger N extends a smaller one.
Model: linear-chain CRF (python-crfsuite, L-BFGS) over the hashed features of triage/words.py, per chunk; the
weights are copied into the numpy tagger. `--attrs template` (the default, words-1) learns one weight per template
and bucket and sums them into the row afterwards, so features of different templates sharing a bucket leak into
each other at serve time (~1.9M distinct features in 2^17 buckets with words-1's data, 4.7M with --extra 6000);
`--attrs bucket` gives crfsuite one attribute per bucket, exactly the row the numpy tagger adds up (tried with
--extra 6000: ~1.7x slower to train, dev agreement with LAC still below words-1's). Agreement with LAC is reported
on the DEV texts (word boundaries + label, and PER/LOC/ORG/TIME spans). Deterministic. words-1 (the shipped model):
`--extra 1000 --max-iter 50`. Session 7 (dev agreement with LAC, PER / ORG): words-1 0.727 / 0.690; `--public all
--extra 6000` 0.711 / 0.668; the same with `--attrs bucket` 0.692 / 0.684 (fast-engine dev person F1 0.865 → 0.827)
— more public text lowered agreement (another province's anonymised messages outweigh written/train ~5:1);
`--extra 1000 --attrs bucket` raised it (0.738 / 0.713) but not the extraction's dev person / place F1 (0.863 / 0.758
vs 0.865 / 0.759), so the shipped tagger stays words-1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from triage.schemas import Petition
from triage.words import WORD_TAGGER_PATH, WordTagger, chunks, features, tag_names

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "data/corpus/written"
CACHE = ROOT / "var/cache/words"
PUBLIC = ROOT.parent / "shared/data/public"
PUBLIC_FILES = ("teddy2020_unlabeled", "teddy2020_messages_labeled", "teddy2020_replies", "teddy2020_hot_messages",
                "fuzhou12345_rivers")
PUBLIC_SEED = 2026
VERSION = "words-1"  # the default recipe; the card records --public / --attrs


def split_texts(split: str) -> list[str]:
    path = CORPUS / f"{split}.jsonl"
    records = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    return [Petition.model_validate({k: r[k] for k in ("text", "title") if k in r}).text for r in records]


def _public_file(name: str) -> list[str]:
    out = []
    with (PUBLIC / f"{name}.jsonl").open(encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("text"):
                out.append(Petition.model_validate({"text": r["text"], "title": r.get("title") or None}).text)
    return out


def public_texts(n: int, source: str = "unlabeled") -> list[str]:
    """N public message texts (no entity gold anywhere: silver only).

    "unlabeled": the first N of teddy2020_unlabeled (words-1). "all": the distinct texts of every PUBLIC_FILES
    file, none equal to a written dev/test text, in one seeded shuffle (deterministic; a prefix for any N)."""
    if source == "unlabeled":
        return _public_file("teddy2020_unlabeled")[:n]
    held_out = set(split_texts("dev")) | set(split_texts("test"))
    pool = list(dict.fromkeys(t for name in PUBLIC_FILES for t in _public_file(name) if t not in held_out))
    random.Random(PUBLIC_SEED).shuffle(pool)
    return pool[:n]


def lac_words(split: str, texts: list[str]) -> list[list[tuple[int, int, str]]]:
    from serving.ner import LacTagger

    digest = hashlib.sha256("\n\x00".join(texts).encode()).hexdigest()[:16]
    lac = LacTagger()
    cache = CACHE / f"{split}-{digest}-{lac.version}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())  # type: ignore[no-any-return]
    out = [lac.words(t) for t in texts]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(out))
    return out


def char_tags(text: str, words: list[tuple[int, int, str]]) -> list[str]:
    tags = ["O-B"] * len(text)
    for s, e, lab in words:
        tags[s] = f"{lab}-B"
        for i in range(s + 1, e):
            tags[i] = f"{lab}-I"
    return tags


def word_agreement(ref: list[list[tuple[int, int, str]]], hyp: list[list[tuple[int, int, str]]],
                   texts: list[str]) -> dict[str, Any]:
    def f1(a: set[Any], b: set[Any]) -> float:
        tp = len(a & b)
        return round(2 * tp / max(1, len(a) + len(b)), 4)

    out: dict[str, Any] = {}
    for name, keep in (("words_seg", None), ("words_labelled", "all"), ("ner", "ner"),
                       ("PER", "PER"), ("LOC", "LOC"), ("ORG", "ORG"), ("TIME", "TIME")):
        a: set[Any] = set()
        b: set[Any] = set()
        for i, (r, h, t) in enumerate(zip(ref, hyp, texts, strict=True)):
            for src, dst in ((r, a), (h, b)):
                for s, e, lab in src:
                    if not t[s:e].strip():
                        continue
                    if keep is None:
                        dst.add((i, s, e))
                    elif keep == "all" or (keep == "ner" and lab in ("PER", "LOC", "ORG", "TIME")) or lab == keep:
                        dst.add((i, s, e, lab))
        out[name] = f1(a, b)
    return out


def main() -> None:
    import pycrfsuite

    ap = argparse.ArgumentParser()
    ap.add_argument("--c1", type=float, default=0.0)
    ap.add_argument("--c2", type=float, default=0.01)
    ap.add_argument("--max-iter", type=int, default=60)
    ap.add_argument("--bits", type=int, default=17)
    ap.add_argument("--extra", type=int, default=1000, help="also N public message texts (LAC silver)")
    ap.add_argument("--public", choices=("all", "unlabeled"), default="unlabeled",
                    help="--extra from: the first N unlabelled messages (default, words-1) or all public files, shuffled")
    ap.add_argument("--attrs", choices=("template", "bucket"), default="template",
                    help="crfsuite attributes: template+bucket (default, words-1) or the hash bucket as served")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N train texts (quick runs)")
    ap.add_argument("--out", type=Path, default=WORD_TAGGER_PATH)
    args = ap.parse_args()
    texts = split_texts("train")
    words = lac_words("train", texts)
    if args.limit:
        texts, words = texts[: args.limit], words[: args.limit]
    if args.extra:
        extra = public_texts(args.extra, args.public)
        texts, words = texts + extra, words + lac_words(f"public-{args.public}{args.extra}", extra)
    labels = sorted({lab for ws in words for _, _, lab in ws} | {"O"})
    names = tag_names(labels)
    mask = (1 << args.bits) - 1
    trainer = pycrfsuite.Trainer(verbose=False)
    n_chars = 0
    for text, ws in zip(texts, words, strict=True):
        feats = features(text, mask)
        tags = char_tags(text, ws)
        for s, e in chunks(text):
            y = [tags[s]] if tags[s].endswith("-B") else [tags[s][:-1] + "B"]
            y += tags[s + 1:e]
            rows = feats[s:e].tolist()
            if args.attrs == "bucket":
                x: list[Any] = [{str(v): float(c) for v, c in Counter(row).items()} for row in rows]
            else:
                x = [[f"{j}:{v}" for j, v in enumerate(row)] for row in rows]
            trainer.append(pycrfsuite.ItemSequence(x), y)
            n_chars += e - s
    trainer.set_params({"c1": args.c1, "c2": args.c2, "max_iterations": args.max_iter, "feature.possible_transitions": True})
    CACHE.mkdir(parents=True, exist_ok=True)
    model_path = CACHE / f"words-{os.getpid()}.crfsuite"
    t0 = time.time()
    trainer.train(str(model_path))
    train_s = time.time() - t0
    crf = pycrfsuite.Tagger()
    crf.open(str(model_path))
    info = crf.info()
    weights = np.zeros((1 << args.bits, len(names)), dtype=np.float32)
    index = {n: i for i, n in enumerate(names)}
    for (attr, label), w in info.state_features.items():
        weights[int(attr.rsplit(":", 1)[-1]), index[label]] += w
    trans = np.zeros((len(names), len(names)), dtype=np.float32)
    for (a, b), w in info.transitions.items():
        trans[index[a], index[b]] = w
    crf.close()
    model_path.unlink()
    tagger = WordTagger(weights, trans, labels, args.bits, VERSION)
    dev_texts = split_texts("dev")
    dev_ref = lac_words("dev", dev_texts)
    dev_hyp = [tagger.words(t) for t in dev_texts]
    agreement = word_agreement(dev_ref, dev_hyp, dev_texts)
    from triage.text import segmenter_id

    card = {"version": VERSION, "segmenter": segmenter_id(), "bits": args.bits,
            "attrs": args.attrs, "c1": args.c1, "c2": args.c2, "max_iter": args.max_iter,
            "train_texts": len(texts), "extra_public_texts": args.extra,
            "extra_public_source": args.public, "train_chars": n_chars, "train_seconds": round(train_s),
            "dev_agreement_with_lac_f1": agreement,
            "train_sha256": hashlib.sha256((CORPUS / "train.jsonl").read_bytes()).hexdigest()}
    tagger.save(args.out, {"card": card})
    card["sha256"] = hashlib.sha256(args.out.read_bytes()).hexdigest()
    card["size_bytes"] = args.out.stat().st_size
    args.out.with_suffix(".json").write_text(json.dumps(card, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(card, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
