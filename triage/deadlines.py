"""Deadlines (R15): day counting on the official Chinese holiday calendar, with 调休.

Counting follows 民法典第二百零一至二百零三条 (the general rule the procedural laws share):
the starting day is not counted; a period in months/years ends on the corresponding day of the
last month (the month's last day when there is none); a period whose last day is a statutory rest
day ends on the first working day after it. "工作日" periods count working days on the State
Council schedule (weekends, public holidays and the weekend days that are made working days).

The schedule comes from the `chinese_calendar` package. Version 1.11 covers 2004–2026
(`calendar_years()` reports what the installed version covers). The State Council publishes next
year's schedule in November or December; until the package has it, dates in an uncovered year are
**estimated** (Monday–Friday are working days, no public holidays) and every such deadline says
so (`Deadline.estimated`, and a note naming the year). Nothing is silently assumed. An office can
add an announced schedule in the rule file (`[calendar]`) before the package ships it.
"""

from __future__ import annotations

import calendar as _cal
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

import chinese_calendar
from chinese_calendar import constants as _cc

from triage.errors import TriageError

Unit = Literal["days", "working_days", "months", "years"]

_PERIOD = re.compile(r"^(\d{1,4})(d|wd|m|y)$")
_UNITS: dict[str, Unit] = {"d": "days", "wd": "working_days", "m": "months", "y": "years"}


class CalendarCoverageError(TriageError, LookupError):
    """A date falls in a year the holiday calendar does not cover."""

    code = "T230"
    title = "节假日安排未收录"

    def __init__(self, day: date, covered: tuple[int, int]) -> None:
        super().__init__(
            f"{day.year}年的法定节假日安排未收录（chinese_calendar {chinese_calendar.__version__} 覆盖 "
            f"{covered[0]}–{covered[1]} 年；可在规则文件 [calendar] 中补充国务院公布的安排）"
        )
        self.day = day
        self.covered = covered


def calendar_years() -> tuple[int, int]:
    """First and last year the installed chinese_calendar package covers."""
    days = list(_cc.holidays) + list(_cc.workdays)
    return min(days).year, max(days).year


@dataclass(frozen=True)
class Period:
    """An amount of days, working days, months or years: parse('15d'), parse('5wd'), parse('6m')."""

    amount: int
    unit: Unit

    @classmethod
    def parse(cls, text: str) -> Period:
        m = _PERIOD.match(text.strip())
        if not m or int(m.group(1)) <= 0:
            raise ValueError(f"period {text!r}: expected a positive number followed by d, wd, m or y (15d, 5wd, 6m, 1y)")
        return cls(int(m.group(1)), _UNITS[m.group(2)])

    def describe(self) -> str:
        return f"{self.amount}" + {"days": "日", "working_days": "个工作日", "months": "个月", "years": "年"}[self.unit]


@functools.lru_cache(maxsize=8192)
def _package_is_workday(day: date) -> bool:
    """chinese_calendar.is_workday, cached: it is half of decide()'s time in batch jobs (a fixed table per date)."""
    return bool(chinese_calendar.is_workday(day))


@dataclass(frozen=True)
class Due:
    """A computed due date; `estimated` when some day on the way was in an uncovered year."""

    day: date
    estimated: bool = False
    uncovered_years: tuple[int, ...] = ()


