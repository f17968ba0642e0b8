"""Weak department labels for real public messages that no person labelled.

    .venv/bin/python -m training.weak [--out data/datasets/weak/replies.jsonl] [--json var/eval/weak-quality.json]

Source: ../shared/data/public/teddy2020_replies.jsonl, citizen messages with the government's reply. The reply
usually names the office that handled the matter ("经A7县住建局调查", "我局执法大队", "已转县人社局"). Every office
name in the reply (a run of characters ending in 局/委/办公室/大队/中心/所/公司 …) whose name contains the keywords
of exactly one department (the duty list data/responsibility/departments.yaml, TAXONOMY §2: 人社 → hrss, 住建 →
housing, 交警 → police …) is one vote; the department with most votes is the weak label, and the message is
skipped (abstain) when no office maps or the runner-up has at least 1/1.5 of the winner's votes. Generic bodies
(街道, 镇/县/区政府, 信访局, 财政局 …) carry no vote: which city department handles a matter they coordinated is a
reading question.

Honesty: every message a person labelled (data/corpus/real/labels_*.jsonl, all splits, matched by source + key)
is left out, and so is any message that is a near-duplicate (character 5-gram Jaccard >= 0.7, the corpus
splitter's rule) of a labelled one, so cross-validation and the real test split never see a weakly labelled
copy of their own texts. The quality figure is the weak label's accuracy against the human label on the
labelled replies (where both exist); it is printed with the coverage.

Not used by `make train-default` (figures in training/configs/base.toml): the reply rows raise the real
cross-validation (`python -m training.experiments.real_cv -f department --extra data/datasets/weak/replies.jsonl`)
but move a DOMAIN example (tests/rules E17) to another department. Two more sources lowered it: `--topics-out`
(board topic → department for five topics) and `--request-types-out` (request type from titles that open with
咨询/投诉/举报/建议/求助, and the real label_type of unlabelled Fuzhou 12345 tickets).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

from training.corpus import CORPUS_DIR, PUBLIC_DIR, SOURCE_KEY, load_real_labels, near_duplicate_pairs, read_jsonl
from training.datasets import ROOT, print_report, write_jsonl

REPLIES = "teddy2020_replies"
DEFAULT_OUT = ROOT / "data" / "datasets" / "weak" / "replies.jsonl"
LABEL_SOURCE = "weak:reply_office"

# Department code → keywords that identify it inside an office name (city or district level, as the replies
# name them). A name matching the keywords of two departments casts no vote.
OFFICE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "hrss": ("人社", "人力资源", "劳动保障", "社保", "社会保险", "劳动监察", "劳动人事争议", "就业", "社会劳动保险"),
    "housing": ("住建", "住房", "房产", "房管", "城乡建设", "建设局", "住规建", "规建", "房屋", "物业办", "公积金", "建委",
                "人防"),
    "planning": ("规划", "自然资源", "国土", "不动产", "土地"),
    "ecology": ("环保", "生态环境", "环境保护", "环境监察", "环境局"),
    "urban": ("城管", "城市管理", "综合执法", "行政执法", "环卫", "渣土", "市容", "园林", "绿化"),
    "police": ("公安", "交警", "派出所", "交管", "车管", "交通警察", "治安", "经侦", "刑侦", "消防"),
    "transport": ("交通运输", "交通局", "运管", "公交", "轨道", "公路", "道路运输", "交通建设", "高速"),
    "education": ("教育", "学校", "教体"),
    "health": ("卫健", "卫计", "卫生", "计生", "疾控", "医院", "妇幼"),
    "medinsure": ("医保", "医疗保障", "医疗保险"),
    "civil": ("民政", "慈善", "殡葬", "残联"),
    "market": ("市场监督", "市场监管", "工商", "质监", "食药", "市场局", "物价", "价格"),
    "agri": ("农业", "农村", "农机", "畜牧", "农经", "林业", "扶贫"),
    "veterans": ("退役军人", "优抚"),
    "water": ("水利", "水务", "自来水", "供水"),
    "emergency": ("应急", "安监", "安全生产"),
    "justice": ("司法",),
    "finance": ("金融", "银保监", "银监", "保监"),
    "culture": ("文旅", "文化", "旅游", "广电", "文体"),
    "sport": ("体育",),
    "economy": ("经信", "工信", "工业和信息化", "科技和工业", "电力", "供电", "燃气"),
    "telecom": ("通信", "电信", "移动公司", "联通", "铁塔"),
    "sasac": ("国资",),
    "commerce": ("商务",),
    "tax": ("税务",),
    "politics_law": ("政法委", "法院", "检察院"),
    "discipline_org": ("纪委", "监委", "纪检", "监察委", "组织部"),
}
OFFICE = re.compile(r"[\u4e00-\u9fa5A-Z0-9]{1,12}?(?:局|委员会|委|办公室|大队|支队|中队|中心|所|站|公司|分局|院|部|厅|集团)")
RUNNER_UP_RATIO = 1.5  # abstain unless the winner has more than 1.5× the runner-up's votes


def office_departments(name: str) -> list[str]:
    return [code for code, kws in OFFICE_KEYWORDS.items() if any(k in name for k in kws)]


def reply_department(reply: str) -> str | None:
    """The department of the offices the reply names, or None (no mapped office, or no clear winner)."""
    votes: Counter[str] = Counter()
    for m in OFFICE.finditer(reply or ""):
        codes = office_departments(m.group(0))
        if len(codes) == 1:
            votes[codes[0]] += 1
    if not votes:
        return None
    top = votes.most_common(2)
    if len(top) > 1 and top[1][1] * RUNNER_UP_RATIO >= top[0][1]:
        return None
    return top[0][0]


def _labelled_texts(public_dir: Path, labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The public texts of every human-labelled message (any source, any split)."""
    wanted: dict[str, set[str]] = {}
    for lab in labels:
        wanted.setdefault(lab["source"], set()).add(str(lab["key"]))
    out = []
    for source, keys in wanted.items():
        key_field = SOURCE_KEY[source]
        for _, row in read_jsonl(public_dir / f"{source}.jsonl"):
            if str(row.get(key_field)) in keys:
                out.append({"id": f"L:{source}:{row[key_field]}", "text": row["text"]})
    return out


