"""The review workflow over the case store: queue, claim, decide, merge, split, override rates.

The model proposes and the rules decide; an officer confirms or overrides what the rules sent to
review (PIPL 第二十四条¶3: the human makes the final call). Every action is one transaction that
changes the case, writes a human decision row and appends a hash-chained audit event with who,
when, before → after, the reason code and the model and rule versions in force.

Confidential cases (检举控告, flag confidential) exist only for callers allowed to see them: for
everyone else every function here behaves as if the case did not exist (CaseNotFoundError → 404).
Comments are stored in the append-only audit trail, so identifier-shaped digits in them are
de-identified before storing (`triage.pii.deidentify`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.exc import StaleDataError

from triage.errors import TriageError
from triage.pii import deidentify
from triage.schemas import Decision, Entities, Petition, Reason
from triage.store.errors import CaseNotFoundError, ConflictError, StaleVersionError
from triage.store.models import AuditEventRow, Case, CasePetitionerKey, DecisionRow, ReviewTask, SuggestionRow, utcnow
from triage.store.repository import CaseStore, _decision_summary, _review_due
from triage.taxonomy import Taxonomy
from triage.text import normalize

logger = logging.getLogger(__name__)

# Why an officer changed a suggestion (closed set: the override statistics group by it).
OVERRIDE_REASONS: dict[str, str] = {
    "wrong_track": "法定途径判断有误",
    "wrong_department": "责任单位判断有误",
    "wrong_place": "属地判断有误",
    "not_accepted_ground": "符合不予受理/不再受理情形",
    "accepted_after_all": "不属于不予受理情形，应予受理",
    "new_facts": "有新的事实和理由",
    "multiple_matters": "多项诉求需分别处理",
    "duplicate": "与已有案件为同一事项",
    "not_duplicate": "并非同一事项（并案有误）",
    "other": "其他（须在备注中说明）",
}
COMMENT_REQUIRED = frozenset({"other"})
FINAL_STATUSES = ("auto", "not_accepted")  # what a reviewer may set; merged goes through merge()
SORTS = ("deadline", "priority", "created", "confidence")
MAX_COMMENT = 1000
UNMERGE_RULE_ID = "HUMAN_UNMERGE"  # the reason an un-merge appends (override statistics skip these rows)
CONFIDENCE_FIELD = "track"


class ReviewActionError(TriageError, ValueError):
    """The action is not allowed for this case or task as it stands (maps to 422)."""

    code = "T130"
    title = "审核操作不符合要求"


class QueueFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    states: tuple[str, ...] = ("open", "claimed")
    status: str | None = None
    priority: str | None = None
    track: str | None = None
    department: str | None = None
    district: str | None = None
    due_before: date | None = None  # tasks due on or before this date
    min_confidence: float | None = Field(None, ge=0, le=1)  # top track score of the latest suggestion
    max_confidence: float | None = Field(None, ge=0, le=1)
    claimed_by: str | None = None


class QueueItem(BaseModel):
    task_id: int
    task_state: str
    task_reason: str
    task_version: int
    due_date: date | None
    claimed_by: str | None
    created_at: datetime
    case_id: str
    case_version: int
    status: str | None
    priority: str | None
    track: str | None
    department: str | None
    district: str | None
    flags: list[str]
    confidential: bool
    confidence: float | None


class Change(BaseModel):
    """What an override sets (omitted fields keep the suggested value)."""

    model_config = ConfigDict(extra="forbid")

    track: str | None = None
    department: str | None = None
    request_type: str | None = None
    status: Literal["auto", "not_accepted"] | None = None


class SplitPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=20_000)
    title: str | None = Field(None, max_length=200)
    track: str | None = None
    department: str | None = None


def _check_reason(reason_code: str | None, comment: str | None, *, required: bool) -> None:
    if reason_code is None:
        if required:
            raise ReviewActionError("改判须给出原因代码 reason_code（" + "、".join(OVERRIDE_REASONS) + "）")
        return
    if reason_code not in OVERRIDE_REASONS:
        raise ReviewActionError(f"未知的原因代码 {reason_code!r}，可选：" + "、".join(OVERRIDE_REASONS))
    if reason_code in COMMENT_REQUIRED and not (comment and comment.strip()):
        raise ReviewActionError(f"原因代码 {reason_code} 须在 comment 中说明")


def clean_comment(comment: str | None) -> str | None:
    """Trim, bound and de-identify a reviewer's free-text comment (it goes into the audit trail)."""
    if comment is None or not comment.strip():
        return None
    comment = comment.strip()
    if len(comment) > MAX_COMMENT:
        raise ReviewActionError(f"comment 过长：{len(comment)} 字，上限 {MAX_COMMENT} 字")
    return deidentify(comment, [])


