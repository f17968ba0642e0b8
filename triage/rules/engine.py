"""The rule engine: data/policy/rules.toml → RuleDecider (the `decide` stage of the pipeline).

Rules are evaluated in file order. Each has a condition (`when`, see conditions.py) and actions
(`then`). Flags, co-handlers, reasons and deadlines accumulate; status only escalates
(auto → needs_review); priority only rises (P2 → P1 → P0). A rule with `stop = true` locks the
track: later rules that would set track or department are skipped (DOMAIN.md §2: R01–R09 may stop
track evaluation, flags accumulate).

Nothing is ever decided as not_accepted (不予受理/不再受理) or merged (并案) by the machine: such
outcomes can only be *proposed* (`propose = {status = …}`), which sets `Decision.proposed_status`
and forces status needs_review. The loader rejects `status = "not_accepted"` or `"merged"` in any
rule, so the guarantee holds for every rule file that loads.
"""

from __future__ import annotations

import hashlib
import logging
import string
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from triage.deadlines import CalendarCoverageError, HolidayCalendar, Period, act_date
from triage.errors import ArtifactMismatchError, TaxonomyError
from triage.pipeline import DecisionContext
from triage.rules.conditions import (
    TRACE_ONLY,
    CompileContext,
    Condition,
    ConditionError,
    Facts,
    compile_condition,
    compile_keywords,
)
from triage.schemas import Deadline, Decision, DuplicateLink, Reason
from triage.taxonomy import DATA_DIR, RuleEntry, Taxonomy, _RulesFile

logger = logging.getLogger(__name__)

RULES_PATH = DATA_DIR / "policy" / "rules.toml"
CHINA_TZ = timezone(timedelta(hours=8))  # Beijing time, no daylight saving since 1991
PRIORITY_ORDER = {"P2": 0, "P1": 1, "P0": 2}
PROPOSABLE = ("not_accepted", "merged")
PLACEHOLDERS = frozenset({"hits", "district", "track_name", "department_name", "handling_unit", "case_id", "unit"})
ACTION_KEYS = (
    "track", "department", "co_departments", "status", "propose", "priority", "procedure", "flags", "reason",
    "stop", "review_if_model_disagrees", "sub_target", "level", "route", "guidance", "deadlines", "review_window",
    "sample",
)
TRACK_ACTIONS = ("track", "department")
DEADLINE_KEYS = ("period", "basis", "tracks", "not_tracks", "departments", "procedure")
WINDOW_KEYS = ("period", "basis", "tracks", "departments", "act_cues", "label")


class RuleFileError(TaxonomyError):
    """The decision-rule file is malformed: names the file, the rule and the key."""

    code = "T210"
    title = "决策规则文件有误"


# --- the loaded rule set ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    basis: str
    note: str | None
    when: Condition
    then: Mapping[str, Any]
    sets_track: bool
    when_source: Any  # the TOML table, for `triage rules check`


@dataclass(frozen=True)
class DeadlineSpec:
    kind: str
    period: Period
    basis: str
    tracks: frozenset[str] | None = None
    not_tracks: frozenset[str] = frozenset()
    departments: frozenset[str] | None = None
    procedure: str | None = None
    label: str | None = None
    act_cues: Any = None  # compiled pattern (channel windows only)

    def applies(self, track: str, department: str, procedure: str) -> bool:
        return ((self.tracks is None or track in self.tracks) and track not in self.not_tracks
                and (self.departments is None or department in self.departments)
                and (self.procedure is None or procedure == self.procedure))


@dataclass(frozen=True)
class RuleSet:
    path: Path
    rules_version: str
    content_hash: str
    thresholds: Mapping[str, Any]
    settings: Mapping[str, Any]
    calendar: HolidayCalendar
    rules: tuple[Rule, ...]
    deadlines: tuple[DeadlineSpec, ...]
    windows: tuple[DeadlineSpec, ...]
    guidance: Mapping[str, Any]

    @property
    def version(self) -> str:
        return f"{self.rules_version}+{self.content_hash[:12]}"


def _fail(path: Path, where: str, message: str) -> RuleFileError:
    return RuleFileError(f"{path}: {where}: {message}")


