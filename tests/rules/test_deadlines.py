"""Deadline counting on the official holiday calendar (2025/2026 schedules, 调休 included).

Expected dates are worked out by hand from the State Council schedules:
2025 国庆/中秋 10-01..10-08 off, Sun 09-28 and Sat 10-11 worked;
2026 春节 02-15..02-23 off, Sat 02-14 and Sat 02-28 worked; 2026 中秋 09-25..09-27 off;
2026 国庆 10-01..10-07 off, Sun 09-20 and Sat 10-10 worked.
"""

from __future__ import annotations

import re
from datetime import date

import chinese_calendar
import pytest

from tests.rules.support import ROOT, context, decider
from triage.deadlines import (
    CalendarCoverageError,
    HolidayCalendar,
    Period,
    act_date,
    add_months,
    calendar_years,
)
from triage.rules import load_rules

CAL = HolidayCalendar()


@pytest.mark.parametrize(("start", "period", "due"), [
    # 5 working days from Fri 2025-09-26: Sun 09-28 (调休) 1, 09-29 2, 09-30 3, holiday to 10-08, 10-09 4, 10-10 5.
    (date(2025, 9, 26), "5wd", date(2025, 10, 10)),
    # From Fri 2026-09-18: Sun 09-20 (调休) 1, 09-21..09-24 2–5 (09-25 is 中秋).
    (date(2026, 9, 18), "5wd", date(2026, 9, 24)),
    # From Tue 2026-09-29: 09-30 1, 国庆 off, 10-08 2, 10-09 3, Sat 10-10 (调休) 4, Mon 10-12 5.
    (date(2026, 9, 29), "5wd", date(2026, 10, 12)),
    # From Thu 2026-02-12: 02-13 1, Sat 02-14 (调休) 2, 春节 off to 02-23, 02-24 3, 02-25 4, 02-26 5.
    (date(2026, 2, 12), "5wd", date(2026, 2, 26)),
    # 15 calendar days: 2026-09-18 + 15 = 10-03 (国庆) → first working day 10-08.
    (date(2026, 9, 18), "15d", date(2026, 10, 8)),
    # 2026-02-05 + 15 = 02-20 (春节) → 02-24.
    (date(2026, 2, 5), "15d", date(2026, 2, 24)),
    # 2026-02-13 + 15 = 02-28, a Saturday worked under 调休 → stays.
    (date(2026, 2, 13), "15d", date(2026, 2, 28)),
    # 2026-03-10 + 60 = 05-09, a Saturday worked (劳动节调休) → stays.
    (date(2026, 3, 10), "60d", date(2026, 5, 9)),
    # Months end on the corresponding day (2026-03-31 + 6 months = 09-30, a Wednesday).
    (date(2026, 3, 31), "6m", date(2026, 9, 30)),
    # 2026-04-01 + 6 months = 10-01 (国庆) → 10-08.
    (date(2026, 4, 1), "6m", date(2026, 10, 8)),
])
def test_due_dates_on_official_calendar(start: date, period: str, due: date) -> None:
    result = CAL.add(start, Period.parse(period))
    assert result.day == due and not result.estimated


def test_add_months_uses_month_end_when_no_corresponding_day() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)


def test_calendar_years_of_installed_package() -> None:
    first, last = calendar_years()
    assert first == 2004 and last >= 2026
    assert chinese_calendar.__version__ >= "1.11"


def test_uncovered_year_raises_with_clear_message() -> None:
    with pytest.raises(CalendarCoverageError) as info:
        CAL.is_workday(date(2099, 3, 2))
    msg = str(info.value)
    assert "2099年" in msg and "chinese_calendar" in msg and "[calendar]" in msg


def test_uncovered_year_is_estimated_never_silently_assumed() -> None:
    # From Mon 2026-12-28: 12-29 1, 12-30 2, 12-31 3, then 2027 (not covered): Fri 01-01 counts as a
    # working day only as an estimate (it will be New Year's Day) → 4, Mon 01-04 5.
    result = HolidayCalendar(package_years=(2004, 2026)).add(date(2026, 12, 28), Period.parse("5wd"))
    assert result.day == date(2027, 1, 4) and result.estimated and result.uncovered_years == (2027,)


def test_rule_file_can_supply_next_years_schedule() -> None:
    cal = HolidayCalendar(extra_holidays=frozenset({date(2027, 1, 1)}), extra_years=frozenset({2027}),
                          package_years=(2004, 2026))
    result = cal.add(date(2026, 12, 28), Period.parse("5wd"))
    assert result.day == date(2027, 1, 5) and not result.estimated


