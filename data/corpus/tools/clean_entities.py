"""Make the writers' entity annotations follow one convention (reproducible, idempotent).

Usage: .venv/bin/python data/corpus/tools/clean_entities.py [--dry-run]
then   .venv/bin/triage data build && .venv/bin/triage data check

Rewrites the `entities` lists of data/corpus/raw/written_*.jsonl in place (nothing else in a record
changes) and appends every change to data/corpus/tools/clean_entities.log (file, id, action, type,
surface). A second run changes nothing.

The convention (GUIDE.md "entities", made precise where writers differed; DATA card "Known gaps"):

E1  `org` names ONE organisation: it carries a qualifier — a place (沙坪坝区人民法院, 江北区寸滩街道派出所),
    an administrative level (区政府, 县法院, 镇司法所, 市信访办), an ordinal (一中院, 市二中院) or a proper
    name (巴渝老灶火锅, 金港湾小区). A bare type noun is not an entity, as the guide already says for
    bare 公司/村里: 法院, 派出所, 检察院, 纪委, 教委, 卫健委, 公证处, 执行局, 村委会 … (writers tagged these
    in a minority of records: 法院 5 of 400 occurrences, 纪委 4 of 171). → drop bare type nouns.
E2  The same bodies with a level prefix are entities: 区政府 / 镇政府 / 县政府 … → add where a record
    mentions one and no entity of the record covers that text.
E3  `amount` is a sum of money (the guide's examples: 9600元, 三千六百块, 1.2万元, 四十多万). Areas,
    lengths and weights (3亩, 78平方米, 二十多米, 160多斤, 二十多公里) are not amounts → drop them; prices per unit
    (每亩600, 一斤一百八) are money and stay.
E4  `official` is a person with a title (村支书刘某, 王局长, 张法官, 民警小李); a bare title (组长, 执行法官,
    村支书, 校长) names no person. → drop bare titles.

Only annotations that break the convention are touched; nothing is changed to fit any model output.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RAW = ROOT / "data/corpus/raw"
LOG = ROOT / "data/corpus/tools/clean_entities.log"

# Type nouns of organisations (the body without any qualifier). Longest first in the regex.
BODY_TYPES = (
    "人民法院", "法院", "中院", "高院", "中级人民法院", "高级人民法院", "人民检察院", "检察院", "派出所", "公安局", "公安分局",
    "交警队", "交警部门", "车管所", "执行局", "立案庭", "公证处", "司法所", "司法局", "律师事务所", "法律援助中心",
    "纪委", "纪委监委", "监委", "政法委", "国资委", "教委", "卫健委", "住建委", "商务委", "文旅委", "经信委",
    "人社局", "社保局", "社保中心", "社保所", "医保局", "医保中心", "民政局", "税务局", "税务所", "财政局",
    "市场监管局", "市场监管所", "国土所", "规划自然资源所", "城管局", "城管执法大队", "执法大队", "信访办", "信访局",
    "信访接待室", "仲裁委", "劳动仲裁委", "医调委", "残联", "商务部门", "交通运输部门", "住建部门", "登记中心",
    "管理站", "农技站", "稽核科", "村委会", "居委会", "政府", "人民政府",
)
_BODY = "|".join(sorted(map(re.escape, BODY_TYPES), key=len, reverse=True))
BARE_ORG = re.compile(rf"(?:{_BODY})")
# 区政府 at the start of a clause or after a function word; 青山镇政府 / 沙坪坝区政府 carry their place and are left alone.
LEVEL_BODY = re.compile(
    r"(?:(?<=^)|(?<=[^\u4e00-\u9fa5])|(?<=[的在到向找给和与跟去被把是了让对从经由及]))(?:市|区|县|镇|乡)(?:人民政府|政府)"
)

MEASURE = re.compile(r"亩|平方|平米|米|斤|公里|吨|克|个平方")
MONEY = re.compile(r"元|块|钱|圆")
# a price per unit is money even without 元: 每亩600, 每亩补贴一千五, 一斤一百八, 八九十一斤
PRICE = re.compile(r"每亩.*[\d一二两三四五六七八九十百千万]|一斤[一二三四五六七八九十百]+|[一二三四五六七八九十百]+一斤")

TITLES = (
    "党支部书记", "村支部书记", "村支书", "支书", "村主任", "村长", "村会计", "村干部", "镇长", "副镇长", "乡长", "县长", "区长",
    "副区长", "市长", "副县长", "书记", "副书记", "主任", "副主任", "局长", "副局长", "科长", "副科长", "处长", "所长", "副所长",
    "站长", "队长", "中队长", "大队长", "网格员", "民警", "辅警", "警官", "法官", "审判长", "执行法官", "检察官", "院长",
    "副院长", "校长", "副校长", "厂长", "经理", "总经理", "副总经理", "董事长", "组长", "社长", "主席", "承办法官",
    "工作人员", "会计",
)
_TITLE = "|".join(sorted(map(re.escape, TITLES), key=len, reverse=True))
BARE_TITLE = re.compile(rf"(?:村|社区|街道|镇|乡|区|县)?(?:{_TITLE})")


def clean_record(rec: dict) -> list[tuple[str, str, str]]:
    """Fix rec['entities'] in place; return (action, type, surface) for every change."""
    changes: list[tuple[str, str, str]] = []
    kept = []
    for etype, surface in rec.get("entities") or []:
        rule = None
        if etype == "org" and BARE_ORG.fullmatch(surface):
            rule = "E1"
        elif etype == "amount" and MEASURE.search(surface) and not MONEY.search(surface) and not PRICE.fullmatch(surface):
            rule = "E3"
        elif etype == "official" and BARE_TITLE.fullmatch(surface):
            rule = "E4"
        if rule:
            changes.append((f"drop:{rule}", etype, surface))
        else:
            kept.append([etype, surface])
    text = rec.get("text") or ""
    surfaces = {s for _, s in kept}
    for m in LEVEL_BODY.finditer(text):
        s = m.group()
        if s in surfaces:
            continue
        # covered by another entity surface of the record (江津区人民政府 contains 区人民政府)?
        covered = any(sur != s and s in sur and _covers(text, sur, m.start(), m.end()) for sur in surfaces)
        if covered:
            continue
        kept.append(["org", s])
        surfaces.add(s)
        changes.append(("add:E2", "org", s))
    rec["entities"] = kept
    return changes


def _covers(text: str, surface: str, start: int, end: int) -> bool:
    i = text.find(surface)
    while i >= 0:
        if i <= start and end <= i + len(surface):
            return True
        i = text.find(surface, i + 1)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    args = ap.parse_args()
    log_lines = []
    total = 0
    for path in sorted(RAW.glob("written_*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        out = []
        for line in lines:
            if not line.strip():
                out.append(line)
                continue
            rec = json.loads(line)
            changes = clean_record(rec)
            if changes:
                total += len(changes)
                for action, etype, surface in changes:
                    log_lines.append(f"{path.name}\t{rec['id']}\t{action}\t{etype}\t{surface}")
                out.append(json.dumps(rec, ensure_ascii=False))
            else:
                out.append(line)
        if not args.dry_run:
            path.write_text("\n".join(out) + "\n", encoding="utf-8")
    if log_lines and not args.dry_run:
        with LOG.open("a", encoding="utf-8") as f:
            f.write("\n".join(log_lines) + "\n")
    print(f"{total} changes" + (" (dry run)" if args.dry_run else f", logged to {LOG.relative_to(ROOT)}"), file=sys.stderr)
    if args.dry_run:
        print("\n".join(log_lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