def _check_codes(path: Path, taxonomy: Taxonomy, kind: str, values: Any, where: str) -> list[str]:
    vals = [values] if isinstance(values, str) else values
    if not isinstance(vals, list) or not all(isinstance(v, str) for v in vals):
        raise _fail(path, where, f"expected a {kind} code or a list of them")
    known = set(taxonomy.codes(kind))
    for v in vals:
        if v not in known:
            raise _fail(path, where, f"unknown {kind} code {v!r}")
    return list(vals)


def _check_template(path: Path, text: Any, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise _fail(path, where, "expected a non-empty Chinese message")
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise _fail(path, where, f"bad placeholder syntax: {exc}") from exc
    unknown = sorted(names - PLACEHOLDERS)
    if unknown:
        raise _fail(path, where, f"unknown placeholder(s) {', '.join(unknown)} (allowed: {', '.join(sorted(PLACEHOLDERS))})")
    return text


def _compile_then(path: Path, taxonomy: Taxonomy, rule: RuleEntry, ctx: CompileContext) -> dict[str, Any]:
    where = f"rule {rule.id}: then"
    then = rule.then
    if not isinstance(then, dict) or not then:
        raise _fail(path, where, "missing or empty: give at least one action")
    unknown = sorted(set(then) - set(ACTION_KEYS))
    if unknown:
        raise _fail(path, where, f"unknown action(s) {', '.join(unknown)} (known: {', '.join(ACTION_KEYS)})")
    out: dict[str, Any] = dict(then)
    if "track" in then:
        _check_codes(path, taxonomy, "tracks", then["track"], f"{where}.track")
    if "department" in then:
        _check_codes(path, taxonomy, "departments", then["department"], f"{where}.department")
    if "co_departments" in then:
        codes = then["co_departments"]
        if not isinstance(codes, list):
            raise _fail(path, f"{where}.co_departments", "expected a list")
        _check_codes(path, taxonomy, "departments", [c for c in codes if c != "@second"] or ["district"],
                     f"{where}.co_departments")
    if "flags" in then:
        _check_codes(path, taxonomy, "flags", then["flags"], f"{where}.flags")
    if "status" in then:
        if then["status"] in PROPOSABLE:
            raise _fail(path, f"{where}.status",
                        f"{then['status']!r} is never decided by rules: write propose = {{status = \"{then['status']}\", "
                        "code = \"…\"}} (a human confirms it; status becomes needs_review)")
        if then["status"] != "needs_review":
            raise _fail(path, f"{where}.status", "rules can only escalate the status: the value must be \"needs_review\"")
    if "propose" in then:
        p = then["propose"]
        if not isinstance(p, dict) or set(p) - {"status", "code", "merge_into"} or p.get("status") not in PROPOSABLE:
            raise _fail(path, f"{where}.propose", "expected {status = \"not_accepted\" | \"merged\", code = \"NR-…\", "
                                                  "merge_into = \"best_link\"?}")
        if not isinstance(p.get("code"), str):
            raise _fail(path, f"{where}.propose.code", "give the reason code (e.g. NR-36)")
        if p["status"] == "merged" and p.get("merge_into") != "best_link":
            raise _fail(path, f"{where}.propose.merge_into", "a merge proposal needs merge_into = \"best_link\"")
    if "priority" in then and then["priority"] not in PRIORITY_ORDER:
        raise _fail(path, f"{where}.priority", "expected P0, P1 or P2")
    if "procedure" in then and then["procedure"] not in ("normal", "simple"):
        raise _fail(path, f"{where}.procedure", "expected normal or simple")
    if "level" in then and then["level"] != "city":
        raise _fail(path, f"{where}.level", "the only level a rule can set is \"city\" (district is the default)")
    for key in ("stop", "review_if_model_disagrees", "route", "guidance", "deadlines", "review_window"):
        if key in then and not isinstance(then[key], bool):
            raise _fail(path, f"{where}.{key}", "expected true or false")
    if "reason" in then:
        _check_template(path, then["reason"], f"{where}.reason")
    if "sample" in then:
        name = then["sample"]
        if name not in ctx.thresholds or not isinstance(ctx.thresholds[name], int | float):
            raise _fail(path, f"{where}.sample", f"unknown threshold {name!r}")
    if "sub_target" in then:
        items = then["sub_target"]
        if not isinstance(items, list) or not items:
            raise _fail(path, f"{where}.sub_target", "expected a list of {name, keywords}")
        compiled = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or set(item) != {"name", "keywords"}:
                raise _fail(path, f"{where}.sub_target[{i}]", "expected {name = \"法院\", keywords = [...]}")
            try:
                compiled.append((item["name"], compile_keywords(item["keywords"], f"{where}.sub_target[{i}]")))
            except ConditionError as exc:
                raise _fail(path, f"rule {rule.id}", str(exc)) from exc
        out["sub_target"] = compiled
    return out


def _period(path: Path, value: Any, where: str) -> Period:
    try:
        return Period.parse(value if isinstance(value, str) else "")
    except ValueError as exc:
        raise _fail(path, where, str(exc)) from exc


def _deadline_specs(path: Path, taxonomy: Taxonomy, table: Mapping[str, Any], ctx: CompileContext,
                    windows: bool) -> tuple[DeadlineSpec, ...]:
    section = "channel_windows" if windows else "deadlines"
    allowed = WINDOW_KEYS if windows else DEADLINE_KEYS
    out = []
    for kind, spec in table.items():
        where = f"[{section}.{kind}]"
        if not isinstance(spec, dict):
            raise _fail(path, where, "expected a table")
        unknown = sorted(set(spec) - set(allowed))
        if unknown:
            raise _fail(path, where, f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")
        for key in ("period", "basis"):
            if key not in spec:
                raise _fail(path, where, f"missing {key}")
        tracks = _check_codes(path, taxonomy, "tracks", spec["tracks"], f"{where}.tracks") if "tracks" in spec else None
        not_tracks = _check_codes(path, taxonomy, "tracks", spec["not_tracks"], f"{where}.not_tracks") \
            if "not_tracks" in spec else []
        depts = _check_codes(path, taxonomy, "departments", spec["departments"], f"{where}.departments") \
            if "departments" in spec else None
        if spec.get("procedure") not in (None, "normal", "simple"):
            raise _fail(path, f"{where}.procedure", "expected normal or simple")
        cues = None
        if windows:
            if "act_cues" not in spec or "label" not in spec:
                raise _fail(path, where, "a channel window needs label and act_cues (words that name the contested act)")
            ref = spec["act_cues"]
            if isinstance(ref, str) and ref.startswith("@") and ref[1:] in ctx.keywords:
                cues = ctx.keywords[ref[1:]]
            else:
                raise _fail(path, f"{where}.act_cues", "expected \"@name\" of a [keywords] list")
        out.append(DeadlineSpec(
            kind=kind, period=_period(path, spec["period"], f"{where}.period"),
            basis=_check_template(path, spec["basis"], f"{where}.basis"),
            tracks=frozenset(tracks) if tracks is not None else None, not_tracks=frozenset(not_tracks),
            departments=frozenset(depts) if depts is not None else None, procedure=spec.get("procedure"),
            label=spec.get("label"), act_cues=cues,
        ))
    return tuple(out)


def _calendar(path: Path, table: Mapping[str, Any]) -> HolidayCalendar:
    unknown = sorted(set(table) - {"holidays", "workdays", "years"})
    if unknown:
        raise _fail(path, "[calendar]", f"unknown key(s) {', '.join(unknown)} (allowed: holidays, workdays, years)")

    def days(key: str) -> frozenset[date]:
        vals = table.get(key, [])
        if not isinstance(vals, list) or not all(isinstance(v, date) and not isinstance(v, datetime) for v in vals):
            raise _fail(path, f"[calendar].{key}", "expected a list of TOML dates (2027-01-01)")
        return frozenset(vals)

    years = table.get("years", [])
    if not isinstance(years, list) or not all(isinstance(y, int) for y in years):
        raise _fail(path, "[calendar].years", "expected a list of years whose schedule is given in full")
    return HolidayCalendar(days("holidays"), days("workdays"), frozenset(years))


def load_rules(taxonomy: Taxonomy, path: Path | None = None) -> RuleSet:
    """Read, validate and compile the decision-rule file.

    Raises:
        RuleFileError: malformed file, unknown operator/action/code/threshold/keyword list,
            duplicate rule id, a rule that would decide not_accepted/merged without review …
    """
    path = Path(path or RULES_PATH)
    if not path.exists():
        raise RuleFileError(f"{path}: file not found")
    raw_bytes = path.read_bytes()
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RuleFileError(f"{path}: cannot be parsed: {exc}") from exc
    try:
        parsed = _RulesFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise RuleFileError(f"{path}: {loc}: {first['msg']}") from exc
    if parsed.taxonomy_version != taxonomy.version:
        raise RuleFileError(f"{path}: taxonomy_version {parsed.taxonomy_version!r} differs from the loaded taxonomy "
                            f"({taxonomy.version!r})")
    track_codes = set(taxonomy.codes("tracks"))
    for key, value in parsed.thresholds.items():
        if isinstance(value, dict):
            for track, v in value.items():
                if track not in track_codes:
                    raise _fail(path, f"thresholds.{key}", f"unknown track {track!r}")
                if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                    raise _fail(path, f"thresholds.{key}.{track}", "must be a number in [0, 1]")
        elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise _fail(path, f"thresholds.{key}", "must be a number in [0, 1]")

    keywords = {}
    for name, items in parsed.keywords.items():
        try:
            keywords[name] = compile_keywords(items, f"[keywords].{name}")
        except ConditionError as exc:
            raise RuleFileError(f"{path}: {exc}") from exc
    link_statuses = {k: frozenset(v) for k, v in parsed.link_statuses.items()}
    ctx = CompileContext(taxonomy, keywords, parsed.thresholds, link_statuses, parsed.settings)

    seen: set[str] = set()
    rules = []
    for entry in parsed.rules:
        if entry.id in seen:
            raise RuleFileError(f"{path}: duplicate rule id {entry.id!r}")
        seen.add(entry.id)
        if entry.when is None:
            raise _fail(path, f"rule {entry.id}", "missing `when` (use when = {always = true} for a rule that always applies)")
        try:
            cond = compile_condition(ctx, entry.when, f"rule {entry.id}: when")
        except ConditionError as exc:
            raise RuleFileError(f"{path}: {exc}") from exc
        then = _compile_then(path, taxonomy, entry, ctx)
        rules.append(Rule(entry.id, entry.name, entry.basis, entry.note, cond, then,
                          any(k in then for k in TRACK_ACTIONS), entry.when))

    risk_days = parsed.settings.get("deadline_risk_days", 30)
    if not isinstance(risk_days, int) or risk_days < 0:
        raise _fail(path, "[settings].deadline_risk_days", "expected a non-negative integer")
    for track, spec in parsed.guidance.items():
        _check_codes(path, taxonomy, "tracks", track, f"[guidance.{track}]")
        if not isinstance(spec, dict) or "text" not in spec or set(spec) - {"text", "by_department"}:
            raise _fail(path, f"[guidance.{track}]", "expected text = \"…\" and optional by_department = {code = \"…\"}")
        _check_template(path, spec["text"], f"[guidance.{track}].text")
        for dept, text in spec.get("by_department", {}).items():
            _check_codes(path, taxonomy, "departments", dept, f"[guidance.{track}].by_department")
            _check_template(path, text, f"[guidance.{track}].by_department.{dept}")

    return RuleSet(
        path=path, rules_version=parsed.rules_version, content_hash=hashlib.sha256(raw_bytes).hexdigest(),
        thresholds=parsed.thresholds, settings=parsed.settings, calendar=_calendar(path, parsed.calendar),
        rules=tuple(rules), deadlines=_deadline_specs(path, taxonomy, parsed.deadlines, ctx, windows=False),
        windows=_deadline_specs(path, taxonomy, parsed.channel_windows, ctx, windows=True), guidance=parsed.guidance,
    )


# --- evaluation -------------------------------------------------------------------------------


@dataclass
class State:
    """The decision as it is being built, rule by rule."""

    track: str
    department: str
    model_track: str
    model_department: str
    co_departments: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    status: str = "auto"
    proposed_status: str | None = None
    merged_into: str | None = None
    priority: str = "P2"
    procedure: str = "normal"
    level: str = "district"
    sub_target: str | None = None
    handling_unit: str | None = None
    locked_by: str | None = None
    reasons: list[Reason] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    deadlines: list[Deadline] = field(default_factory=list)

    def raise_priority(self, p: str) -> None:
        if PRIORITY_ORDER[p] > PRIORITY_ORDER[self.priority]:
            self.priority = p

    def add_flag(self, code: str) -> None:
        if code not in self.flags:
            self.flags.append(code)

    def add_co(self, code: str) -> None:
        if code != self.department and code not in self.co_departments:
            self.co_departments.append(code)


@dataclass(frozen=True)
class RuleOutcome:
    """One line of `triage rules explain`: what a rule did for this petition."""

    rule_id: str
    name: str
    outcome: str  # fired | not_matched | skipped
    evidence: tuple[str, ...] = ()


def _received_date(ctx: DecisionContext, today: date) -> tuple[date, bool]:
    at = ctx.petition.submitted_at
    if at is None:
        return today, False
    return at.astimezone(CHINA_TZ).date(), True


def _sample_fraction(key: str) -> float:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32


class RuleDecider:
    """Implements triage.pipeline.Decider with a loaded RuleSet."""

    def __init__(self, taxonomy: Taxonomy, rules: RuleSet, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.taxonomy = taxonomy
        self.rules = rules
        self.version = rules.version
        self._clock = clock or (lambda: datetime.now(CHINA_TZ))
        self._names = {kind: {lab.code: lab.name for lab in getattr(taxonomy, kind)} for kind in ("tracks", "departments")}

    # -- public
    def decide(self, ctx: DecisionContext) -> Decision:
        """Apply the rules to one petition; the Decision carries its own trace."""
        return self.evaluate(ctx)[0]

    def evaluate(self, ctx: DecisionContext) -> tuple[Decision, list[RuleOutcome]]:
        """The decision plus, for every rule in order, whether it fired (and why) or was skipped."""
        for fld in ("track", "department"):
            if fld not in ctx.suggestions or not ctx.suggestions[fld].labels:
                raise ArtifactMismatchError(
                    f"the decision rules need a {fld!r} suggestion; the classifier gave "
                    f"{', '.join(ctx.suggestions) or 'none'}. Use a model with track and department heads."
                )
        today = self._clock().astimezone(CHINA_TZ).date()
        received, known = _received_date(ctx, today)
        track = ctx.suggestions["track"].top.label
        dept = ctx.suggestions["department"].top.label
        state = State(track=track, department=dept, model_track=track, model_department=dept)
        text = f"{ctx.petition.title}\n{ctx.text}" if ctx.petition.title else ctx.text
        facts = Facts(ctx.petition, text, ctx.entities, ctx.suggestions, ctx.links, received,
                      self.rules.settings, state)
        if not known:
            state.reasons.append(Reason(rule_id="R15", message="未提供收到日期（submitted_at），期限按今日起算，请核对"))
        outcomes: list[RuleOutcome] = []
        for rule in self.rules.rules:
            if rule.sets_track and state.locked_by:
                outcomes.append(RuleOutcome(rule.id, rule.name, "skipped", (f"途径已由{state.locked_by}确定",)))
                continue
            ok, evidence = rule.when(facts)
            if not ok:
                outcomes.append(RuleOutcome(rule.id, rule.name, "not_matched"))
                continue
            extra, fired = self._apply(rule, evidence, ctx, facts, today)
            if fired:
                state.fired.append(rule.id)
            shown = tuple(e.removeprefix(TRACE_ONLY) for e in evidence + extra)
            outcomes.append(RuleOutcome(rule.id, rule.name, "fired" if fired else "not_matched", shown))
        decision = Decision(
            track=state.track, department=state.department, co_departments=state.co_departments,
            request_type=ctx.suggestions["request_type"].top.label if "request_type" in ctx.suggestions else None,
            flags=state.flags, status=state.status,  # type: ignore[arg-type]
            proposed_status=state.proposed_status,  # type: ignore[arg-type]
            handling_unit=state.handling_unit, priority=state.priority,  # type: ignore[arg-type]
            procedure=state.procedure,  # type: ignore[arg-type]
            merged_into=state.merged_into, deadlines=state.deadlines, reasons=state.reasons,
            rules_fired=state.fired, thresholds=dict(sorted(facts.thresholds_used.items())),
            model_versions=dict(ctx.model_versions), rules_version=self.version,
        )
        # The one invariant no rule file can break (the loader already refuses such rules).
        if decision.status not in ("auto", "needs_review") or (decision.proposed_status and decision.status != "needs_review"):
            raise AssertionError("a not_accepted/merged outcome must wait for human review")
        return decision, outcomes

    # -- actions
    def _message(self, template: str, state: State, ctx: DecisionContext, hits: Sequence[str], **extra: str) -> str:
        values = {
            "hits": "、".join(dict.fromkeys(h for h in hits if not h.startswith(TRACE_ONLY))) or "—",
            "district": ctx.entities.place.district or "属地",
            "track_name": self._names["tracks"].get(state.track, state.track),
            "department_name": self._names["departments"].get(state.department, state.department),
            "handling_unit": state.handling_unit or "有权处理的机关",
            "case_id": state.merged_into or "—",
            "unit": state.handling_unit or "有权处理的机关",
        }
        values.update(extra)
        return template.format(**values)

    def _apply(self, rule: Rule, evidence: list[str], ctx: DecisionContext, facts: Facts,
               today: date) -> tuple[list[str], bool]:
        state: State = facts.state
        then = rule.then
        extra: list[str] = []
        if "track" in then:
            state.track = then["track"]
        if "department" in then:
            state.department = then["department"]
            state.co_departments = [c for c in state.co_departments if c != state.department]
        for code in then.get("co_departments", []):
            if code == "@second":
                ranked = ctx.suggestions["department"].labels
                code = ranked[1].label if len(ranked) > 1 else state.department
            state.add_co(code)
        for flag in then.get("flags", []):
            state.add_flag(flag)
        if then.get("status") == "needs_review":
            state.status = "needs_review"
        if "propose" in then:
            p = then["propose"]
            state.proposed_status = p["status"]
            state.status = "needs_review"
            if p["status"] == "merged":
                best = _best_link(ctx.links)
                state.merged_into = best.case_id if best else None
            extra.append(f"建议{p['code']}")
        if "priority" in then:
            state.raise_priority(then["priority"])
        if "procedure" in then:
            state.procedure = then["procedure"]
        if "level" in then:
            state.level = then["level"]
        if "sub_target" in then:
            for name, pattern in then["sub_target"]:
                if pattern.search(facts.text):
                    state.sub_target = name
                    break
        if then.get("review_if_model_disagrees") and (state.track != state.model_track
                                                     or state.department != state.model_department):
            state.status = "needs_review"
            extra.append(f"模型建议{state.model_track}/{state.model_department}")
        if then.get("route"):
            state.handling_unit = self._route(state, ctx)
        if then.get("stop"):
            state.locked_by = rule.id
        if "reason" in then:
            state.reasons.append(Reason(rule_id=rule.id, message=self._message(then["reason"], state, ctx, evidence)))
        if then.get("guidance"):
            msg = self._guidance(state, ctx)
            if msg:
                state.reasons.append(Reason(rule_id=rule.id, message=msg))
        if then.get("review_window"):
            extra += self._review_window(rule, state, ctx, facts)
        if then.get("deadlines"):
            extra += self._deadlines(rule, state, ctx, facts, today)
        if "sample" in then:
            rate = float(self.rules.thresholds[then["sample"]])
            facts.thresholds_used[then["sample"]] = rate
            key = ctx.petition.id or hashlib.sha256(ctx.text.encode("utf-8")).hexdigest()
            if _sample_fraction(f"{self.rules.rules_version}|{key}") < rate:
                state.status = "needs_review"
                state.reasons.append(Reason(rule_id=rule.id, message=f"随机抽检（抽样率{rate:.0%}）：自动分办结果须人工复核"))
                extra.append("抽中")
            else:
                return extra + ["未抽中"], False  # matched but changed nothing: not in rules_fired
        return extra, True

    def _route(self, state: State, ctx: DecisionContext) -> str | None:
        """属地 unit: 区县 counterpart of the department, or the city body (R17)."""
        dept = self.taxonomy.responsibilities[state.department]
        place = ctx.entities.place
        if state.level == "city" or dept.city_only or dept.district_counterpart is None:
            unit = dept.official_name
        elif place.district is None:
            return None
        elif state.department == "district" and place.subdivision:
            sub = place.subdivision
            unit = f"{place.district}{sub}{'办事处' if sub.endswith('街道') else '人民政府'}"
        else:
            unit = dept.district_counterpart.format(district=place.district)
        return f"{unit}（{state.sub_target}）" if state.sub_target else unit

    def _guidance(self, state: State, ctx: DecisionContext) -> str | None:
        spec = self.rules.guidance.get(state.track)
        if not spec:
            return None
        text = spec.get("by_department", {}).get(state.department, spec["text"])
        return self._message(text, state, ctx, ())

    def _review_window(self, rule: Rule, state: State, ctx: DecisionContext, facts: Facts) -> list[str]:
        """R07: the 复查 request window of the answered duplicate (30 days from the written reply)."""
        answered = [link for link in ctx.links if link.answered_at and link.same_petitioner]
        if not answered:
            return []
        link = max(answered, key=lambda x: x.answered_at or datetime.min.replace(tzinfo=CHINA_TZ))
        assert link.answered_at is not None
        start = link.answered_at.astimezone(CHINA_TZ).date()
        due = self.rules.calendar.add(start, Period(30, "days"))
        state.deadlines.append(Deadline(
            kind="review_request", due=due.day, warning=True, estimated=due.estimated,
            basis=f"《信访工作条例》第三十五条：自收到书面答复之日起30日内请求复查（原件{link.case_id}答复日{start.isoformat()}）",
        ))
        return [f"复查期限{due.day.isoformat()}"]

    def _deadlines(self, rule: Rule, state: State, ctx: DecisionContext, facts: Facts, today: date) -> list[str]:
        """R15: our own deadlines from the received date, and the statutory channel windows as warnings."""
        cal = self.rules.calendar
        received = facts.received
        notes: list[str] = []
        estimated_years: set[int] = set()
        for spec in self.rules.deadlines:
            if not spec.applies(state.track, state.department, state.procedure):
                continue
            due = cal.add(received, spec.period)
            estimated_years.update(due.uncovered_years)
            state.deadlines.append(Deadline(kind=spec.kind, due=due.day, basis=spec.basis, estimated=due.estimated))
        risk_days = int(self.rules.settings.get("deadline_risk_days", 30))
        dates = [(e.start, e.end, e.value if isinstance(e.value, str) else None) for e in ctx.entities.of_type("date")]
        for spec in self.rules.windows:
            if not spec.applies(state.track, state.department, state.procedure):
                continue
            found = act_date(ctx.text, dates, spec.act_cues, received)
            if found is None:
                state.reasons.append(Reason(rule_id=rule.id, message=(
                    f"提示：{spec.label}期限为{spec.period.describe()}，自知道或应当知道之日起计算；"
                    "文中未见该行为的明确日期，请向信访人核实并告知尽快主张权利")))
                continue
            lo, hi, surface = found
            early, late = cal.add(lo, spec.period), cal.add(hi, spec.period)
            estimated_years.update(early.uncovered_years + late.uncovered_years)
            basis = f"{spec.basis}（起算依据：文中“{surface}”，按最早可能日期推算）"
            if late.day < today:
                state.deadlines.append(Deadline(kind=spec.kind, due=late.day, basis=basis, warning=True,
                                                estimated=late.estimated))
                state.reasons.append(Reason(rule_id=rule.id, message=(
                    f"提示：按文中“{surface}”推算，{spec.label}期限（{spec.period.describe()}）可能已于"
                    f"{late.day.isoformat()}届满，请核实是否有正当理由耽误")))
                continue
            state.deadlines.append(Deadline(kind=spec.kind, due=early.day, basis=basis, warning=True,
                                            estimated=early.estimated))
            remaining = (early.day - today).days
            if remaining <= risk_days:
                state.add_flag("deadline_risk")
                state.raise_priority("P1")
                state.reasons.append(Reason(rule_id=rule.id, message=(
                    f"时效风险：{spec.label}期限（{spec.period.describe()}）最早于{early.day.isoformat()}届满，"
                    f"剩余约{max(remaining, 0)}日，请尽快告知信访人")))
                notes.append(f"{spec.kind}剩余{remaining}日")
        if estimated_years:
            years = "、".join(str(y) for y in sorted(estimated_years))
            state.reasons.append(Reason(rule_id=rule.id, message=(
                f"{years}年法定节假日安排未收录（{cal.describe()}），相关期限按周一至周五为工作日估算，请人工核对")))
            notes.append(f"估算年份{years}")
        return notes


def _best_link(links: Sequence[DuplicateLink]) -> DuplicateLink | None:
    same = [link for link in links if link.same_petitioner]
    return max(same, key=lambda x: x.probability) if same else None


def load_decider(taxonomy: Taxonomy, path: Path | None = None, *,
                 clock: Callable[[], datetime] | None = None) -> RuleDecider:
    """Load data/policy/rules.toml (or `path`) into a RuleDecider for the pipeline.

    Raises:
        RuleFileError: the rule file does not validate (the message names file, rule and key).
    """
    rules = load_rules(taxonomy, path)
    logger.info("decision rules %s loaded from %s: %d rules", rules.version, rules.path.name, len(rules.rules))
    return RuleDecider(taxonomy, rules, clock=clock)


__all__ = ["RULES_PATH", "RuleDecider", "RuleFileError", "RuleOutcome", "RuleSet", "load_decider", "load_rules",
           "CalendarCoverageError"]