def build(public_dir: Path = PUBLIC_DIR, corpus_dir: Path = CORPUS_DIR) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Weakly labelled rows (unlabelled replies only) and the quality report."""
    labels = load_real_labels(corpus_dir)
    human = {(lab["source"], str(lab["key"])): lab["department"] for lab in labels}
    replies = [row for _, row in read_jsonl(public_dir / f"{REPLIES}.jsonl")]
    # Quality: weak vs human label on the labelled replies.
    both = [(reply_department(r["reply"]), human[(REPLIES, str(r["id"]))]) for r in replies if (REPLIES, str(r["id"])) in human]
    covered = [(w, h) for w, h in both if w is not None]
    confusions = Counter(f"{h}→{w}" for w, h in covered if w != h)
    quality = {
        "labelled_replies": len(both), "covered": len(covered),
        "coverage": round(len(covered) / max(1, len(both)), 4),
        "accuracy_where_covered": round(sum(w == h for w, h in covered) / max(1, len(covered)), 4),
        "top_confusions_human_to_weak": dict(confusions.most_common(10)),
    }
    # Candidates: unlabelled replies with a weak label, minus near-duplicates of any labelled message.
    cands = []
    for r in replies:
        if (REPLIES, str(r["id"])) in human or not isinstance(r.get("text"), str) or not r["text"].strip():
            continue
        dept = reply_department(r["reply"])
        if dept is not None:
            cands.append({"id": f"weak-{REPLIES}-{r['id']}", "title": r.get("title"), "text": r["text"],
                          "department": dept, "label_source": LABEL_SOURCE, "source": REPLIES, "key": str(r["id"])})
    ref = _labelled_texts(public_dir, labels)
    near = {b if a.startswith("L:") else a for a, b, _ in near_duplicate_pairs(ref + cands)
            if a.startswith("L:") != b.startswith("L:")}
    rows = [c for c in cands if c["id"] not in near]
    # Near-duplicates among the weak rows themselves (re-posts) stay: they are one message posted twice.
    quality.update({
        "unlabelled_replies": sum((REPLIES, str(r["id"])) not in human for r in replies),
        "weak_rows": len(rows), "dropped_near_duplicates_of_labelled": len(cands) - len(rows),
        "weak_label_counts": dict(Counter(r["department"] for r in rows).most_common()),
    })
    return rows, quality


# Board topic (teddy2020 first-level label) → department, only where one department holds most of the topic's
# human-labelled messages (城乡建设 splits between housing/urban/planning/district, 商贸旅游 between market/culture/
# transport: no weak label). The share per topic is printed as this source's quality figure.
TOPIC = "teddy2020_messages_labeled"
TOPIC_DEPARTMENT = {"交通运输": "transport", "劳动和社会保障": "hrss", "卫生计生": "health", "教育文体": "education",
                    "环境保护": "ecology"}
TOPIC_LABEL_SOURCE = "weak:board_topic"


def build_topics(public_dir: Path = PUBLIC_DIR, corpus_dir: Path = CORPUS_DIR,
                 exclude_texts: set[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Weak department rows from the board topic of unlabelled teddy2020 messages, and the quality report.

    `exclude_texts`: normalised texts to leave out as well (e.g. the public topic head's test split).
    """
    from triage.text import normalize

    labels = load_real_labels(corpus_dir)
    human = {(lab["source"], str(lab["key"])): lab["department"] for lab in labels}
    msgs = [row for _, row in read_jsonl(public_dir / f"{TOPIC}.jsonl")]
    both = [(TOPIC_DEPARTMENT.get(r["label"]), human[(TOPIC, str(r["rid"]))]) for r in msgs if (TOPIC, str(r["rid"])) in human]
    covered = [(w, h) for w, h in both if w is not None]
    per_topic = {t: round(sum(w == h for w, h in covered if w == d) / max(1, sum(w == d for w, _ in covered)), 4)
                 for t, d in TOPIC_DEPARTMENT.items()}
    quality: dict[str, Any] = {
        "labelled_messages": len(both), "covered": len(covered), "coverage": round(len(covered) / max(1, len(both)), 4),
        "accuracy_where_covered": round(sum(w == h for w, h in covered) / max(1, len(covered)), 4),
        "accuracy_per_topic": per_topic,
    }
    skip = exclude_texts or set()
    cands = [{"id": f"weak-{TOPIC}-{r['rid']}", "title": r.get("title"), "text": r["text"],
              "department": TOPIC_DEPARTMENT[r["label"]], "label_source": TOPIC_LABEL_SOURCE, "source": TOPIC,
              "key": str(r["rid"])}
             for r in msgs if (TOPIC, str(r["rid"])) not in human and r.get("label") in TOPIC_DEPARTMENT
             and isinstance(r.get("text"), str) and r["text"].strip() and normalize(r["text"]) not in skip]
    ref = _labelled_texts(public_dir, labels)
    near = {b if a.startswith("L:") else a for a, b, _ in near_duplicate_pairs(ref + cands)
            if a.startswith("L:") != b.startswith("L:")}
    rows = [c for c in cands if c["id"] not in near]
    quality.update({"weak_rows": len(rows), "dropped_near_duplicates_of_labelled": len(cands) - len(rows),
                    "weak_label_counts": dict(Counter(r["department"] for r in rows).most_common())})
    return rows, quality