def _check_code(taxonomy: Taxonomy, kind: str, field: str, code: str | None) -> None:
    if code is not None and code not in taxonomy.codes(kind):
        raise ReviewActionError(f"{field} 取值 {code!r} 不在分类体系中")


def _visible_case(s: Session, case_id: str, can_see_confidential: bool) -> Case:
    case = s.get(Case, case_id)
    if case is None or (case.confidential and not can_see_confidential):
        raise CaseNotFoundError(f"案件 {case_id} 不存在")
    return case


def _latest_decision(s: Session, case_id: str) -> Decision:
    row = s.scalars(select(DecisionRow).where(DecisionRow.case_id == case_id).order_by(DecisionRow.id.desc()).limit(1)).first()
    if row is None:
        raise ReviewActionError(f"案件 {case_id} 尚无分办决定，不能审核")
    return Decision.model_validate(row.decision)


def _apply(store: CaseStore, s: Session, case: Case, decision: Decision, *, actor: str) -> None:
    store._apply_decision(case, decision)
    s.add(DecisionRow(case_id=case.id, decision=decision.model_dump(mode="json"), rules_version=decision.rules_version,
                      model_versions=dict(decision.model_versions), source="human", confirmed_by=actor))


@contextmanager
def _writing(store: CaseStore, what: str) -> Iterator[Session]:
    """A write transaction whose optimistic-lock failures become a 409 (someone changed it first)."""
    try:
        with store.write() as s:
            yield s
    except StaleDataError as exc:
        raise StaleVersionError(f"{what} 已被他人同时修改，请刷新后重试") from exc


def _event(store: CaseStore, s: Session, **fields: Any) -> int:
    [row] = store._append_events(s, [fields])
    return int(row.seq)


# --- queue ---------------------------------------------------------------------------------


def review_queue(
    store: CaseStore, f: QueueFilter, *, can_see_confidential: bool, sort: str = "deadline", descending: bool = False,
    page: int = 1, page_size: int = 50,
) -> tuple[list[QueueItem], int]:
    """Review tasks joined with their cases, filtered and sorted; one page plus the total count."""
    if sort not in SORTS:
        raise ReviewActionError(f"未知的排序 {sort!r}，可选：" + "、".join(SORTS))
    latest = (select(SuggestionRow.case_id, func.max(SuggestionRow.id).label("sid"))
              .where(SuggestionRow.field == CONFIDENCE_FIELD).group_by(SuggestionRow.case_id).subquery())
    sug = aliased(SuggestionRow)
    confidence = sug.labels[0]["score"].as_float()
    q = (select(ReviewTask, Case, confidence.label("confidence"))
         .join(Case, Case.id == ReviewTask.case_id)
         .outerjoin(latest, latest.c.case_id == Case.id)
         .outerjoin(sug, sug.id == latest.c.sid))
    conds: list[Any] = [ReviewTask.state.in_(f.states)]
    for col, value in ((Case.status, f.status), (ReviewTask.priority, f.priority), (Case.track, f.track),
                       (Case.department, f.department), (Case.district, f.district), (ReviewTask.claimed_by, f.claimed_by)):
        if value is not None:
            conds.append(col == value)
    if f.due_before is not None:
        conds.append(ReviewTask.due_date <= f.due_before)
    if f.min_confidence is not None:
        conds.append(confidence >= f.min_confidence)
    if f.max_confidence is not None:
        conds.append(confidence <= f.max_confidence)
    if not can_see_confidential:
        conds.append(Case.confidential.is_(False))
    q = q.where(*conds)
    key: Any = {"deadline": ReviewTask.due_date, "priority": ReviewTask.priority, "created": ReviewTask.id,
                "confidence": confidence}[sort]
    key = key.desc() if descending else key.asc()
    order = [key.nulls_last(), ReviewTask.priority, ReviewTask.due_date.asc().nulls_last(), ReviewTask.id]
    with store.read() as s:
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = s.execute(q.order_by(*order).offset((page - 1) * page_size).limit(page_size)).all()
        items = [
            QueueItem(task_id=t.id, task_state=t.state, task_reason=t.reason, task_version=t.version, due_date=t.due_date,
                      claimed_by=t.claimed_by, created_at=t.created_at, case_id=c.id, case_version=c.version,
                      status=c.status, priority=t.priority, track=c.track, department=c.department, district=c.district,
                      flags=list(c.flags or []), confidential=c.confidential,
                      confidence=None if conf is None else round(float(conf), 4))
            for t, c, conf in rows
        ]
    return items, total


