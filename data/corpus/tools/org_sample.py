"""Organisation annotations of real public messages (corpus part 2): draw a reader's selection, check the answers.

    python data/corpus/tools/org_sample.py --who O1 --n 300            # draw: real/work/org_selection_O1.jsonl
    python data/corpus/tools/org_sample.py --check data/corpus/real/orgs_O1.jsonl   # validate an answer file

The selection draws, with a seeded shuffle, messages of the real TRAIN split only (dev and test stay unread, so
nothing about them can leak into a tagger), 20–600 characters after normalisation, that no other org selection
holds. Each line carries `n`, `id` and the normalised `text` (the text the extractor sees; not committed: the
public texts are not republished). The reader answers in data/corpus/real/orgs_<who>.jsonl, one line per message
read, in the order of `n`:

    {"id": "teddy2020-fj2r-02366", "orgs": ["退管中心", "西地省劳动和社会保障厅"], "annotator": "O1"}

following real/ORGS.md. `--check` rejects a line whose id is not in the reader's selection, a surface that does
not occur in the message's normalised text, a repeated id or surface; it prints the counts.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

from training.corpus import CORPUS_DIR, materialize_real, real_splits
from triage.text import normalize

REAL = CORPUS_DIR / "real"
WORK = REAL / "work"
WHO = re.compile(r"^O\d+$")
MIN_CHARS, MAX_CHARS = 20, 600


def train_texts() -> dict[str, str]:
    """Record id → normalised text of the real train split (the split every model trains on)."""
    splits = real_splits(materialize_real())
    return {r["id"]: normalize(r["text"]) for r in splits["train"]}


def taken_ids(exclude: str | None = None) -> set[str]:
    taken: set[str] = set()
    for path in list(WORK.glob("org_selection_*.jsonl")) + list(REAL.glob("orgs_*.jsonl")):
        if exclude and path.stem.endswith(f"_{exclude}"):
            continue
        taken |= {json.loads(line)["id"] for line in path.open(encoding="utf-8") if line.strip()}
    return taken


def draw(who: str, n: int, seed: int) -> Path:
    texts = train_texts()
    taken = taken_ids(exclude=who)
    pool = sorted(i for i, t in texts.items() if MIN_CHARS <= len(t) <= MAX_CHARS and i not in taken)
    random.Random(f"orgs:{seed}:{who}").shuffle(pool)
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / f"org_selection_{who}.jsonl"
    with out.open("w", encoding="utf-8") as fh:
        for k, rid in enumerate(pool[:n], 1):
            fh.write(json.dumps({"n": k, "id": rid, "text": texts[rid]}, ensure_ascii=False) + "\n")
    return out


def check(path: Path, texts: dict[str, str] | None = None) -> tuple[list[str], dict[str, Any]]:
    """Problems of an answer file (empty when valid) and its counts."""
    who = path.stem.removeprefix("orgs_")
    sel_path = WORK / f"org_selection_{who}.jsonl"
    if texts is None:
        if sel_path.exists():
            rows = [json.loads(x) for x in sel_path.open(encoding="utf-8") if x.strip()]
            texts = {r["id"]: r["text"] for r in rows}
        else:
            texts = train_texts()
    problems: list[str] = []
    seen: set[str] = set()
    spans = 0
    for lineno, line in enumerate(path.open(encoding="utf-8"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {lineno}: not JSON ({exc.msg})")
            continue
        rid, orgs = row.get("id"), row.get("orgs")
        if rid not in texts:
            problems.append(f"line {lineno}: id {rid!r} is not in the selection")
            continue
        if rid in seen:
            problems.append(f"line {lineno}: id {rid} answered twice")
        seen.add(rid)
        if not isinstance(orgs, list) or not all(isinstance(o, str) and o for o in orgs):
            problems.append(f"line {lineno}: orgs must be a list of non-empty strings")
            continue
        if len(set(orgs)) != len(orgs):
            problems.append(f"line {lineno}: a surface is listed twice")
        for o in orgs:
            if o not in texts[rid]:
                problems.append(f"line {lineno}: {o!r} does not occur in the text of {rid}")
        if row.get("annotator") != who:
            problems.append(f"line {lineno}: annotator must be {who!r}")
        spans += len(orgs)
    return problems, {"messages": len(seen), "surfaces": spans}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--who", help="reader code O<n> (with --n: draw a selection)")
    ap.add_argument("--n", type=int, help="messages to draw")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--check", type=Path, nargs="*", help="answer files to validate")
    args = ap.parse_args(argv)
    if args.check is not None:
        failed = False
        for path in args.check or sorted(REAL.glob("orgs_*.jsonl")):
            problems, counts = check(path)
            print(f"{path.name}: {counts['messages']} messages, {counts['surfaces']} surfaces, {len(problems)} problems")
            for p in problems[:50]:
                print("  " + p)
            failed |= bool(problems)
        return 1 if failed else 0
    if not args.who or not WHO.match(args.who) or not args.n or args.n < 1:
        ap.error("give --who O<n> and --n N to draw, or --check FILE …")
    print(draw(args.who, args.n, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
