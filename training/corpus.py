"""Build and check the labelled corpus in data/corpus/.

Part 1 (written): writers' raw files data/corpus/raw/written_*.jsonl hold hand-written petitions
with gold labels, entity surfaces and personal-data placeholders. `build_written()` fills the
placeholders with fake but well-formed values (deterministic per persona key), turns entity
surfaces into character spans, groups records connected by duplicate/hard-negative links and
assigns each group to one split, writing data/corpus/written/{train,dev,test}.jsonl.

Part 2 (real): data/corpus/real/labels_*.jsonl hold labels for real public messages by source and
key (the public texts are not republished in the repository); `materialize_real()` joins them
with ../shared/data/public into the same record schema.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.identity import id_check_digit, is_valid_id_number, luhn_check_digit, luhn_valid
from triage.taxonomy import DATA_DIR, Taxonomy
from triage.text import normalize

logger = logging.getLogger(__name__)

CORPUS_DIR = DATA_DIR / "corpus"
SPLITS = ("train", "dev", "test")
SPLIT_WEIGHTS = (0.70, 0.15, 0.15)
PLACEHOLDER = re.compile(r"\{(ID|PHONE|TEL|CARD):([a-z0-9]+)\}")
GOLD_FIELDS = ("track", "department", "request_type", "flags", "district", "duplicate_of")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                yield lineno, json.loads(line)


# --- fake personal data -----------------------------------------------------------------------


def _rng(key: str, kind: str) -> random.Random:
    seed = int.from_bytes(hashlib.sha256(f"{kind}:{key}".encode()).digest()[:8], "big")
    return random.Random(seed)


def fake_id_number(key: str, area_code: str) -> str:
    r = _rng(key, "id")
    year = r.randint(1950, 2004)
    month = r.randint(1, 12)
    day = r.randint(1, 28)
    first17 = f"{area_code}{year:04d}{month:02d}{day:02d}{r.randint(0, 999):03d}"
    return first17 + id_check_digit(first17)


def fake_mobile(key: str) -> str:
    r = _rng(key, "phone")
    prefix = r.choice(["133", "135", "136", "138", "139", "150", "152", "157", "158", "159", "177", "180",
                       "182", "183", "187", "189", "191", "199"])
    return prefix + f"{r.randint(0, 99_999_999):08d}"


def fake_landline(key: str) -> str:
    r = _rng(key, "tel")
    return f"023-{r.choice('4567689')}{r.randint(0, 9_999_999):07d}"


def fake_card(key: str) -> str:
    r = _rng(key, "card")
    partial = r.choice(["621700", "622202", "621226", "623668", "622848"]) + f"{r.randint(0, 10**12 - 1):012d}"
    return partial + luhn_check_digit(partial)


@dataclass
class PersonaBook:
    """Persona key → fake identifiers, with the ID area code of the persona's first district."""

    area_codes: dict[str, str]
    default_area: str = "500103"
    _area_of: dict[str, str] = field(default_factory=dict)

    def fill(self, kind: str, key: str, district: str | None) -> str:
        if kind == "ID":
            if key not in self._area_of:
                self._area_of[key] = self.area_codes.get(district or "", self.default_area)
            return fake_id_number(key, self._area_of[key])
        if kind == "PHONE":
            return fake_mobile(key)
        if kind == "TEL":
            return fake_landline(key)
        return fake_card(key)


def _substitute(value: Any, book: PersonaBook, district: str | None) -> Any:
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: book.fill(m.group(1), m.group(2), district), value)
    if isinstance(value, list):
        return [_substitute(v, book, district) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, book, district) for k, v in value.items()}
    return value