# --- claim and decide ----------------------------------------------------------------------


def _task_for(s: Session, task_id: int, can_see_confidential: bool) -> tuple[ReviewTask, Case]:
    task = s.get(ReviewTask, task_id)
    if task is None:
        raise CaseNotFoundError(f"审核任务 {task_id} 不存在")
    case = s.get(Case, task.case_id)
    if case is None or (case.confidential and not can_see_confidential):
        raise CaseNotFoundError(f"审核任务 {task_id} 不存在")
    return task, case


def claim(store: CaseStore, task_id: int, *, actor: str, role: str, can_see_confidential: bool) -> dict[str, Any]:
    """Claim an open task for `actor`; claiming one's own claimed task again is a no-op."""
    with _writing(store, f"审核任务 {task_id}") as s:
        task, case = _task_for(s, task_id, can_see_confidential)
        if task.state == "claimed" and task.claimed_by == actor:
            return _task_dict(task)
        if task.state != "open":
            raise ConflictError(f"审核任务 {task_id} 当前状态为 {task.state}" + (f"（已由 {task.claimed_by} 领取）"
                                                                              if task.state == "claimed" else ""))
        task.state, task.claimed_by, task.claimed_at = "claimed", actor, utcnow()
        s.flush()
        _event(store, s, case_id=case.id, actor=actor, role=role, action="claim", before={"state": "open"},
               after={"state": "claimed", "task_id": task_id})
        return _task_dict(task)


def _task_dict(task: ReviewTask) -> dict[str, Any]:
    return {"id": task.id, "case_id": task.case_id, "state": task.state, "reason": task.reason, "priority": task.priority,
            "due_date": task.due_date, "claimed_by": task.claimed_by, "claimed_at": task.claimed_at,
            "resolved_at": task.resolved_at, "created_at": task.created_at, "version": task.version}


