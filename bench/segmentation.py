"""Measure jieba vs rjieba (both with the project's user dictionary) on real petition text.

Run: .venv/bin/python bench/segmentation.py [--limit N]
Prints throughput (MB/s) of each engine, the share of texts segmented identically, and the token
F1 between them. This is the measurement behind the engine choice in triage/text.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from triage.text import DEFAULT_USER_DICT, normalize  # noqa: E402

PUBLIC = ROOT.parent / "shared" / "data" / "public" / "teddy2020_messages_labeled.jsonl"


def _spans(tokens: list[str]) -> set[tuple[int, int]]:
    out, pos = set(), 0
    for t in tokens:
        out.add((pos, pos + len(t)))
        pos += len(t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=3000)
    args = ap.parse_args()
    texts = []
    with PUBLIC.open(encoding="utf-8") as fh:
        for line in fh:
            texts.append(normalize(json.loads(line)["text"]))
            if len(texts) >= args.limit:
                break
    mb = sum(len(t.encode()) for t in texts) / 1e6

    import jieba
    import rjieba

    jb = jieba.Tokenizer()
    jb.initialize()
    jb.load_userdict(str(DEFAULT_USER_DICT))
    rj = rjieba.Jieba()
    for line in DEFAULT_USER_DICT.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            parts = line.split()
            freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            rj.add_word(parts[0], freq, None)

    def run(cut):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = [[w for w in cut(t) if w.strip()] for t in texts]
        return out, time.perf_counter() - t0

    jout, jt = run(lambda t: jb.lcut(t, HMM=True))
    rout, rt = run(lambda t: rj.cut(t, True))
    same = sum(a == b for a, b in zip(jout, rout, strict=True))
    tp = fp = fn = 0
    for a, b in zip(jout, rout, strict=True):
        sa, sb = _spans(a), _spans(b)
        tp += len(sa & sb)
        fp += len(sb - sa)
        fn += len(sa - sb)
    f1 = 2 * tp / (2 * tp + fp + fn)
    print(json.dumps({
        "texts": len(texts), "MB": round(mb, 2),
        "jieba_MB_s": round(mb / jt, 2), "rjieba_MB_s": round(mb / rt, 2),
        "identical_texts": round(same / len(texts), 4), "token_f1": round(f1, 5),
        "jieba_ms_per_text": round(jt / len(texts) * 1000, 3), "rjieba_ms_per_text": round(rt / len(texts) * 1000, 3),
    }, indent=1))


if __name__ == "__main__":
    main()
