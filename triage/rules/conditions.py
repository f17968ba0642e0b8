"""Rule conditions: a small, safe structured language read from data/policy/rules.toml.

A condition is a TOML table with exactly one operator key. Combinators nest conditions
(`all`, `any`, `not`); leaves look at the petition text, entities, model scores, duplicate links,
the petition record and what earlier rules decided (track, department, flags, status). Nothing is
ever evaluated as code: every operator is compiled at load time into a closure, and an unknown
operator, a wrong argument, an unknown label code or a bad regular expression is a load error that
names the file, the rule and the key path (`when.any[1].all[0].score_at_least.label`).

Each evaluation returns (matched, evidence): evidence is a short list of what made a leaf true
(keywords, scores against thresholds) that the engine puts into the decision's trace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from triage.schemas import DuplicateLink, Entities, Petition, Suggestion

if TYPE_CHECKING:
    from triage.taxonomy import Taxonomy


class ConditionError(ValueError):
    """Raised by the compiler; the loader turns it into a RuleFileError naming the file and rule."""


@dataclass
class Facts:
    """What conditions may look at for one petition (read-only) plus the engine's running state."""

    petition: Petition
    text: str  # title + normalised text, the haystack for keywords
    entities: Entities
    suggestions: Mapping[str, Suggestion]
    links: Sequence[DuplicateLink]
    received: date
    settings: Mapping[str, Any]
    state: Any  # engine.State: track, department, flags, status … as decided so far
    thresholds_used: dict[str, float] = field(default_factory=dict)


Result = tuple[bool, list[str]]
Condition = Callable[[Facts], Result]


@dataclass(frozen=True)
class CompileContext:
    """What the compiler checks references against."""

    taxonomy: Taxonomy
    keywords: Mapping[str, KeywordSet]
    thresholds: Mapping[str, Any]
    link_statuses: Mapping[str, frozenset[str]]
    settings: Mapping[str, Any]


# --- helpers ----------------------------------------------------------------------------------

ENTITY_TYPES = (
    "person", "official", "org", "place", "phone", "id_number", "bank_card", "amount", "date",
    "case_number", "plate", "headcount",
)
PETITION_CHANNELS = ("online", "letter", "visit", "phone")
_FIELD_KINDS = {"track": "tracks", "department": "departments", "request_type": "request_types"}
_DIGITS = re.compile(r"\d{5,}")


TRACE_ONLY = "~"  # evidence that goes to the trace (`triage rules explain`) but not into reason messages


def safe_evidence(text: str) -> str:
    """Evidence text: short, with long digit runs masked (never an ID or phone number)."""
    return _DIGITS.sub("***", text)[:24]


class KeywordSet:
    """Literal keywords and `re:` regular expressions compiled into one alternation.

    Evidence never quotes free petition text: a literal keyword is reported as itself; a regex
    match keeps only the Chinese characters that occur literally in the regex and replaces the rest with
    "…" (欠我9月、10月两个月工资 → 欠…工资), so names or numbers the regex skipped over do not leak
    into reasons.
    """

    def __init__(self, items: Sequence[str], where: str) -> None:
        if not isinstance(items, list) or not items:
            raise ConditionError(f"{where}: expected a non-empty list of keywords")
        literal_parts: list[str] = []
        regex_parts: list[str] = []
        self.literals: set[str] = set()
        self.regexes: list[tuple[re.Pattern[str], frozenset[str]]] = []
        for item in items:
            if not isinstance(item, str) or not item.strip():
                raise ConditionError(f"{where}: keywords must be non-empty strings")
            if item.startswith("re:"):
                try:
                    rx = re.compile(item[3:])
                except re.error as exc:
                    raise ConditionError(f"{where}: bad regular expression {item[3:]!r}: {exc}") from exc
                self.regexes.append((rx, frozenset(c for c in item[3:] if "\u4e00" <= c <= "\u9fff")))
                regex_parts.append(f"(?:{item[3:]})")
            else:
                self.literals.add(item)
                literal_parts.append(item)
        # Longest literals first so 不承认劳动关系 wins over 劳动关系.
        literal_parts.sort(key=len, reverse=True)
        self.pattern = re.compile("|".join([*regex_parts, *(re.escape(x) for x in literal_parts)]))

    def search(self, text: str) -> re.Match[str] | None:
        return self.pattern.search(text)

    def finditer(self, text: str) -> list[re.Match[str]]:
        return list(self.pattern.finditer(text))

    def evidence(self, matched: str) -> str:
        if matched in self.literals:
            return matched
        for rx, chars in self.regexes:
            if rx.fullmatch(matched):
                return safe_evidence(re.sub(r"…+", "…", "".join(c if c in chars else "…" for c in matched)))
        return "…"