def decide(
    store: CaseStore, taxonomy: Taxonomy, task_id: int, *, actor: str, role: str, can_see_confidential: bool,
    action: Literal["confirm", "override"], change: Change | None = None, reason_code: str | None = None,
    comment: str | None = None, expected_version: int | None = None, may_take_over: bool = False,
) -> dict[str, Any]:
    """Confirm the suggested decision or override track / department / request type / status.

    Confirming applies the rules' proposal (a proposed not_accepted becomes final; needs_review
    becomes auto = forwarded as decided). Returns the case's new decision summary and version.

    Raises:
        CaseNotFoundError (404), ConflictError (409: task done or claimed by someone else, stale
        case version), ReviewActionError (422: bad codes, missing reason, nothing changed).
    """
    change = change or Change()
    comment = clean_comment(comment)
    if action == "confirm":
        if change.model_dump(exclude_none=True):
            raise ReviewActionError("确认（confirm）不能同时修改字段；修改请用 override")
        _check_reason(reason_code, comment, required=False)
    else:
        _check_reason(reason_code, comment, required=True)
        _check_code(taxonomy, "tracks", "track", change.track)
        _check_code(taxonomy, "departments", "department", change.department)
        _check_code(taxonomy, "request_types", "request_type", change.request_type)
    with _writing(store, f"审核任务 {task_id}") as s:
        task, case = _task_for(s, task_id, can_see_confidential)
        if task.state == "done":
            raise ConflictError(f"审核任务 {task_id} 已完成")
        if task.state == "claimed" and task.claimed_by != actor and not may_take_over:
            raise ConflictError(f"审核任务 {task_id} 已由 {task.claimed_by} 领取")
        if expected_version is not None and case.version != expected_version:
            raise StaleVersionError(f"案件 {case.id} 已更新到版本 {case.version}（请求基于版本 {expected_version}）")
        if case.status == "merged":
            raise ReviewActionError(f"案件 {case.id} 已并入 {case.merged_into}，不能再审核")
        suggested = _latest_decision(s, case.id)
        confirmed_status = suggested.proposed_status or ("auto" if suggested.status == "needs_review" else suggested.status)
        if confirmed_status == "merged":
            raise ReviewActionError("规则建议并案：请用并案操作（merge）确认")
        updates: dict[str, Any] = {"status": confirmed_status, "proposed_status": None}
        if action == "override":
            changed = {k: v for k, v in change.model_dump(exclude_none=True).items()
                       if v != (confirmed_status if k == "status" else getattr(suggested, k))}
            if not changed:
                raise ReviewActionError("改判内容与建议相同：没有需要修改的字段（如同意建议请用 confirm）")
            updates.update(changed)
            message = f"人工改判：{OVERRIDE_REASONS[reason_code or 'other']}"
        else:
            message = "人工确认规则建议"
        new = Decision.model_validate({**suggested.model_dump(), **updates,
                                       "reasons": [*[r.model_dump() for r in suggested.reasons],
                                                   Reason(rule_id="HUMAN", message=message).model_dump()]})
        before = store._case_summary(case)
        _apply(store, s, case, new, actor=actor)
        task.state, task.resolved_at = "done", utcnow()
        if task.claimed_by is None:
            task.claimed_by, task.claimed_at = actor, task.resolved_at
        s.flush()
        seq = _event(store, s, case_id=case.id, actor=actor, role=role, action=action, before=before,
                     after={**_decision_summary(new), "task_id": task_id}, reason_code=reason_code, comment=comment,
                     model_versions=dict(new.model_versions), rules_version=new.rules_version)
        return {"case_id": case.id, "case_version": case.version, "task_id": task_id, "action": action,
                "decision": _decision_summary(new), "audit_seq": seq}


# --- merge and split -----------------------------------------------------------------------


def merge(
    store: CaseStore, case_id: str, into: str, *, actor: str, role: str, can_see_confidential: bool,
    reason_code: str | None = None, comment: str | None = None, expected_version: int | None = None,
) -> dict[str, Any]:
    """Merge a case into an earlier one about the same matter (并案): status merged, tasks closed."""
    comment = clean_comment(comment)
    _check_reason(reason_code, comment, required=False)
    if case_id == into:
        raise ReviewActionError("不能将案件并入其自身")
    with _writing(store, f"案件 {case_id}") as s:
        case = _visible_case(s, case_id, can_see_confidential)
        target = _visible_case(s, into, can_see_confidential)
        if expected_version is not None and case.version != expected_version:
            raise StaleVersionError(f"案件 {case.id} 已更新到版本 {case.version}（请求基于版本 {expected_version}）")
        if case.status == "merged":
            raise ReviewActionError(f"案件 {case_id} 已并入 {case.merged_into}")
        if target.status == "merged":
            raise ReviewActionError(f"目标案件 {into} 已并入 {target.merged_into}：请并入该案件")
        suggested = _latest_decision(s, case_id)
        new = Decision.model_validate({**suggested.model_dump(), "status": "merged", "merged_into": into,
                                       "proposed_status": None,
                                       "reasons": [*[r.model_dump() for r in suggested.reasons],
                                                   Reason(rule_id="HUMAN", message=f"人工并案：并入 {into}").model_dump()]})
        before = store._case_summary(case)
        _apply(store, s, case, new, actor=actor)
        closed = []
        for task in s.scalars(select(ReviewTask).where(ReviewTask.case_id == case_id, ReviewTask.state != "done")):
            task.state, task.resolved_at = "done", utcnow()
            closed.append(task.id)
        s.flush()
        seq = _event(store, s, case_id=case_id, actor=actor, role=role, action="merge", before=before,
                     after={**_decision_summary(new), "closed_tasks": closed}, reason_code=reason_code or "duplicate",
                     comment=comment, model_versions=dict(new.model_versions), rules_version=new.rules_version)
        return {"case_id": case_id, "merged_into": into, "case_version": case.version, "closed_tasks": closed,
                "audit_seq": seq}


