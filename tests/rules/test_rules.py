"""Each rule fires when it should and not otherwise; trace; the human-review guarantee."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

import pytest

from tests.rules.support import context, decider, load_examples
from triage.rules.engine import CHINA_TZ, _sample_fraction
from triage.schemas import Decision

WAGE = "我在沙坪坝区一家公司上班，公司欠我两个月工资8000元，劳动关系清楚，请劳动监察帮忙。"


def decide(taxonomy, text: str, today: str = "2026-03-10", **kw) -> Decision:  # type: ignore[no-untyped-def]
    return decider(taxonomy, today).decide(context(taxonomy, text, **kw))


def reason(d: Decision, rule_id: str) -> str:
    return " ".join(r.message for r in d.reasons if r.rule_id == rule_id)


# --- R01 emergency ------------------------------------------------------------------------------

def test_r01_fires_on_threat_to_life(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, "沙坪坝区某公司欠我工资3000元一直不给，再不给我就从公司楼上跳楼。")
    assert "R01" in d.rules_fired and d.priority == "P0" and d.status == "needs_review"
    assert "跳楼" in reason(d, "R01")


def test_r01_not_on_complaint_about_retaliation(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, "沙坪坝区某村干部因为我反映问题打击报复我，克扣我家的补贴。",
               track="discipline", department="discipline_org")
    assert "R01" not in d.rules_fired and d.priority != "P0"


# --- R02 validity -------------------------------------------------------------------------------

def test_r02_fires_without_petitioner_identity(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, WAGE, petitioner=None)
    assert "R02" in d.rules_fired and d.status == "needs_review" and "要素不全" in reason(d, "R02")


def test_r02_not_for_identified_petitioner_or_anonymous_report(taxonomy) -> None:  # type: ignore[no-untyped-def]
    assert "R02" not in decide(taxonomy, WAGE).rules_fired
    anonymous = decide(taxonomy, "彭水县某村支书截留征地补偿款二十多万元，账目不公开，请纪委调查。",
                       track="discipline", department="discipline_org", request_type="report", petitioner=None)
    assert "R02" not in anonymous.rules_fired and "R04" in anonymous.rules_fired


# --- R03 judicial -------------------------------------------------------------------------------

def test_r03_overrides_model_with_case_number_and_low_judicial_score(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "南岸区法院（2023）渝0108民初1234号判决我还钱，我不服，判决不公，请督促法院改判。"
    d = decide(taxonomy, text, track={"litigation": 0.6, "judicial": 0.35}, department={"justice": 0.7})
    assert d.track == "judicial" and d.department == "politics_law" and d.status == "needs_review"
    assert d.handling_unit == "中共南岸区委政法委员会（法院）"


def test_r03_not_when_judicial_score_below_override(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "南岸区某小区邻居说要去法院起诉我，我不服，觉得不公，请社区调解。"
    d = decide(taxonomy, text, track={"mediation": 0.9, "judicial": 0.05}, department="district")
    assert "R03" not in d.rules_fired and d.track == "mediation"


def test_r03_locks_track_and_later_track_rules_are_skipped(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "九龙坡区法院判决公司支付我经济补偿，判决生效后公司一直不执行，请督促法院强制执行。"
    dec = decider(taxonomy)
    d, outcomes = dec.evaluate(context(taxonomy, text, track={"judicial": 0.7, "arbitration": 0.25}, department="hrss"))
    assert d.track == "judicial"
    assert {o.rule_id: o.outcome for o in outcomes}["R12"] == "skipped"


def test_r03_with_discipline_copy_when_judge_is_accused(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "江津区法院的法官收受对方红包，判决不公，我不服，请求改判并查处法官受贿。"
    d = decide(taxonomy, text, track={"judicial": 0.8, "discipline": 0.15}, department="politics_law")
    assert d.track == "judicial" and "discipline_org" in d.co_departments and "confidential" in d.flags
    assert "R04" not in d.rules_fired and "R04b" in d.rules_fired


# --- R04 discipline -----------------------------------------------------------------------------

def test_r04_primary_discipline_from_cue_when_model_says_petition(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "合川区某村村主任挪用村里的修路资金，还贪污扶贫款，请求调查。"
    d = decide(taxonomy, text, track={"petition": 0.6, "discipline": 0.3}, department="district")
    assert d.track == "discipline" and d.department == "discipline_org" and "confidential" in d.flags
    assert d.handling_unit == "合川区纪委监委" and d.status == "needs_review"


def test_r04_not_without_official_or_misconduct(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, "合川区某小区门口的路灯坏了三个月，请尽快修好。", track="petition", department="urban")
    assert not {"R04", "R04b"} & set(d.rules_fired) and "confidential" not in d.flags


def test_r17c_city_cadre_goes_to_city_commission(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "渝中区的市交通局副局长收受贿赂，公车私用，请纪委查处。"
    d = decide(taxonomy, text, track="discipline", department="discipline_org")
    assert "R17c" in d.rules_fired and d.handling_unit == taxonomy.responsibilities["discipline_org"].official_name


# --- R05–R08 duplicates -------------------------------------------------------------------------

def _link(status: str, **kw) -> dict:  # type: ignore[type-arg]
    return {"case_id": "CQ-2025-000100", "probability": 0.92, "status": status, "same_petitioner": True, **kw}


PETITION_TEXT = "长寿区拆迁安置补偿一直不公平，我要求按新标准补偿，请区政府解决。"


def test_r05_proposes_not_accepted_only(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, PETITION_TEXT, track="petition", department="district", links=[_link("review_concluded")])
    assert d.status == "needs_review" and d.proposed_status == "not_accepted"
    assert "NR-36" in reason(d, "R05") and "待人工确认" in reason(d, "R05") and "帮扶" in reason(d, "R05")


@pytest.mark.parametrize("variant", ["new_fact", "low_similarity", "other_person"])
def test_r05_not_fired(taxonomy, variant: str) -> None:  # type: ignore[no-untyped-def]
    text = PETITION_TEXT + ("我现在有新证据。" if variant == "new_fact" else "")
    link = _link("review_concluded", probability=0.6 if variant == "low_similarity" else 0.92,
                 same_petitioner=variant != "other_person")
    d = decide(taxonomy, text, track="petition", department="district", links=[link])
    assert "R05" not in d.rules_fired and d.proposed_status is None


def test_r06_proposes_merge_into_open_case(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, PETITION_TEXT, track="petition", department="district",
               links=[_link("open", due="2026-04-30"), _link("open", case_id="CQ-2025-000099", probability=0.86)])
    assert d.status == "needs_review" and d.proposed_status == "merged" and d.merged_into == "CQ-2025-000100"
    assert "NR-19" in reason(d, "R06")


def test_r06_not_when_open_case_is_overdue(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, PETITION_TEXT, track="petition", department="district", links=[_link("open", due="2026-02-01")])
    assert "R06" not in d.rules_fired and d.proposed_status is None


def test_r06b_visit_about_village_matter_at_city_level(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "长寿区某镇村里的道路坏了很久，村委会一直不修，我今天来市里反映。"
    d = decide(taxonomy, text, track="petition", department="district", channel="visit")
    assert "R06b" in d.rules_fired and d.status == "needs_review"
    assert "R06b" not in decide(taxonomy, text, track="petition", department="district", channel="online").rules_fired


def test_r07_answered_within_30_days_gives_review_window(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, PETITION_TEXT, track="petition", department="district",
               links=[_link("answered", answered_at="2026-02-20T10:00:00+08:00")])
    assert "R07" in d.rules_fired and "R08" not in d.rules_fired and d.status == "needs_review"
    review = next(x for x in d.deadlines if x.kind == "review_request")
    assert review.due == date(2026, 3, 23)  # 2026-02-20 + 30 = 03-22, a Sunday → Monday 03-23


def test_r08_answered_more_than_30_days_ago(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, PETITION_TEXT, track="petition", department="district",
               links=[_link("answered", answered_at="2026-01-05T10:00:00+08:00")])
    assert "R08" in d.rules_fired and "R07" not in d.rules_fired and "逾期未请求复查" in reason(d, "R08")
    assert d.proposed_status is None  # the 2022 条例 has no 不再受理 for this: the officer decides


# --- R10, R11, R20–R22 flags ------------------------------------------------------------------------

def test_r10_group_from_counted_people(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, "我们12户居民反映，九龙坡区某小区门口的垃圾站臭气熏天。", track="admin_duty", department="urban")
    assert "group" in d.flags and d.priority == "P1" and d.status == "needs_review"


@pytest.mark.parametrize("text", ["九龙坡区某小区已经入住两千多户，建议增设公交站点。",
                                  "我们三户人家反映九龙坡区某小区门口垃圾站太臭。"])
def test_r10_not_for_mentioned_population_or_small_count(taxonomy, text: str) -> None:  # type: ignore[no-untyped-def]
    assert "group" not in decide(taxonomy, text, track="suggestion", department="transport").flags


def test_r10_registered_headcount_and_visit_representatives(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, "九龙坡区某小区门口的垃圾站臭气熏天，请处理。", track="admin_duty", department="urban",
               headcount=8, channel="visit")
    assert "group" in d.flags and "R10b" in d.rules_fired and "5人" in reason(d, "R10b")


def test_r11_risk_and_never_a_ground_for_not_accepting(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, "渝中区某工地欠我们工资，再不解决我们就去拉横幅。", track="admin_duty", department="hrss")
    assert "risk" in d.flags and d.priority == "P1" and "不得以此作为不予受理" in reason(d, "R11")
    assert "risk" not in decide(taxonomy, WAGE + "我会写信给市长。").flags


def test_r20_repeat_from_text_and_r20b_frequent_repeats(taxonomy) -> None:  # type: ignore[no-untyped-def]
    assert "repeat" in decide(taxonomy, WAGE + "我已经多次反映，至今未解决。").flags
    assert "repeat" not in decide(taxonomy, WAGE).flags
    links = [_link("answered", case_id=f"CQ-2026-{i:06d}", probability=0.5,
                   submitted_at=(datetime(2026, 3, 1, tzinfo=CHINA_TZ) - timedelta(days=10 * i)).isoformat())
             for i in range(5)]
    d = decide(taxonomy, WAGE, links=links)
    assert "R20b" in d.rules_fired and d.priority == "P1"
    assert "R20b" not in decide(taxonomy, WAGE, links=links[:4]).rules_fired


def test_r21_sensitive_and_r22_confidential(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, WAGE + "我因此住院做了手术。请对我的身份保密。")
    assert {"pii_sensitive", "confidential"} <= set(d.flags) and d.status == "needs_review"
    assert not {"pii_sensitive", "confidential"} & set(decide(taxonomy, WAGE).flags)


# --- R12, R13 boundaries --------------------------------------------------------------------------

def test_r12b_clear_wage_keeps_auto_when_model_agrees(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, WAGE, track="admin_duty", department="hrss", submitted_at="2026-03-02T10:00:00+08:00",
               today="2026-03-02", id="unit-wage-1")
    assert "R12b" in d.rules_fired and d.track == "admin_duty"
    assert d.status == "auto" or d.rules_fired[-1] == "R19"


def test_r12_dispute_overrides_model_and_asks_review(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "我在九龙坡区一家工厂干了两年，老板辞退我，不给经济补偿。"
    d = decide(taxonomy, text, track={"admin_duty": 0.9, "arbitration": 0.08}, department="hrss")
    assert d.track == "arbitration" and d.status == "needs_review" and "R12" in d.rules_fired


def test_r12d_project_payment_is_litigation(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "我是承包方，九龙坡区某项目的发包方拖欠我工程款80万元，请协调。"
    d = decide(taxonomy, text, track={"petition": 0.9}, department="housing")
    assert d.track == "litigation" and "R12d" in d.rules_fired


def test_r13_property_enforcement_vs_fee_dispute(taxonomy) -> None:  # type: ignore[no-untyped-def]
    enforce = decide(taxonomy, "南岸区某小区物业为催物业费把我家停水了，请查处。", track="mediation", department="district")
    assert enforce.track == "admin_duty" and enforce.department == "housing" and "district" in enforce.co_departments
    fee = decide(taxonomy, "南岸区某小区物业费涨价了，服务质量却很差。", track="mediation", department="district")
    assert fee.track == "mediation" and "R13b" in fee.rules_fired and "R13" not in fee.rules_fired


# --- R09, R14, R14b, R16, R17, R18, R23, R24 --------------------------------------------------------

def test_r09_guidance_for_statutory_tracks_only(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "我在潼南区某村的承包地被村委会收回了，请求处理。"
    d = decide(taxonomy, text, track="arbitration", department="agri")
    assert "潼南区农村土地承包仲裁委员会" in reason(d, "R09")
    assert "R09" not in decide(taxonomy, WAGE).rules_fired


def test_r14_low_confidence_records_threshold(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, WAGE, track={"admin_duty": 0.6, "arbitration": 0.3})
    assert "R14" in d.rules_fired and d.status == "needs_review" and "LOW_CONF" in reason(d, "R14")
    # admin_duty has its own threshold in [thresholds.tau_auto_per_track]; the trace names it.
    assert d.thresholds["tau_auto[admin_duty]"] == 0.70 and "0.60<0.70" in reason(d, "R14")
    assert "tau_auto" not in d.thresholds
    # A track without an override uses tau_auto.
    d = decide(taxonomy, "我在沙坪坝区的承包地被收回了。", track={"arbitration": 0.8, "admin_duty": 0.1}, department="agri")
    assert "R14" in d.rules_fired and d.thresholds["tau_auto"] == 0.85 and "0.80<0.85" in reason(d, "R14")
    # Top score passes tau_auto but the margin over the runner-up is too small.
    d = decide(taxonomy, WAGE, track={"admin_duty": 0.58, "arbitration": 0.42}, department="hrss")
    assert "R14" in d.rules_fired
    d = decide(taxonomy, "沙坪坝区某小区门口的路灯坏了三个月。", track={"petition": 0.88, "suggestion": 0.74}, department="urban")
    assert "R14" in d.rules_fired and d.thresholds["margin_min"] == 0.2 and "0.14<0.20" in reason(d, "R14")


def test_r14_per_track_threshold_override(taxonomy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.rules.support import ROOT

    text = (ROOT / "data" / "policy" / "rules.toml").read_text(encoding="utf-8")
    assert "\nadmin_duty = 0.70\n" in text
    text = text.replace("\nadmin_duty = 0.70\n", "\nadmin_duty = 0.95\n", 1)
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    ctx = context(taxonomy, WAGE, track={"admin_duty": 0.9, "arbitration": 0.05})
    d = decider(taxonomy, path=path).decide(ctx)
    assert "R14" in d.rules_fired and d.thresholds["tau_auto[admin_duty]"] == 0.95
    assert "R14" not in decider(taxonomy).decide(ctx).rules_fired


def test_r16_simple_procedure_for_first_confident_suggestion(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "建议在璧山区某小区门口增设一个公交站，方便老人出行。"
    d = decide(taxonomy, text, track="suggestion", department="transport", request_type="proposal")
    assert d.procedure == "simple" and any(x.kind == "simple_reply" for x in d.deadlines)
    again = decide(taxonomy, text + "我已经多次反映。", track="suggestion", department="transport")
    assert again.procedure == "normal" and not any(x.kind == "simple_reply" for x in again.deadlines)


def test_r17_place_unknown_and_legacy_district(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, "我们小区门口的路灯坏了三个月，一直没人修。", track="petition", department="urban")
    assert "place_unknown" in d.flags and d.status == "needs_review" and d.handling_unit is None
    d = decide(taxonomy, "渝北区回兴街道某路口的路灯坏了三个月。", track="petition", department="urban")
    assert d.handling_unit == "两江新区城市管理局"


def test_r18_two_departments_make_co_handler(taxonomy) -> None:  # type: ignore[no-untyped-def]
    d = decide(taxonomy, WAGE, department={"hrss": 0.5, "housing": 0.45})
    assert "housing" in d.co_departments and d.status == "needs_review" and "R18" in d.rules_fired
    assert "R18" not in decide(taxonomy, WAGE, department={"hrss": 0.55, "housing": 0.39}).rules_fired


def test_r23_copy_does_not_force_review(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "荣昌区某楼盘开发商逾期交房一年，拒绝支付违约金，请求帮助。"
    d = decide(taxonomy, text, track="litigation", department="district", id="unit-copy-1")
    assert "housing" in d.co_departments and "R23" in d.rules_fired
    assert d.status == "auto" or d.rules_fired[-1] == "R19"


def test_r24_medical_claim_goes_to_review(taxonomy) -> None:  # type: ignore[no-untyped-def]
    text = "南川区某医院给我做手术出了问题，要求医院赔偿。"
    assert "R24" in decide(taxonomy, text, track="mediation", department="health").rules_fired
    assert "R24" not in decide(taxonomy, "南川区某医院挂号排队太久，建议增加窗口。", track="suggestion",
                               department="health").rules_fired


# --- R19 audit sample -----------------------------------------------------------------------------

def test_r19_sample_is_deterministic_and_near_rate() -> None:
    keys = [f"1.0.0|CQ-{i:06d}" for i in range(20_000)]
    rate = sum(_sample_fraction(k) < 0.05 for k in keys) / len(keys)
    assert 0.045 < rate < 0.055
    assert [_sample_fraction(k) for k in keys[:50]] == [_sample_fraction(k) for k in keys[:50]]


def test_r19_sampled_auto_case_goes_to_review(taxonomy) -> None:  # type: ignore[no-untyped-def]
    dec = decider(taxonomy)
    version = dec.rules.rules_version
    sampled = next(f"S-{i}" for i in range(10_000) if _sample_fraction(f"{version}|S-{i}") < 0.05)
    unsampled = next(f"S-{i}" for i in range(10_000) if _sample_fraction(f"{version}|S-{i}") >= 0.05)
    text = "建议在璧山区某小区门口增设一个公交站，方便老人出行。"
    d = dec.decide(context(taxonomy, text, track="suggestion", department="transport", id=sampled))
    assert d.status == "needs_review" and d.rules_fired[-1] == "R19" and "随机抽检" in reason(d, "R19")
    d = dec.decide(context(taxonomy, text, track="suggestion", department="transport", id=unsampled))
    assert d.status == "auto" and "R19" not in d.rules_fired


# --- trace and the review guarantee -----------------------------------------------------------------

def test_decision_carries_full_trace(taxonomy) -> None:  # type: ignore[no-untyped-def]
    dec = decider(taxonomy)
    d = dec.decide(context(taxonomy, WAGE))
    assert d.rules_version == dec.version and d.rules_version.startswith("1.0.0+")
    assert d.model_versions == {"track": "fixture-scores", "department": "fixture-scores"}
    assert set(d.rules_fired) <= {r.id for r in dec.rules.rules}
    assert {"tau_auto[admin_duty]", "department_min"} <= set(d.thresholds)


STATUSES = ["open", "answered", "review", "review_concluded", "judicial_concluded", "auto", "needs_review", None]


def test_property_not_accepted_or_merged_never_without_review(taxonomy) -> None:  # type: ignore[no-untyped-def]
    """Every combination of example text, model track, link status and similarity: status is never
    not_accepted/merged, and any proposal of those leaves the case in needs_review."""
    dec = decider(taxonomy)
    examples = load_examples()
    tracks = ["petition", "judicial", "admin_duty", "suggestion"]
    proposals = 0
    for ex, track, status, prob in itertools.product(examples, tracks, STATUSES, (0.5, 0.95)):
        links = [] if status is None else [_link(status, probability=prob, answered_at="2026-02-01T10:00:00+08:00")]
        d = dec.decide(context(taxonomy, ex["text"], track={track: 0.9}, department="district", links=links))
        assert d.status in ("auto", "needs_review")
        if d.proposed_status is not None:
            proposals += 1
            assert d.status == "needs_review" and d.proposed_status in ("not_accepted", "merged")
    assert proposals > 0  # the property was exercised, not vacuous


def test_decider_refuses_suggestions_without_track_head(taxonomy) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from triage.errors import ArtifactMismatchError

    ctx = context(taxonomy, WAGE)
    ctx = replace(ctx, suggestions={k: v for k, v in ctx.suggestions.items() if k != "track"})
    with pytest.raises(ArtifactMismatchError, match="need a 'track' suggestion"):
        decider(taxonomy).decide(ctx)