def entity_spans(text: str, surfaces: list[list[str]]) -> tuple[list[dict[str, Any]], list[str]]:
    """All occurrences of each (type, surface); returns spans and the surfaces not found."""
    spans, missing = [], []
    seen: set[tuple[str, int, int]] = set()
    for etype, surface in surfaces:
        if not surface:
            continue
        start = text.find(surface)
        if start < 0:
            missing.append(surface)
        while start >= 0:
            key = (etype, start, start + len(surface))
            if key not in seen:
                seen.add(key)
                spans.append({"type": etype, "start": start, "end": start + len(surface), "text": surface})
            start = text.find(surface, start + len(surface))
    spans.sort(key=lambda s: (s["start"], s["end"]))
    return spans, missing


# --- splits -----------------------------------------------------------------------------------


def connected_groups(records: list[dict[str, Any]], link_fields: tuple[str, ...]) -> dict[str, str]:
    """Record id → group id, joining records linked by any of `link_fields` (union-find)."""
    parent: dict[str, str] = {r["id"]: r["id"] for r in records}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for r in records:
        for f in link_fields:
            ref = r.get(f)
            if ref and ref in parent:
                a, b = find(r["id"]), find(ref)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {rid: find(rid) for rid in parent}


def split_of(group_id: str, salt: str = "corpus-v1") -> str:
    """Deterministic split for a group: the same group always lands in the same split."""
    h = int.from_bytes(hashlib.sha256(f"{salt}:{group_id}".encode()).digest()[:8], "big") / 2**64
    acc = 0.0
    for name, w in zip(SPLITS, SPLIT_WEIGHTS, strict=True):
        acc += w
        if h < acc:
            return name
    return SPLITS[-1]


# --- part 1: written corpus -------------------------------------------------------------------


@dataclass
class BuildReport:
    records: int = 0
    per_split: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    rendered: dict[str, str] = field(default_factory=dict)


def render_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def build_written(taxonomy: Taxonomy, corpus_dir: Path = CORPUS_DIR, write: bool = True) -> BuildReport:
    """Turn the writers' raw files into data/corpus/written/{split}.jsonl.

    With write=False nothing is written; `report.rendered` holds each split's file content.
    """
    area = {d.name: d.id_codes[0] for d in taxonomy.gazetteer.districts if d.id_codes}
    book = PersonaBook(area_codes=area)
    report = BuildReport()
    records: list[dict[str, Any]] = []
    for path in sorted((corpus_dir / "raw").glob("written_*.jsonl")):
        writer = path.stem.removeprefix("written_")
        for lineno, raw in read_jsonl(path):
            district = raw.get("district")
            rec = _substitute(raw, book, district)
            # Gold offsets index the normalised text, the text every stage of the pipeline sees.
            rec["text"] = normalize(rec["text"])
            surfaces = [[t, normalize(x)] for t, x in rec.pop("entities", []) or []]
            spans, missing = entity_spans(rec["text"], surfaces)
            for _surface in missing:
                report.problems.append(f"{path.name}:{lineno} ({rec['id']}): entity not in text (dropped)")
            rec["entities"] = spans
            rec["writer"] = writer
            records.append(rec)
    groups = connected_groups(records, ("duplicate_of", "hard_negative_of"))
    by_split: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        rec["group"] = groups[rec["id"]]
        rec["split"] = split_of(rec["group"])
        by_split[rec["split"]].append(rec)
    out_dir = corpus_dir / "written"
    for name in SPLITS:
        rows = sorted(by_split.get(name, []), key=lambda r: r["id"])
        report.rendered[name] = render_jsonl(rows)
        report.per_split[name] = len(rows)
        if write:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / f"{name}.jsonl").write_text(report.rendered[name], encoding="utf-8")
    report.records = len(records)
    return report


# --- part 2: real messages --------------------------------------------------------------------

PUBLIC_DIR = DATA_DIR.parent.parent / "shared" / "data" / "public"
SOURCE_KEY = {"teddy2020_messages_labeled": "rid", "teddy2020_replies": "id", "fuzhou12345_rivers": "id",
              "teddy2020_unlabeled": "id"}