def unmerge(
    store: CaseStore, case_id: str, *, actor: str, role: str, can_see_confidential: bool, reason_code: str | None,
    comment: str | None = None, expected_version: int | None = None,
) -> dict[str, Any]:
    """Undo a confirmed merge (撤销并案): the case gets back the decision it had before the merge.

    The restored decision is a copy of the last one before the merge, with its source (a system decision
    stays a system decision, an officer's confirmation stays one) and a HUMAN_UNMERGE reason; a merge the
    rules had proposed is no longer proposed. merged_into is cleared. When the case goes back to review
    (status needs_review) or the merge closed open tasks, a new review task (reason "unmerged") is opened.
    A reason code is required. Un-merging a case whose last merge action was already undone returns that
    earlier result (`unchanged`: true) without writing anything.

    Raises:
        CaseNotFoundError (404), StaleVersionError (409), ReviewActionError (422: no reason, not merged).
    """
    comment = clean_comment(comment)
    _check_reason(reason_code, comment, required=True)
    with _writing(store, f"案件 {case_id}") as s:
        case = _visible_case(s, case_id, can_see_confidential)
        if case.status != "merged":
            last = s.scalars(select(AuditEventRow).where(AuditEventRow.case_id == case_id,
                                                         AuditEventRow.action.in_(("merge", "unmerge")))
                             .order_by(AuditEventRow.seq.desc()).limit(1)).first()
            if last is not None and last.action == "unmerge":
                after = last.after or {}
                return {"case_id": case_id, "unmerged_from": (last.before or {}).get("merged_into"),
                        "case_version": case.version, "decision": {k: v for k, v in after.items() if k != "task_id"},
                        "task_id": after.get("task_id"), "audit_seq": int(last.seq), "unchanged": True}
            raise ReviewActionError(f"案件 {case_id} 未并案，无需撤销")
        if expected_version is not None and case.version != expected_version:
            raise StaleVersionError(f"案件 {case.id} 已更新到版本 {case.version}（请求基于版本 {expected_version}）")
        rows = s.scalars(select(DecisionRow).where(DecisionRow.case_id == case_id).order_by(DecisionRow.id.desc())).all()
        previous = next((r for r in rows if r.decision.get("status") != "merged"), None)
        if previous is None:
            raise ReviewActionError(f"案件 {case_id} 没有并案前的分办决定，不能撤销并案")
        was = case.merged_into
        old = Decision.model_validate(previous.decision)
        restored = Decision.model_validate({
            **old.model_dump(), "merged_into": None,
            "proposed_status": None if old.proposed_status == "merged" else old.proposed_status,
            "reasons": [*[r.model_dump() for r in old.reasons],
                        Reason(rule_id=UNMERGE_RULE_ID, message=f"人工撤销并案（原并入 {was}）：恢复并案前的决定").model_dump()],
        })
        before = store._case_summary(case)
        store._apply_decision(case, restored)
        s.add(DecisionRow(case_id=case.id, decision=restored.model_dump(mode="json"), rules_version=restored.rules_version,
                          model_versions=dict(restored.model_versions), source=previous.source,
                          confirmed_by=actor if previous.source == "human" else None))
        merge_event = s.scalars(select(AuditEventRow).where(AuditEventRow.case_id == case_id, AuditEventRow.action == "merge")
                                .order_by(AuditEventRow.seq.desc()).limit(1)).first()
        closed = (merge_event.after or {}).get("closed_tasks") if merge_event is not None else None
        task: ReviewTask | None = None
        if restored.status == "needs_review" or closed:
            task = ReviewTask(case_id=case_id, state="open", reason="unmerged", priority=restored.priority,
                              due_date=_parent_due(s, case_id) or _review_due(restored))
            s.add(task)
        s.flush()
        task_id = task.id if task is not None else None
        summary = _decision_summary(restored)
        seq = _event(store, s, case_id=case_id, actor=actor, role=role, action="unmerge", before=before,
                     after={**summary, "task_id": task_id}, reason_code=reason_code, comment=comment,
                     model_versions=dict(restored.model_versions), rules_version=restored.rules_version)
        return {"case_id": case_id, "unmerged_from": was, "case_version": case.version, "decision": summary,
                "task_id": task_id, "audit_seq": seq, "unchanged": False}


