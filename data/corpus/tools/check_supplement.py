"""Check organisation-supplement files (data/corpus/supplement/orgs_W*.jsonl, supplement/SUPPLEMENT.md).

    python data/corpus/tools/check_supplement.py [FILE …]     # default: every supplement file

Rejects: a line that is not a JSON object with id / style / text / orgs / writer, an id not of the writer (W7-0001),
a repeated id, a style outside online/letter/visit/hotline, a text outside 20–1,500 characters, a listed surface that
does not occur in the text or is listed twice, an 18-digit or 11-digit number (no personal identifiers), and a
text that is a near-duplicate (character 5-gram Jaccard ≥ 0.7) of a written corpus record or of another supplement
text. Prints the counts; exit status 1 on any problem.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from training.corpus import CORPUS_DIR, near_duplicate_pairs

SUPPLEMENT = CORPUS_DIR / "supplement"
STYLES = {"online", "letter", "visit", "hotline"}
IDENT = re.compile(r"(?<!\d)(?:\d{17}[\dXx]|1\d{10})(?!\d)")


def problems_of(paths: list[Path]) -> tuple[list[str], dict[str, int]]:
    problems: list[str] = []
    rows: list[dict] = []
    seen: set[str] = set()
    for path in paths:
        writer = path.stem.removeprefix("orgs_")
        for lineno, line in enumerate(path.open(encoding="utf-8"), 1):
            if not line.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: not JSON ({exc.msg})")
                continue
            if not isinstance(row, dict) or {"id", "style", "text", "orgs", "writer"} - row.keys():
                problems.append(f"{where}: needs id, style, text, orgs, writer")
                continue
            rid, text, orgs = row["id"], row["text"], row["orgs"]
            if row["writer"] != writer or not re.fullmatch(rf"{writer}-\d{{4}}", str(rid)):
                problems.append(f"{where}: id and writer must be {writer} / {writer}-NNNN")
            if rid in seen:
                problems.append(f"{where}: id {rid} repeated")
            seen.add(rid)
            if row["style"] not in STYLES:
                problems.append(f"{where}: style must be one of {sorted(STYLES)}")
            if not isinstance(text, str) or not 20 <= len(text) <= 1500:
                problems.append(f"{where}: text must have 20–1,500 characters")
                continue
            if IDENT.search(text):
                problems.append(f"{where}: a number that looks like an ID or phone number (write none)")
            if not isinstance(orgs, list) or not all(isinstance(o, str) and o for o in orgs):
                problems.append(f"{where}: orgs must be a list of non-empty strings")
                continue
            if len(set(orgs)) != len(orgs):
                problems.append(f"{where}: a surface is listed twice")
            problems += [f"{where}: {o!r} does not occur in the text" for o in orgs if o not in text]
            rows.append({"id": rid, "text": text, "orgs": orgs})
    corpus = [json.loads(line) for split in ("train", "dev", "test")
              for line in (CORPUS_DIR / "written" / f"{split}.jsonl").open(encoding="utf-8") if line.strip()]
    supplement_ids = {r["id"] for r in rows}
    for a, b, j in near_duplicate_pairs(rows + [{"id": c["id"], "text": c["text"]} for c in corpus]):
        if a in supplement_ids or b in supplement_ids:
            problems.append(f"near-duplicate texts {a} / {b} (Jaccard {j})")
    return problems, {"texts": len(rows), "surfaces": sum(len(r["orgs"]) for r in rows)}


def main(argv: list[str] | None = None) -> int:
    args = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    paths = args or sorted(SUPPLEMENT.glob("orgs_W*.jsonl"))
    problems, counts = problems_of(paths)
    print(f"{len(paths)} files: {counts['texts']} texts, {counts['surfaces']} surfaces, {len(problems)} problems")
    for p in problems[:50]:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