def compile_keywords(items: Sequence[str], where: str) -> KeywordSet:
    """Literal keywords (and `re:` regular expressions) → one KeywordSet."""
    return KeywordSet(items, where)


def _expect(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise ConditionError(f"{where}: {message}")


def _table(value: Any, where: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    _expect(isinstance(value, dict), where, "expected a table")
    unknown = sorted(set(value) - set(required) - set(optional))
    _expect(not unknown, where, f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join([*required, *optional])})")
    missing = [k for k in required if k not in value]
    _expect(not missing, where, f"missing key(s) {', '.join(missing)}")
    return dict(value)


def _codes(ctx: CompileContext, kind: str, value: Any, where: str) -> frozenset[str]:
    values = [value] if isinstance(value, str) else value
    _expect(isinstance(values, list) and values and all(isinstance(v, str) for v in values), where,
            f"expected a {kind} code or a list of them")
    known = set(ctx.taxonomy.codes(kind))
    for v in values:
        _expect(v in known, where, f"unknown {kind} code {v!r}")
    return frozenset(values)


def _field(ctx: CompileContext, value: Any, where: str) -> str:
    _expect(value in _FIELD_KINDS, where, f"field must be one of {', '.join(_FIELD_KINDS)} (got {value!r})")
    return str(value)


class ThresholdRef:
    """A number, or the name of a threshold in [thresholds] (per-class `<name>_per_<field>` overrides)."""

    def __init__(self, ctx: CompileContext, value: Any, where: str, field_: str | None = None) -> None:
        self.field = field_
        if isinstance(value, bool):
            raise ConditionError(f"{where}: expected a number or a threshold name")
        if isinstance(value, int | float):
            self.name: str | None = None
            self.number = float(value)
            return
        _expect(isinstance(value, str), where, "expected a number or a threshold name")
        _expect(value in ctx.thresholds and isinstance(ctx.thresholds[value], int | float), where,
                f"unknown threshold {value!r} (define it in [thresholds])")
        self.name = value
        self.number = float(ctx.thresholds[value])
        per = ctx.thresholds.get(f"{value}_per_{field_}") if field_ else None
        self.per_class: dict[str, float] = {k: float(v) for k, v in (per or {}).items()}

    def resolve(self, facts: Facts, label: str | None = None) -> float:
        if self.name is None:
            return self.number
        if label is not None and label in self.per_class:
            facts.thresholds_used[f"{self.name}[{label}]"] = self.per_class[label]
            return self.per_class[label]
        facts.thresholds_used[self.name] = self.number
        return self.number


def _score(facts: Facts, field_: str, label: str) -> float:
    sug = facts.suggestions.get(field_)
    if sug is None:
        return 0.0
    return next((ls.score for ls in sug.labels if ls.label == label), 0.0)


def _ranked(facts: Facts, field_: str) -> list[tuple[str, float]]:
    sug = facts.suggestions.get(field_)
    return [(ls.label, ls.score) for ls in sug.labels] if sug else []


def parse_count(text: str) -> float | None:
    """'二十几' → 20, '60多' → 60, '18' → 18 (approximate counts read as their lower bound)."""
    from triage.entities import parse_number

    return parse_number(re.sub(r"[多余几来]", "", text))


# --- operators --------------------------------------------------------------------------------

Compiler = Callable[[CompileContext, Any, str], Condition]
OPERATORS: dict[str, Compiler] = {}
DOCS: dict[str, str] = {}


def operator(name: str, doc: str) -> Callable[[Compiler], Compiler]:
    def register(fn: Compiler) -> Compiler:
        OPERATORS[name] = fn
        DOCS[name] = doc
        return fn

    return register


def compile_condition(ctx: CompileContext, node: Any, where: str) -> Condition:
    """Compile one condition table (exactly one operator key)."""
    _expect(isinstance(node, dict), where, "a condition must be a table with one operator, e.g. {any_keyword = [...]}")
    _expect(len(node) == 1, where, f"a condition has exactly one operator key (got {', '.join(node) or 'none'})")
    (op, arg), = node.items()
    if op not in OPERATORS:
        raise ConditionError(f"{where}: unknown operator {op!r} (known: {', '.join(sorted(OPERATORS))})")
    return OPERATORS[op](ctx, arg, f"{where}.{op}")


@operator("all", "all of a list of conditions")
def _all(ctx: CompileContext, arg: Any, where: str) -> Condition:
    _expect(isinstance(arg, list) and arg, where, "expected a non-empty list of conditions")
    parts = [compile_condition(ctx, c, f"{where}[{i}]") for i, c in enumerate(arg)]

    def run(f: Facts) -> Result:
        ev: list[str] = []
        for p in parts:
            ok, e = p(f)
            if not ok:
                return False, []
            ev += e
        return True, ev

    return run


@operator("any", "at least one of a list of conditions (evidence of the first that holds)")
def _any(ctx: CompileContext, arg: Any, where: str) -> Condition:
    _expect(isinstance(arg, list) and arg, where, "expected a non-empty list of conditions")
    parts = [compile_condition(ctx, c, f"{where}[{i}]") for i, c in enumerate(arg)]

    def run(f: Facts) -> Result:
        for p in parts:
            ok, e = p(f)
            if ok:
                return True, e
        return False, []

    return run


@operator("not", "negation of one condition")
def _not(ctx: CompileContext, arg: Any, where: str) -> Condition:
    inner = compile_condition(ctx, arg, where)
    return lambda f: (not inner(f)[0], [])


@operator("always", "always true (always = true)")
def _always(ctx: CompileContext, arg: Any, where: str) -> Condition:
    _expect(arg is True, where, "write always = true")
    return lambda f: (True, [])


def _keyword_pattern(ctx: CompileContext, arg: Any, where: str) -> KeywordSet:
    if isinstance(arg, str):
        _expect(arg.startswith("@"), where, "a string names a keyword list: write \"@name\" (or give a list)")
        _expect(arg[1:] in ctx.keywords, where, f"unknown keyword list {arg!r} (define it in [keywords])")
        return ctx.keywords[arg[1:]]
    _expect(isinstance(arg, list), where, "expected a list of keywords or \"@list\"")
    return compile_keywords(arg, where)


@operator("any_keyword", "the text contains one of these keywords (a list, or \"@name\" of a [keywords] list; "
                         "re:… items are regexes)")
def _any_keyword(ctx: CompileContext, arg: Any, where: str) -> Condition:
    pattern = _keyword_pattern(ctx, arg, where)

    def run(f: Facts) -> Result:
        hits = list(dict.fromkeys(pattern.evidence(m.group()) for m in pattern.finditer(f.text)))
        return bool(hits), hits

    return run


@operator("near", "a keyword of list a within `within` characters of a keyword of list b: {a, b, within}")
def _near(ctx: CompileContext, arg: Any, where: str) -> Condition:
    t = _table(arg, where, ("a", "b", "within"))
    a = _keyword_pattern(ctx, t["a"], f"{where}.a")
    b = _keyword_pattern(ctx, t["b"], f"{where}.b")
    within = t["within"]
    _expect(isinstance(within, int) and 0 <= within <= 200, f"{where}.within", "expected an integer 0–200")

    def run(f: Facts) -> Result:
        bs = [(m.start(), m.end(), m.group()) for m in b.finditer(f.text)]
        for m in a.finditer(f.text):
            for s, e, g in bs:
                gap = max(s - m.end(), m.start() - e, 0)
                if gap <= within:
                    return True, [a.evidence(m.group()), b.evidence(g)]
        return False, []

    return run


@operator("regex_number", "a regex with a group (?P<n>…) whose number is within [min, max]: {pattern, min, max?}")
def _regex_number(ctx: CompileContext, arg: Any, where: str) -> Condition:
    t = _table(arg, where, ("pattern", "min"), ("max",))
    try:
        rx = re.compile(t["pattern"])
    except (re.error, TypeError) as exc:
        raise ConditionError(f"{where}.pattern: bad regular expression: {exc}") from exc
    _expect("n" in rx.groupindex, f"{where}.pattern", "needs a named group (?P<n>…) for the number")
    lo, hi = t["min"], t.get("max")
    _expect(isinstance(lo, int | float), f"{where}.min", "expected a number")

    def run(f: Facts) -> Result:
        for m in rx.finditer(f.text):
            n = parse_count(m.group("n"))
            if n is not None and n >= lo and (hi is None or n <= hi):
                return True, [safe_evidence(m.group())]
        return False, []

    return run


def _score_op(ctx: CompileContext, arg: Any, where: str, below: bool) -> Condition:
    t = _table(arg, where, ("field", "label", "value"))
    fld = _field(ctx, t["field"], f"{where}.field")
    labels = _codes(ctx, _FIELD_KINDS[fld], t["label"], f"{where}.label")
    ref = ThresholdRef(ctx, t["value"], f"{where}.value", fld)

    def run(f: Facts) -> Result:
        for label in sorted(labels):
            s, thr = _score(f, fld, label), ref.resolve(f, label)
            if (s < thr) if below else (s >= thr):
                return True, [f"p[{label}]={s:.2f}{'<' if below else '≥'}{thr:.2f}"]
        return False, []

    return run


@operator("score_at_least", "model score of a label ≥ value: {field, label, value = number | threshold name}")
def _score_at_least(ctx: CompileContext, arg: Any, where: str) -> Condition:
    return _score_op(ctx, arg, where, below=False)


@operator("score_below", "model score of a label < value: {field, label, value}")
def _score_below(ctx: CompileContext, arg: Any, where: str) -> Condition:
    return _score_op(ctx, arg, where, below=True)


@operator("top_is", "the model's top label is one of these: {field, label = code | [codes]}")
def _top_is(ctx: CompileContext, arg: Any, where: str) -> Condition:
    t = _table(arg, where, ("field", "label"))
    fld = _field(ctx, t["field"], f"{where}.field")
    labels = _codes(ctx, _FIELD_KINDS[fld], t["label"], f"{where}.label")

    def run(f: Facts) -> Result:
        ranked = _ranked(f, fld)
        ok = bool(ranked) and ranked[0][0] in labels
        return ok, [f"{TRACE_ONLY}模型{fld}={ranked[0][0]}"] if ok else []

    return run


@operator("top_score_below", "the model's top score < value (per-class thresholds apply to the top label): {field, value}")
def _top_score_below(ctx: CompileContext, arg: Any, where: str) -> Condition:
    t = _table(arg, where, ("field", "value"))
    fld = _field(ctx, t["field"], f"{where}.field")
    ref = ThresholdRef(ctx, t["value"], f"{where}.value", fld)

    def run(f: Facts) -> Result:
        ranked = _ranked(f, fld)
        if not ranked:
            return True, [f"无{fld}模型分数"]
        label, s = ranked[0]
        thr = ref.resolve(f, label)
        return (s < thr), [f"{fld}最高分{label}={s:.2f}<{thr:.2f}"] if s < thr else []

    return run


@operator("margin_below", "top-1 minus top-2 model score < value: {field, value}")
def _margin_below(ctx: CompileContext, arg: Any, where: str) -> Condition:
    t = _table(arg, where, ("field", "value"))
    fld = _field(ctx, t["field"], f"{where}.field")
    ref = ThresholdRef(ctx, t["value"], f"{where}.value", fld)

    def run(f: Facts) -> Result:
        ranked = _ranked(f, fld)
        if len(ranked) < 2:
            return False, []
        margin, thr = ranked[0][1] - ranked[1][1], ref.resolve(f)
        return (margin < thr), [f"{fld}前两名差{margin:.2f}<{thr:.2f}"] if margin < thr else []

    return run


@operator("second_score_at_least", "the model's second-ranked label scores ≥ value (two candidates): {field, value}")
def _second_score_at_least(ctx: CompileContext, arg: Any, where: str) -> Condition:
    t = _table(arg, where, ("field", "value"))
    fld = _field(ctx, t["field"], f"{where}.field")
    ref = ThresholdRef(ctx, t["value"], f"{where}.value", fld)

    def run(f: Facts) -> Result:
        ranked = _ranked(f, fld)
        if len(ranked) < 2:
            return False, []
        thr = ref.resolve(f)
        ok = ranked[0][1] >= thr and ranked[1][1] >= thr
        return ok, [f"{ranked[0][0]}={ranked[0][1]:.2f}, {ranked[1][0]}={ranked[1][1]:.2f} ≥{thr:.2f}"] if ok else []

    return run


@operator("entity_count", "number of entities of a type within [min, max]: {type, min = 1, max?}")
def _entity_count(ctx: CompileContext, arg: Any, where: str) -> Condition:
    t = _table(arg, where, ("type",), ("min", "max"))
    _expect(t["type"] in ENTITY_TYPES, f"{where}.type", f"unknown entity type {t['type']!r} (known: {', '.join(ENTITY_TYPES)})")
    lo, hi = t.get("min", 1), t.get("max")
    _expect(isinstance(lo, int) and (hi is None or isinstance(hi, int)), where, "min/max must be integers")

    def run(f: Facts) -> Result:
        n = len(f.entities.of_type(t["type"]))
        ok = n >= lo and (hi is None or n <= hi)
        return ok, [f"{TRACE_ONLY}{t['type']}×{n}"] if ok else []

    return run


@operator("entity_value", "an entity of a type whose numeric value is within [min, max]: {type, min, max?}")
def _entity_value(ctx: CompileContext, arg: Any, where: str) -> Condition:
    t = _table(arg, where, ("type", "min"), ("max",))
    _expect(t["type"] in ENTITY_TYPES, f"{where}.type", f"unknown entity type {t['type']!r}")
    lo, hi = t["min"], t.get("max")

    def run(f: Facts) -> Result:
        for e in f.entities.of_type(t["type"]):
            if isinstance(e.value, int | float) and e.value >= lo and (hi is None or e.value <= hi):
                return True, [f"{TRACE_ONLY}{t['type']}={e.value:g}"]
        return False, []

    return run


@operator("place_known", "whether a Chongqing 区县 was resolved for the matter (true/false)")
def _place_known(ctx: CompileContext, arg: Any, where: str) -> Condition:
    _expect(isinstance(arg, bool), where, "expected true or false")

    def run(f: Facts) -> Result:
        known = f.entities.place.district is not None
        return known == arg, ([] if known else ["未识别到区县"])

    return run


@operator("channel_in", "the petition's channel (online, letter, visit, phone) is one of these")
def _channel_in(ctx: CompileContext, arg: Any, where: str) -> Condition:
    _expect(isinstance(arg, list) and arg and all(a in PETITION_CHANNELS for a in arg), where,
            f"expected a list from {', '.join(PETITION_CHANNELS)}")
    return lambda f: (f.petition.channel in arg, [f"{TRACE_ONLY}channel={f.petition.channel}"])


@operator("headcount_at_least", "the petition record's headcount field ≥ n")
def _headcount_at_least(ctx: CompileContext, arg: Any, where: str) -> Condition:
    _expect(isinstance(arg, int) and arg > 0, where, "expected a positive integer")

    def run(f: Facts) -> Result:
        n = f.petition.headcount
        return (n is not None and n >= arg), [f"{TRACE_ONLY}登记人数{n}"]

    return run


@operator("petitioner_unidentified", "true: the record has neither the petitioner's name nor any contact (phone, ID, account)")
def _petitioner_unidentified(ctx: CompileContext, arg: Any, where: str) -> Condition:
    _expect(arg is True, where, "write petitioner_unidentified = true")

    def run(f: Facts) -> Result:
        p = f.petition.petitioner
        ok = p is None or not (p.name and (p.phone or p.id_number or p.account))
        return ok, ["缺少信访人姓名或联系方式"] if ok else []

    return run


@operator("text_shorter_than", "the normalised text has fewer than n characters")
def _text_shorter(ctx: CompileContext, arg: Any, where: str) -> Condition:
    _expect(isinstance(arg, int) and arg > 0, where, "expected a positive integer")
    return lambda f: (len(f.petition.text) < arg, [f"{TRACE_ONLY}正文{len(f.petition.text)}字"])


@operator("pii_sensitive", "true: health, minors or bank accounts in the text (triage.pii.is_pii_sensitive)")
def _pii_sensitive(ctx: CompileContext, arg: Any, where: str) -> Condition:
    _expect(arg is True, where, "write pii_sensitive = true")
    from triage.pii import is_pii_sensitive

    return lambda f: (is_pii_sensitive(f.text, f.entities), [])


def _state_codes(kind: str, attr: str) -> Compiler:
    def compile_(ctx: CompileContext, arg: Any, where: str) -> Condition:
        codes = _codes(ctx, kind, arg, where)

        def run(f: Facts) -> Result:
            v = getattr(f.state, attr)
            return v in codes, [f"{TRACE_ONLY}{attr}={v}"] if v in codes else []

        return run

    return compile_


operator("track_is", "the track decided so far is one of these")(_state_codes("tracks", "track"))
operator("department_is", "the department decided so far is one of these")(_state_codes("departments", "department"))
operator("status_is", "the status decided so far is one of these (auto, needs_review)")(_state_codes("statuses", "status"))


@operator("flag_set", "one of these flags is already set by an earlier rule")
def _flag_set(ctx: CompileContext, arg: Any, where: str) -> Condition:
    codes = _codes(ctx, "flags", arg, where)

    def run(f: Facts) -> Result:
        hit = [c for c in f.state.flags if c in codes]
        return bool(hit), hit

    return run


@operator("blocking_flag", "true: a flag marked blocking in the taxonomy is set (group, risk, confidential, place_unknown)")
def _blocking_flag(ctx: CompileContext, arg: Any, where: str) -> Condition:
    _expect(arg is True, where, "write blocking_flag = true")
    blocking = frozenset(lab.code for lab in ctx.taxonomy.flags if lab.blocking)

    def run(f: Facts) -> Result:
        hit = [c for c in f.state.flags if c in blocking]
        return bool(hit), hit

    return run


@operator("setting_is", "a value of [settings] equals: {name, equals}")
def _setting_is(ctx: CompileContext, arg: Any, where: str) -> Condition:
    t = _table(arg, where, ("name", "equals"))
    _expect(t["name"] in ctx.settings, f"{where}.name", f"unknown setting {t['name']!r} (define it in [settings])")
    return lambda f: (f.settings.get(t["name"]) == t["equals"], [])


LINK_KEYS = ("status", "same_petitioner", "min_probability", "answered_within_days", "answered_after_days",
             "due_not_passed", "submitted_within_days", "count_at_least")


@operator("link", "duplicate links matching all given filters: {status = [link statuses], same_petitioner, "
                  "min_probability, answered_within_days, answered_after_days, due_not_passed, submitted_within_days, "
                  "count_at_least = 1}")
def _link(ctx: CompileContext, arg: Any, where: str) -> Condition:
    t = _table(arg, where, (), LINK_KEYS)
    statuses: frozenset[str] | None = None
    if "status" in t:
        names = [t["status"]] if isinstance(t["status"], str) else t["status"]
        _expect(isinstance(names, list) and names, f"{where}.status", "expected a link status or a list")
        accepted: set[str] = set()
        for n in names:
            _expect(n in ctx.link_statuses, f"{where}.status", f"unknown link status {n!r} (define it in [link_statuses])")
            accepted |= ctx.link_statuses[n]
        statuses = frozenset(accepted)
    prob = ThresholdRef(ctx, t["min_probability"], f"{where}.min_probability") if "min_probability" in t else None
    for k in ("answered_within_days", "answered_after_days", "submitted_within_days", "count_at_least"):
        if k in t:
            _expect(isinstance(t[k], int) and t[k] >= 0, f"{where}.{k}", "expected a non-negative integer")
    for k in ("same_petitioner", "due_not_passed"):
        if k in t:
            _expect(isinstance(t[k], bool), f"{where}.{k}", "expected true or false")
    need = t.get("count_at_least", 1)

    def matches(f: Facts, link: DuplicateLink) -> bool:
        if statuses is not None and link.status not in statuses:
            return False
        if "same_petitioner" in t and link.same_petitioner != t["same_petitioner"]:
            return False
        if prob is not None and link.probability < prob.resolve(f):
            return False
        answered = link.answered_at.date() if link.answered_at else None
        if "answered_within_days" in t and (answered is None or (f.received - answered).days > t["answered_within_days"]):
            return False
        if "answered_after_days" in t and (answered is None or (f.received - answered).days <= t["answered_after_days"]):
            return False
        if t.get("due_not_passed") and link.due is not None and link.due < f.received:
            return False
        submitted = link.submitted_at.date() if link.submitted_at else None
        return not ("submitted_within_days" in t
                    and (submitted is None or (f.received - submitted).days > t["submitted_within_days"]))

    def run(f: Facts) -> Result:
        hit = [link for link in f.links if matches(f, link)]
        if len(hit) >= need:
            return True, [f"关联件{link.case_id}({link.status}, {link.probability:.2f})" for link in hit[:3]]
        return False, []

    return run