def split(
    store: CaseStore, taxonomy: Taxonomy, case_id: str, parts: list[SplitPart], *, actor: str, role: str,
    can_see_confidential: bool, comment: str | None = None, extractor: Any = None, featurizer: Any = None,
) -> dict[str, Any]:
    """Split a petition with several matters into new cases (one per part), each queued for review.

    The new cases keep the original's petitioner, channel, place and received date, take the
    track/department given for their part (else the original's), and get an open review task.
    With `extractor` (the pipeline's entity extractor) each part's normalised text gets its entities,
    and with `featurizer` (the linker's) its link data — the petitioner's keys, MinHash bands and
    vector — so a later petition about one of the matters links to that part like to any triaged case.
    """
    comment = clean_comment(comment)
    if not 2 <= len(parts) <= 10:
        raise ReviewActionError("拆分须给出 2–10 个部分（parts）")
    for i, part in enumerate(parts):
        _check_code(taxonomy, "tracks", f"parts[{i}].track", part.track)
        _check_code(taxonomy, "departments", f"parts[{i}].department", part.department)
    texts = [normalize(part.text) for part in parts]
    if any(not t for t in texts):
        raise ReviewActionError("parts 中有内容为空的部分")
    # Extraction and featurising are the slow part: done before the write transaction.
    entities: list[Entities | None] = [None] * len(parts)
    if extractor is not None:
        with store.read() as s:
            parent_row = _visible_case(s, case_id, can_see_confidential)
            channel, submitted_at = parent_row.channel, parent_row.submitted_at
        for i, t in enumerate(texts):
            try:
                petition = Petition(text=t, channel=channel, submitted_at=submitted_at)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ReviewActionError(f"parts 第 {i + 1} 部分的文本不符合要求") from exc
            entities[i] = extractor.extract(t, petition)
    features = featurizer.features_many(texts) if featurizer is not None else [None] * len(parts)
    extractor_version = getattr(extractor, "version", None)
    with _writing(store, f"案件 {case_id}") as s:
        parent = _visible_case(s, case_id, can_see_confidential)
        if parent.status == "merged":
            raise ReviewActionError(f"案件 {case_id} 已并入 {parent.merged_into}，不能拆分")
        suggested = _latest_decision(s, case_id)
        taken = set(s.scalars(select(Case.id).where(Case.id.startswith(f"{case_id}-S", autoescape=True))))
        keys = tuple(s.scalars(select(CasePetitionerKey.key).where(CasePetitionerKey.case_id == case_id)))
        n, children = 0, []
        link_data = []
        for i, part in enumerate(parts):
            n += 1
            while f"{case_id}-S{n}" in taken:
                n += 1
            child_id = f"{case_id}-S{n}"
            if len(child_id) > 64:
                raise ReviewActionError(f"案件编号 {case_id} 过长，不能再拆分")
            try:
                petition = Petition(id=child_id, text=texts[i], title=part.title, submitted_at=parent.submitted_at,
                                    channel=parent.channel, headcount=parent.headcount)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ReviewActionError(f"parts 第 {len(children) + 1} 部分的文本不符合要求") from exc
            child = store._new_case(s, petition, store.content_hash(petition), entities[i],
                                    extractor_version if entities[i] is not None else parent.extractor_version, source="api")
            child.petitioner_id = parent.petitioner_id
            child.district, child.district_raw, child.subdivision = parent.district, parent.district_raw, parent.subdivision
            decision = Decision.model_validate({
                **suggested.model_dump(), "status": "needs_review", "proposed_status": None, "merged_into": None,
                "track": part.track or suggested.track, "department": part.department or suggested.department,
                "reasons": [Reason(rule_id="HUMAN", message=f"由案件 {case_id} 拆分").model_dump()],
            })
            _apply(store, s, child, decision, actor=actor)
            s.flush()
            link_data.append((child_id, keys, features[i]))
            task = ReviewTask(case_id=child_id, state="open", reason="split", priority=decision.priority,
                              due_date=_parent_due(s, case_id))
            s.add(task)
            s.flush()
            children.append({"case_id": child_id, "task_id": task.id, "track": decision.track,
                             "department": decision.department})
        store._write_link_data(s, link_data, replace=False)
        events = [dict(case_id=case_id, actor=actor, role=role, action="split", before=store._case_summary(parent),
                       after={"children": [c["case_id"] for c in children]}, reason_code="multiple_matters", comment=comment,
                       model_versions=dict(suggested.model_versions), rules_version=suggested.rules_version)]
        for c in children:
            events.append(dict(case_id=c["case_id"], actor=actor, role=role, action="split_from", before={"parent": case_id},
                               after={"track": c["track"], "department": c["department"], "status": "needs_review",
                                      "task_id": c["task_id"]},
                               model_versions=dict(suggested.model_versions), rules_version=suggested.rules_version))
        rows = store._append_events(s, events)
        return {"case_id": case_id, "children": children, "audit_seq": int(rows[0].seq)}