# Record id = prefix + "-" + key. The board's unlabelled messages have numeric ids like the replies (11 collide), so
# they get a prefix of their own.
ID_PREFIX = {"teddy2020_messages_labeled": "teddy2020", "teddy2020_replies": "teddy2020", "fuzhou12345_rivers": "fuzhou12345",
             "teddy2020_unlabeled": "teddy2020u"}


def duty_rows(taxonomy: Taxonomy) -> list[dict[str, Any]]:
    """The responsibility list (data/responsibility/departments.yaml) as department-labelled rows, one per department:
    official and short name, duties and typical matters in one text. Training data for the department head only (no
    track or request type): it ties each department to the words of its duty list, which a rare department's few
    labelled petitions may not contain (base.toml `data_weights`)."""
    rows = []
    for dept in taxonomy.responsibilities.values():
        matters = "、".join(dept.typical_matters)
        text = f"{dept.official_name}（{dept.short_name}）：{dept.duties}" + (f"常见事项：{matters}。" if matters else "")
        rows.append({"id": f"duty-{dept.code}", "text": text, "department": dept.code})
    return rows


def record_id(source: str, key: str) -> str:
    """The corpus record id of public message `key` of `source`."""
    return f"{ID_PREFIX[source]}-{key}"


def load_real_labels(corpus_dir: Path = CORPUS_DIR) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((corpus_dir / "real").glob("labels_*.jsonl")):
        for _, row in read_jsonl(path):
            row["labeller_file"] = path.name
            rows.append(row)
    return rows


def materialize_real(public_dir: Path = PUBLIC_DIR, corpus_dir: Path = CORPUS_DIR) -> list[dict[str, Any]]:
    """Join the committed labels with the public texts into petition records with gold fields."""
    texts: dict[tuple[str, str], dict[str, Any]] = {}
    for source, key in SOURCE_KEY.items():
        path = public_dir / f"{source}.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: the real corpus needs ../shared/data/public")
        for _, row in read_jsonl(path):
            texts[(source, str(row[key]))] = row
    out = []
    for lab in load_real_labels(corpus_dir):
        src = texts.get((lab["source"], str(lab["key"])))
        if src is None:
            raise KeyError(f"{lab['labeller_file']}: {lab['source']}:{lab['key']} not found in the public data")
        flags = sorted(set(lab.get("flags") or []) | {"place_unknown"})
        out.append({
            "id": record_id(lab["source"], str(lab["key"])),
            "title": src.get("title"),
            "text": src["text"],
            "channel": "phone" if lab["source"] == "fuzhou12345_rivers" and src.get("channel") == "电话" else "online",
            "track": lab["track"],
            "department": lab["department"],
            "co_departments": lab.get("co_departments") or [],
            "request_type": lab["request_type"],
            "flags": flags,
            "district": None,
            "confidence": lab.get("confidence"),
            "second_choice": lab.get("second_choice"),
            "department_evidence": lab.get("department_evidence"),
            "label_source": lab.get("label_source"),
            "source": lab["source"],
            "topic": src.get("label"),
            **({"selection": "active"} if lab.get("selection") == "active" else {}),
        })
    return out


def near_duplicate_pairs(records: list[dict[str, Any]], threshold: float = 0.7) -> list[tuple[str, str, float]]:
    """Pairs of record ids whose character 5-gram Jaccard similarity is >= threshold (MinHash-LSH
    candidates, verified exactly)."""
    from datasketch import MinHash, MinHashLSH

    def shingles(text: str) -> set[str]:
        t = re.sub(r"\s+", "", text)
        return {t[i:i + 5] for i in range(max(1, len(t) - 4))}

    lsh = MinHashLSH(threshold=threshold, num_perm=64)
    sets: dict[str, set[str]] = {}
    sigs = {}
    for r in records:
        sh = shingles(r["text"])
        m = MinHash(num_perm=64)
        m.update_batch([x.encode() for x in sh])
        sets[r["id"]], sigs[r["id"]] = sh, m
        lsh.insert(r["id"], m)
    pairs = []
    for rid, m in sigs.items():
        for other in lsh.query(m):
            if other > rid:
                j = len(sets[rid] & sets[other]) / max(1, len(sets[rid] | sets[other]))
                if j >= threshold:
                    pairs.append((rid, other, round(j, 3)))
    return pairs


