"""Draw a further random selection of real public messages for a labeller (sampled, not actively searched).

    python data/corpus/tools/select_sample.py --who L3 --board-per-topic 24 --replies 52 --fuzhou 30 [--seed 3]
    python data/corpus/tools/select_sample.py --who L14 --unlabeled 160 --replies 58 --fuzhou 32
    python data/corpus/tools/select_sample.py --who L26 --board 154 --unlabeled 96
    python data/corpus/tools/select_sample.py --who R6 --recheck L3,L4,L5,L6,L7,L8 --n 120

The second form draws a seeded sample of N messages already labelled by the named labellers for a blind second
reading (agreement/labels_<who>.jsonl; `triage data agreement`): the selection carries the texts, never the labels.

Writes data/corpus/real/work/selection_<who>.jsonl (not committed: the texts are not republished) with the
fields real/LABELLING.md describes (n, source, key, title, text, and topic / reply / label_type by source).
Draws, with a seeded shuffle, from the messages no labeller has labelled (real/labels_*.jsonl) and no other
selection file holds: board messages stratified by the board's topic (the same number per topic, as L1/L2 were
drawn), replies and Fuzhou tickets uniformly — the proportions of the first 2,100 labelled messages. Once the topic
pool ran low (session 8), `--unlabeled N` draws uniformly from the same board's messages that carry no topic; once
every topic but the largest had run low (session 9), `--board N` draws uniformly from the board's remaining messages
with a topic. Labels held back in real/pending/ count as taken.
Messages under 20 characters are skipped (no petition to read), and so is a near-duplicate of a labelled message
(training.corpus.near_duplicate_pairs): it would join that message's group and could move the group's split.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

from training.corpus import CORPUS_DIR, PUBLIC_DIR, SOURCE_KEY, load_real_labels, near_duplicate_pairs, read_jsonl

REAL = CORPUS_DIR / "real"
EXTRA = {"teddy2020_messages_labeled": ("label", "topic"), "teddy2020_replies": ("reply", "reply"),
         "fuzhou12345_rivers": ("label_type", "label_type"), "teddy2020_unlabeled": ("label", "topic")}


def public_rows(source: str) -> list[dict]:
    return [r for _, r in read_jsonl(PUBLIC_DIR / f"{source}.jsonl")]


def taken() -> set[tuple[str, str]]:
    """Messages some labeller labelled (pending/ included) or holds in a selection."""
    selected = [r for path in (REAL / "work").glob("selection_*.jsonl") for _, r in read_jsonl(path)]
    pending = [r for path in (REAL / "pending").glob("labels_L*.jsonl") for _, r in read_jsonl(path)]
    return {(r["source"], str(r["key"])) for r in [*load_real_labels(), *selected, *pending]}


def recheck(who: str, labellers: list[str], n: int, seed: int, out_path: Path) -> None:
    keys = sorted((r["source"], str(r["key"])) for name in labellers for _, r in read_jsonl(REAL / f"labels_{name}.jsonl"))
    rng = random.Random(f"recheck:{seed}:{who}")
    chosen = set(rng.sample(keys, min(n, len(keys))))
    picked = []
    for source, key in SOURCE_KEY.items():
        field, name = EXTRA[source]
        for r in public_rows(source):
            if (source, str(r[key])) in chosen:
                picked.append({"source": source, "key": str(r[key]), "title": r.get("title"), "text": r["text"],
                               name: r.get(field)})
    rng.shuffle(picked)
    with out_path.open("w", encoding="utf-8") as fh:
        for i, r in enumerate(picked, 1):
            fh.write(json.dumps({"n": i, **r}, ensure_ascii=False) + "\n")
    print(f"{len(picked)} messages for a second reading → {out_path}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--who", required=True)
    ap.add_argument("--board-per-topic", type=int, default=0)
    ap.add_argument("--board", type=int, default=0,
                    help="board messages with a topic drawn uniformly (not per topic), after --board-per-topic's")
    ap.add_argument("--replies", type=int, default=0)
    ap.add_argument("--fuzhou", type=int, default=0)
    ap.add_argument("--unlabeled", type=int, default=0,
                    help="messages of the same board without a board topic (teddy2020_unlabeled; all have a title)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--recheck", default="", help="comma-separated labellers whose messages a second reader samples")
    ap.add_argument("--n", type=int, default=100, help="with --recheck: sample size")
    args = ap.parse_args()
    out_path = REAL / "work" / f"selection_{args.who}.jsonl"
    if out_path.exists():
        raise SystemExit(f"{out_path} exists: a selection is drawn once")
    if args.recheck:
        recheck(args.who, args.recheck.split(","), args.n, args.seed, out_path)
        return
    used = taken()
    rng = random.Random(f"select:{args.seed}:{args.who}")
    data = {source: public_rows(source) for source in SOURCE_KEY}
    records = [{"id": f"{source}:{r[SOURCE_KEY[source]]}", "text": r["text"]} for source, rows in data.items() for r in rows]
    labelled = {f"{s}:{k}" for s, k in used}
    near = {b if a in labelled else a for a, b, _ in near_duplicate_pairs(records) if (a in labelled) != (b in labelled)}
    picked: list[dict] = []
    for source, key in SOURCE_KEY.items():
        rows = [r for r in data[source] if (source, str(r[key])) not in used and len(r.get("text") or "") >= 20
                and f"{source}:{r[key]}" not in near]
        rng.shuffle(rows)
        field, name = EXTRA[source]
        if source == "teddy2020_messages_labeled":
            by_topic: dict[str, list[dict]] = defaultdict(list)
            for r in rows:
                by_topic[r["label"]].append(r)
            chosen = [r for t in sorted(by_topic) for r in by_topic[t][: args.board_per_topic]]
            ids = {id(r) for r in chosen}
            chosen += [r for r in rows if id(r) not in ids][: args.board]
        else:
            chosen = rows[: {"teddy2020_replies": args.replies, "fuzhou12345_rivers": args.fuzhou,
                             "teddy2020_unlabeled": args.unlabeled}[source]]
        picked += [{"source": source, "key": str(r[key]), "title": r.get("title"), "text": r["text"], name: r.get(field)}
                   for r in chosen]
    rng.shuffle(picked)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as fh:
        for n, r in enumerate(picked, 1):
            fh.write(json.dumps({"n": n, **r}, ensure_ascii=False) + "\n")
    print(f"{len(picked)} messages → {out_path}")


if __name__ == "__main__":
    main()
