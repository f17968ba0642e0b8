"""Hot issues (triage.linking.hotspots): grouping, trend, description."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from triage.linking.hotspots import HotspotFinder, _trend, load_hotspot_finder
from triage.linking.index import CaseSnapshot
from triage.linking.memory import MemoryCaseIndex

TZ = timezone(timedelta(hours=8))
NOW = datetime(2026, 3, 29, tzinfo=TZ)
PLANT = [
    "丽发新城旁边的搅拌站每天晚上施工，噪音和粉尘太大了，小区居民根本没法休息，请有关部门管一管这个搅拌站。",
    "强烈投诉丽发新城附近的搅拌站，晚上噪音扰民，白天粉尘满天飞，窗户都不敢开，请求环保部门查处搅拌站。",
    "丽发新城业主再次反映：小区旁搅拌站粉尘和噪音污染严重，夜里还在作业，严重影响居民健康，请求尽快关停搅拌站。",
]
OTHERS = [
    "我家小孩今年读一年级，想咨询一下学区划分的政策，户口和房产不在一起怎么办？",
    "某某路公交站台的顶棚坏了很久，下雨天等车的人都淋湿了，建议尽快修理。",
]


def _snaps() -> list[CaseSnapshot]:
    texts = PLANT + OTHERS
    return [CaseSnapshot(case_id=f"H-{i}", text=t, submitted_at=NOW - timedelta(days=20 - 3 * i)) for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def finder() -> HotspotFinder:
    return load_hotspot_finder(min_size=2)


def test_hotspots_group_one_issue_and_leave_unrelated_cases_out(finder: HotspotFinder) -> None:
    snaps = _snaps()
    index = MemoryCaseIndex()
    for s, f in zip(snaps, finder.featurizer.features_many([s.text for s in snaps]), strict=True):
        index.add(s, f)
    issues = finder.issues(snaps, index, now=NOW)
    assert [i.case_ids for i in issues] == [["H-0", "H-1", "H-2"]]
    issue = issues[0]
    assert issue.count == 3 and issue.districts == {"未识别": 3}
    assert issue.first == snaps[0].submitted_at and issue.last == snaps[2].submitted_at
    assert sum(issue.weekly.values()) == 3
    assert "搅拌站" in issue.keywords


def test_hotspots_pair_probabilities_stay_inside_the_window(finder: HotspotFinder) -> None:
    snaps = _snaps()
    index = MemoryCaseIndex()
    for s, f in zip(snaps, finder.featurizer.features_many([s.text for s in snaps]), strict=True):
        index.add(s, f)
    probs = finder.pair_probabilities(snaps[:2], index)
    assert set(probs) <= {("H-0", "H-1")}


def test_trend_compares_the_last_two_weeks() -> None:
    d = timedelta(days=1)
    assert _trend([NOW - 10 * d, NOW - 2 * d, NOW - 1 * d], NOW) == "上升"
    assert _trend([NOW - 10 * d, NOW - 9 * d, NOW - 1 * d], NOW) == "下降"
    assert _trend([NOW - 10 * d, NOW - 1 * d], NOW) == "持平"
    assert _trend([NOW - 2 * d, NOW - 1 * d], NOW) == "新出现"
    assert _trend([], NOW) == "—"