def real_splits(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Split real messages by a hash of their group: near-duplicate re-posts of one message (the
    board has many) form one group, so a group never straddles splits.

    Records labelled from an *active* selection (`"selection": "active"`: messages searched out because
    they looked like a rare class) do not follow the board's distribution, so they never enter dev or
    test: they form the extra split "active" (training data only). The groups and splits of the sampled
    records are computed without them, exactly as before they existed; an active record that is a
    near-duplicate of a sampled one joins that group and is dropped (split "excluded") unless the group
    is in train."""
    sampled = [r for r in records if r.get("selection", "sample") != "active"]
    active = [r for r in records if r.get("selection", "sample") == "active"]
    pairs = near_duplicate_pairs(records)  # a pair's verdict depends on its two texts only
    by_id = {r["id"]: r for r in sampled}
    links: dict[str, str] = {}
    for a, b, _ in pairs:
        if a in by_id and b in by_id:
            links.setdefault(b, a)
    for rec in sampled:
        rec["same_as"] = links.get(rec["id"])
    groups = connected_groups(sampled, ("same_as",))
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in sampled:
        del rec["same_as"]
        rec["group"] = groups[rec["id"]]
        rec["split"] = split_of(rec["group"], salt="real-v1")
        out[rec["split"]].append(rec)
    twins: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a, b, _ in pairs:
        for x, y in ((a, b), (b, a)):
            if y in by_id:
                twins[x].append(by_id[y])
    for rec in active:
        near = sorted(twins.get(rec["id"], []), key=lambda t: t["split"] == "train")
        rec["group"] = near[0]["group"] if near else rec["id"]
        rec["split"] = "excluded" if near and near[0]["split"] != "train" else "active"
        out[rec["split"]].append(rec)
    return out


def validate_written_record(rec: dict[str, Any], taxonomy: Taxonomy) -> list[str]:
    """Schema, codes, spans and identifier checksums of one built record."""
    problems = []
    for f in ("id", "text", "track", "department", "request_type", "flags", "district", "duplicate_of"):
        if f not in rec:
            problems.append(f"missing field {f!r}")
    codes = {k: set(taxonomy.codes(v)) for k, v in taxonomy.field_kinds.items()}
    for f, allowed in codes.items():
        if rec.get(f) not in allowed:
            problems.append(f"unknown {f} {rec.get(f)!r}")
    for c in rec.get("co_departments") or []:
        if c not in codes["department"]:
            problems.append(f"unknown co_department {c!r}")
    flags = set(taxonomy.codes("flags"))
    for fl in rec.get("flags") or []:
        if fl not in flags:
            problems.append(f"unknown flag {fl!r}")
    d = rec.get("district")
    if d is not None and d not in taxonomy.gazetteer.names:
        problems.append(f"district {d!r} is not one of the 37")
    text = rec.get("text", "")
    for e in rec.get("entities") or []:
        if text[e["start"]:e["end"]] != e["text"]:
            problems.append(f"entity span {e['start']}-{e['end']} does not match its text")
        if e["type"] == "id_number" and not is_valid_id_number(e["text"]):
            problems.append("entity id_number fails the checksum")
        if e["type"] == "bank_card" and not luhn_valid(re.sub(r"\D", "", e["text"])):
            problems.append("entity bank_card fails the Luhn check")
    p = rec.get("petitioner") or {}
    if p.get("id_number") and not is_valid_id_number(p["id_number"]):
        problems.append("petitioner id_number fails the checksum")
    if PLACEHOLDER.search(text):
        problems.append("unfilled placeholder in text")
    return problems