# Request type from the message's title (not a model input: heads see the text only) where the title opens with
# the kind of request, and from the real label_type of the Fuzhou 12345 tickets that no person labelled.
TITLE_SOURCES = ("teddy2020_replies", "teddy2020_messages_labeled", "teddy2020_hot_messages", "teddy2020_unlabeled")
FUZHOU = "fuzhou12345_rivers"
LABEL_TYPE = {"投诉": "complaint", "举报": "report", "咨询": "enquiry", "建议": "proposal", "求助": "help"}


def title_request_type(title: str | None) -> str | None:
    t = (title or "").strip()
    if t.startswith("咨询"):
        return "enquiry"
    if t.startswith("举报"):
        return "report"
    if t.startswith("投诉"):
        return "complaint"
    if t.startswith("建议") or t.endswith("的建议"):
        return "proposal"
    if t.startswith("求助"):
        return "help"
    return None


def _row_key(source: str, row: dict[str, Any]) -> str:
    return str(row.get(SOURCE_KEY.get(source, "id")) or row.get("rid") or row.get("id"))


def build_request_types(public_dir: Path = PUBLIC_DIR, corpus_dir: Path = CORPUS_DIR,
                        exclude_texts: set[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Weak request_type rows (titles of unlabelled teddy2020 messages, label_type of unlabelled Fuzhou tickets)."""
    from triage.text import normalize

    labels = load_real_labels(corpus_dir)
    human = {(lab["source"], str(lab["key"])): lab["request_type"] for lab in labels}
    skip = exclude_texts or set()
    both, cands, seen = [], [], set()
    for source in (*TITLE_SOURCES, FUZHOU):
        for _, r in read_jsonl(public_dir / f"{source}.jsonl"):
            key = _row_key(source, r)
            weak = LABEL_TYPE.get(r.get("label_type") or "") if source == FUZHOU else title_request_type(r.get("title"))
            if (source, key) in human:
                if source != FUZHOU:
                    both.append((weak, human[(source, key)]))
                continue
            text = r.get("text")
            if weak is None or not isinstance(text, str) or not text.strip():
                continue
            norm = normalize(text)
            if norm in skip or norm in seen:  # the same message in two files counts once
                continue
            seen.add(norm)
            cands.append({"id": f"weak-{source}-{key}", "title": r.get("title"), "text": text, "request_type": weak,
                          "label_source": "weak:label_type" if source == FUZHOU else "weak:title", "source": source,
                          "key": key})
    covered = [(w, h) for w, h in both if w is not None]
    quality: dict[str, Any] = {
        "labelled_teddy_messages": len(both), "title_covered": len(covered),
        "title_accuracy_where_covered": round(sum(w == h for w, h in covered) / max(1, len(covered)), 4),
        "title_confusions_human_to_weak": dict(Counter(f"{h}→{w}" for w, h in covered if w != h).most_common(8)),
    }
    ref = _labelled_texts(public_dir, load_real_labels(corpus_dir))
    near = {b if a.startswith("L:") else a for a, b, _ in near_duplicate_pairs(ref + cands)
            if a.startswith("L:") != b.startswith("L:")}
    rows = [c for c in cands if c["id"] not in near]
    quality.update({"weak_rows": len(rows), "dropped_near_duplicates_of_labelled": len(cands) - len(rows),
                    "weak_label_counts": {src: dict(Counter(r["request_type"] for r in rows if r["label_source"] == src))
                                          for src in ("weak:title", "weak:label_type")}})
    return rows, quality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--public", type=Path, default=PUBLIC_DIR)
    ap.add_argument("--json", type=Path, default=None, help="also write the quality report here")
    ap.add_argument("--topics-out", type=Path, default=None, help="also write board-topic weak rows here")
    ap.add_argument("--request-types-out", type=Path, default=None, help="also write weak request_type rows here")
    ap.add_argument("--exclude", type=Path, action="append", default=[],
                    help="JSONL whose texts the topic/title rows must not contain (e.g. data/datasets/teddy/test.jsonl)")
    args = ap.parse_args()
    rows, quality = build(args.public)
    write_jsonl(args.out, rows)
    report: dict[str, Any] = {"replies": quality}
    from triage.text import normalize

    skip = {normalize(row["text"]) for path in args.exclude for _, row in read_jsonl(path)}
    if args.request_types_out:
        q_rows, q_quality = build_request_types(args.public, exclude_texts=skip)
        write_jsonl(args.request_types_out, q_rows)
        report["request_types"] = q_quality
    if args.topics_out:
        t_rows, t_quality = build_topics(args.public, exclude_texts=skip)
        write_jsonl(args.topics_out, t_rows)
        report["topics"] = t_quality
    print_report(report, args.json)


if __name__ == "__main__":
    main()