def _parent_due(s: Session, case_id: str) -> date | None:
    return s.scalar(select(func.min(ReviewTask.due_date)).where(ReviewTask.case_id == case_id))


# --- statistics ----------------------------------------------------------------------------


def override_stats(store: CaseStore, *, since: datetime | None = None) -> dict[str, Any]:
    """Override rate per suggested class (track, department) and per rule that fired.

    Each human review decision is compared with the last system decision of its case before it:
    a field is overridden when the officer's value differs; a decision is overridden when the
    track, the department or the final status differs from what confirming would have set.
    Merges and split-off cases are not review decisions of a system suggestion and are skipped.
    """
    with store.read() as s:
        reviewed = select(DecisionRow.case_id).where(DecisionRow.source == "human")
        if since is not None:
            reviewed = reviewed.where(DecisionRow.created_at >= since)
        rows = s.execute(select(DecisionRow.case_id, DecisionRow.source, DecisionRow.decision, DecisionRow.created_at)
                         .where(DecisionRow.case_id.in_(reviewed.distinct()))
                         .order_by(DecisionRow.case_id, DecisionRow.id)).all()
    per_class: dict[str, dict[str, list[int]]] = {"track": defaultdict(lambda: [0, 0]), "department": defaultdict(lambda: [0, 0])}
    per_rule: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    overall = [0, 0]
    last_system: dict[str, dict[str, Any]] = {}
    for case_id, source, decision, created_at in rows:
        if source != "human":
            last_system[case_id] = decision
            continue
        system = last_system.get(case_id)
        if system is None or decision.get("status") == "merged" or (since is not None and created_at < since):
            continue
        if ((decision.get("reasons") or [{}])[-1]).get("rule_id") == UNMERGE_RULE_ID:
            continue  # an un-merge restores an earlier decision: not a new review decision
        expected_status = system.get("proposed_status") or ("auto" if system.get("status") == "needs_review"
                                                            else system.get("status"))
        field_changed = {f: decision.get(f) != system.get(f) for f in ("track", "department")}
        any_changed = any(field_changed.values()) or decision.get("status") != expected_status
        for f, changed in field_changed.items():
            bucket = per_class[f][str(system.get(f))]
            bucket[0] += 1
            bucket[1] += int(changed)
        for rule in system.get("rules_fired") or []:
            per_rule[rule][0] += 1
            per_rule[rule][1] += int(any_changed)
        overall[0] += 1
        overall[1] += int(any_changed)

    def rate(pair: list[int]) -> dict[str, Any]:
        return {"decided": pair[0], "overridden": pair[1], "rate": round(pair[1] / pair[0], 4) if pair[0] else None}

    return {
        "decided": overall[0],
        "overridden": overall[1],
        "rate": rate(overall)["rate"],
        "per_class": {f: {label: rate(p) for label, p in sorted(d.items())} for f, d in per_class.items()},
        "per_rule": {rule: rate(p) for rule, p in sorted(per_rule.items())},
    }