@dataclass(frozen=True)
class HolidayCalendar:
    """Working days per the State Council schedule, with optional additions from the rule file.

    `extra_years` are years whose schedule the rule file gives in full (`extra_holidays` are rest
    days, `extra_workdays` are 调休 working weekend days); they count as covered.
    """

    extra_holidays: frozenset[date] = frozenset()
    extra_workdays: frozenset[date] = frozenset()
    extra_years: frozenset[int] = frozenset()
    package_years: tuple[int, int] = field(default_factory=calendar_years)

    def covers(self, day: date) -> bool:
        return self.package_years[0] <= day.year <= self.package_years[1] or day.year in self.extra_years

    def describe(self) -> str:
        extra = f"，规则文件补充 {','.join(str(y) for y in sorted(self.extra_years))} 年" if self.extra_years else ""
        return (f"chinese_calendar {chinese_calendar.__version__}（{self.package_years[0]}–{self.package_years[1]} 年"
                f"{extra}）")

    def is_workday(self, day: date) -> bool:
        """True on a working day (调休 weekend days included).

        Raises:
            CalendarCoverageError: the year is not covered.
        """
        if day in self.extra_workdays:
            return True
        if day in self.extra_holidays:
            return False
        if day.year in self.extra_years:
            return day.weekday() < 5
        if not self.covers(day):
            raise CalendarCoverageError(day, self.package_years)
        return _package_is_workday(day)

    def _is_workday_or_estimate(self, day: date, uncovered: set[int]) -> bool:
        try:
            return self.is_workday(day)
        except CalendarCoverageError:
            uncovered.add(day.year)
            return day.weekday() < 5

    def add(self, start: date, period: Period, *, roll_forward: bool = True) -> Due:
        """The last day of `period` counted from `start` (start day not counted)."""
        uncovered: set[int] = set()
        if period.unit == "working_days":
            day, left = start, period.amount
            while left:
                day += timedelta(days=1)
                if self._is_workday_or_estimate(day, uncovered):
                    left -= 1
            return Due(day, bool(uncovered), tuple(sorted(uncovered)))
        if period.unit == "days":
            day = start + timedelta(days=period.amount)
        else:
            day = add_months(start, period.amount * (12 if period.unit == "years" else 1))
        if roll_forward:
            while not self._is_workday_or_estimate(day, uncovered):
                day += timedelta(days=1)
        return Due(day, bool(uncovered), tuple(sorted(uncovered)))

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end` (0 when end <= start).

        Raises:
            CalendarCoverageError: a day in between is in an uncovered year.
        """
        n, day = 0, start
        while day < end:
            day += timedelta(days=1)
            n += self.is_workday(day)
        return n


def add_months(day: date, months: int) -> date:
    """Corresponding day `months` later; the month's last day when it has none (民法典第二百零二条)."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    return date(year, month, min(day.day, _cal.monthrange(year, month)[1]))


# --- when did the act happen ------------------------------------------------------------------

_CN = "零〇一二两三四五六七八九十百"
_AGO = re.compile(rf"(\d{{1,4}}|[{_CN}]{{1,4}})(?:多)?(天|日|个月|年)(?:以)?前")


def date_range(value: str) -> tuple[date, date] | None:
    """An ISO date, month or year (entity value) as its first and last day."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            d = date.fromisoformat(value)
            return d, d
        if re.fullmatch(r"\d{4}-\d{2}", value):
            y, m = int(value[:4]), int(value[5:])
            return date(y, m, 1), date(y, m, _cal.monthrange(y, m)[1])
        if re.fullmatch(r"\d{4}", value):
            y = int(value)
            return date(y, 1, 1), date(y, 12, 31)
    except ValueError:
        return None
    return None


def ago_range(surface: str, received: date) -> tuple[date, date] | None:
    """'40天前' → that day; '3个月前' → that day (relative to the received date)."""
    from triage.entities import parse_number

    m = _AGO.fullmatch(surface)
    if not m:
        return None
    n = parse_number(m.group(1))
    if n is None or n <= 0:
        return None
    k = int(n)
    if m.group(2) in ("天", "日"):
        d = received - timedelta(days=k)
    elif m.group(2) == "个月":
        d = add_months(received, -k)
    else:
        d = add_months(received, -12 * k)
    return d, d


_SENTENCE = re.compile(r"[^。！？!?；;\n]+")


def act_date(text: str, dates: Iterable[tuple[int, int, str | None]], cues: re.Pattern[str],
             received: date) -> tuple[date, date, str] | None:
    """When the contested act happened, as a (first, last) day range and the words it came from.

    Looks only at sentences that name the act (a cue such as 作出…决定, 取消, 辞退): the most recent
    date in such a sentence — an extracted date entity (start, end, ISO value) or "N天前" — not
    after the received date. None when no sentence names the act with a date: the caller then says
    the window runs from when the petitioner knew of the act, without inventing a date.
    """
    dates = list(dates)
    best: tuple[date, date, str] | None = None
    for sent in _SENTENCE.finditer(text):
        if not cues.search(sent.group()):
            continue
        found: list[tuple[date, date, str]] = []
        for start, end, value in dates:
            if sent.start() <= start < sent.end() and value:
                r = date_range(value)
                if r:
                    found.append((r[0], r[1], text[start:end]))
        for m in _AGO.finditer(sent.group()):
            r = ago_range(m.group(), received)
            if r:
                found.append((r[0], r[1], m.group()))
        for lo, hi, surface in found:
            if lo > received:
                continue
            hi = min(hi, received)
            if best is None or lo > best[0]:
                best = (lo, hi, surface)
    return best