def test_calendar_section_of_rule_file_is_used(taxonomy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = (ROOT / "data" / "policy" / "rules.toml").read_text(encoding="utf-8")
    text = text.replace("holidays = []\nworkdays = []\nyears = []",
                        "holidays = [2027-01-01]\nworkdays = [2027-02-06]\nyears = [2027]")
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    cal = load_rules(taxonomy, path).calendar
    assert cal.covers(date(2027, 6, 1)) and not cal.is_workday(date(2027, 1, 1)) and cal.is_workday(date(2027, 2, 6))


@pytest.mark.parametrize("bad", ["", "15", "0d", "-3d", "5 wd", "2w"])
def test_period_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="expected a positive number"):
        Period.parse(bad)


def test_act_date_only_from_sentence_naming_the_act() -> None:
    cues = re.compile("作出|决定|取消")
    text = "我去年10月受伤。区人力社保局作出的认定结论不予认定工伤。"
    assert act_date(text, [(1, 6, "2025-10")], cues, date(2026, 3, 10)) is None  # the date is the injury
    text = "巴南区政府40天前对我家的房屋作出了征收补偿决定。"
    lo, hi, surface = act_date(text, [], cues, date(2026, 5, 11))  # type: ignore[misc]
    assert lo == hi == date(2026, 4, 1) and surface == "40天前"
    text = "镇民政办今年3月取消了我家的低保。"
    lo, hi, _ = act_date(text, [(5, 9, "2026-03")], cues, date(2026, 6, 10))  # type: ignore[misc]
    assert (lo, hi) == (date(2026, 3, 1), date(2026, 3, 31))


def test_decision_deadlines_for_petition_track(taxonomy) -> None:  # type: ignore[no-untyped-def]
    ctx = context(taxonomy, "城口县的退役军人待遇申请交上去半年没消息，请尽快落实。", track="petition",
                  department="veterans", submitted_at="2026-09-18T10:00:00+08:00")
    d = decider(taxonomy, "2026-09-18").decide(ctx)
    due = {x.kind: x.due for x in d.deadlines}
    assert due["registration"] == date(2026, 10, 8)      # 09-18 + 15 = 10-03 (国庆) → 10-08
    assert due["acceptance_notice"] == date(2026, 10, 8)
    assert due["objection"] == date(2026, 9, 24)         # 5 working days incl. 调休 Sunday 09-20
    assert due["conclusion"] == date(2026, 11, 17)       # 09-18 + 60
    assert due["conclusion_extended"] == date(2026, 12, 17)
    assert not any(x.estimated for x in d.deadlines)


def test_decision_flags_estimated_deadlines_in_uncovered_year(taxonomy) -> None:  # type: ignore[no-untyped-def]
    # 2099 is beyond any chinese_calendar release: counted Monday–Friday, marked estimated, and said so.
    ctx = context(taxonomy, "城口县的退役军人待遇申请交上去半年没消息，请尽快落实。", track="petition",
                  department="veterans", submitted_at="2099-03-02T10:00:00+08:00")  # a Monday
    d = decider(taxonomy, "2099-03-02").decide(ctx)
    objection = next(x for x in d.deadlines if x.kind == "objection")
    assert objection.estimated and objection.due == date(2099, 3, 9)
    assert all(x.estimated for x in d.deadlines if x.kind in ("registration", "conclusion"))
    assert any("2099年法定节假日安排未收录" in r.message for r in d.reasons)


def test_judicial_and_discipline_have_no_acceptance_notice(taxonomy) -> None:  # type: ignore[no-untyped-def]
    ctx = context(taxonomy, "江津区法院判决生效一年多了对方不履行，请督促法院强制执行。", track="judicial",
                  department="politics_law")
    kinds = {x.kind for x in decider(taxonomy).decide(ctx).deadlines}
    assert "registration" in kinds and "acceptance_notice" not in kinds


def test_expired_channel_window_is_a_warning_not_a_risk_flag(taxonomy) -> None:  # type: ignore[no-untyped-def]
    ctx = context(taxonomy, "酉阳县某镇民政办今年3月取消了我家的低保，请求恢复。", track="admin_review",
                  department="civil", submitted_at="2026-06-10T10:00:00+08:00")
    d = decider(taxonomy, "2026-06-10").decide(ctx)
    window = next(x for x in d.deadlines if x.kind == "admin_reconsideration")
    assert window.warning and window.due == date(2026, 6, 1)  # 03-31 + 60 = 05-30 (Sat) → 06-01
    assert "deadline_risk" not in d.flags and any("可能已于2026-06-01届满" in r.message for r in d.reasons)
