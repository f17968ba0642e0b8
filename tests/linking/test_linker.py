"""CaseLinker: candidates (same petitioner, bands, vectors) → verifier → links with Chinese reasons."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from triage.entities import EntityExtractor
from triage.linking.linker import CaseLinker, load_linker, petition_keys
from triage.linking.memory import MemoryCaseIndex
from triage.linking.verifier import FEATURES, LinkVerifier, add_query_context, reasons_for
from triage.pipeline import Linker
from triage.schemas import Petition

TZ = timezone(timedelta(hours=8))
SECRET = b"unit-test-secret"
ORIGINAL = ("我在九龙坡区杨家坪步行街旁边的巴渝老灶火锅当服务员，今年3月和4月两个月工资一共5400块到现在都没发。"
            "老板每次都说生意不好等下个月，走的时候他还在考勤表上签了字认账的。请劳动监察帮忙催一哈。")
RESUBMISSION = ("来访人反映：其6月在网上反映九龙坡区杨家坪巴渝老灶火锅拖欠其3、4月工资5400元一事，区劳动监察大队曾电话联系老板，"
                "老板答应7月底前付清，至今仍未支付，现在火锅店已换了招牌继续营业。诉求：请监察部门依法责令支付。")
UNRELATED = "渝中区某路口一家烧烤店每天营业到凌晨3点，没有安装油烟净化设备，油烟直接排进我们居民楼的楼道，请城管部门依法处理。"


@pytest.fixture(scope="module")
def extractor(taxonomy) -> EntityExtractor:  # type: ignore[no-untyped-def]
    return EntityExtractor(taxonomy.gazetteer)  # patterns + gazetteer; no NER model in unit tests


def _petition(pid: str, text: str, day: int, phone: str | None = None) -> Petition:
    return Petition(id=pid, text=text, submitted_at=datetime(2024, 6, 1, 9, tzinfo=TZ) + timedelta(days=day),
                    petitioner={"name": "邓小琴", "phone": phone} if phone else None)


def _linker(extractor: EntityExtractor, cases: list[Petition]) -> CaseLinker:
    linker = load_linker(MemoryCaseIndex(), secret=SECRET)
    for p in cases:
        linker.register(p, p.text, extractor.extract(p.text, p))
    return linker


def test_linker_implements_the_pipeline_protocol(extractor: EntityExtractor) -> None:
    linker = _linker(extractor, [])
    assert isinstance(linker, Linker)
    assert linker.version.startswith("linker-")
    assert 0.0 < linker.threshold < 1.0


def test_linker_links_a_reworded_resubmission_with_reasons(extractor: EntityExtractor) -> None:
    linker = _linker(extractor, [_petition("C-1", ORIGINAL, 0, "13370120768"), _petition("C-2", UNRELATED, 3)])
    q = _petition("C-3", RESUBMISSION, 70, "13370120768")
    links = linker.link(q, q.text, extractor.extract(q.text, q))
    assert [lk.case_id for lk in links] == ["C-1"]
    assert links[0].same_petitioner
    assert links[0].reasons[0] == "同一信访人"
    assert any(r.startswith("相似度") for r in links[0].reasons)
    assert "间隔69天" in links[0].reasons or "间隔70天" in links[0].reasons


def test_linker_finds_same_petitioner_case_without_text_overlap(extractor: EntityExtractor) -> None:
    """The petitioner key alone makes an earlier case a candidate (its text shares nothing here)."""
    linker = _linker(extractor, [_petition("C-1", UNRELATED, 0, "13370120768")])
    q = _petition("C-2", ORIGINAL, 30, "133-7012-0768")  # same number, written differently
    ents = extractor.extract(q.text, q)
    cands = linker.candidates(q, q.text, ents)
    assert [s.case_id for s in cands] == ["C-1"]
    [scored] = linker.score(q, q.text, ents, cands)
    assert scored.features["same_petitioner"] == 1.0
    assert scored.probability < linker.threshold  # same person, different matter: not a duplicate


def test_linker_never_links_to_a_later_case(extractor: EntityExtractor) -> None:
    linker = _linker(extractor, [_petition("C-9", RESUBMISSION, 70, "13370120768")])
    q = _petition("C-1", ORIGINAL, 0, "13370120768")
    assert linker.link(q, q.text, extractor.extract(q.text, q)) == []


def test_petition_keys_use_fields_and_text_identifiers_never_raw_values() -> None:
    p = Petition(text="x", petitioner={"phone": "13370120768", "id_number": "500107196607061834"})
    keys = petition_keys(p.petitioner, None, SECRET)
    assert len(keys) == 2 and all(len(k) == 64 for k in keys)
    assert not any("13370120768" in k or "500107" in k for k in keys)
    assert petition_keys(p.petitioner, None, b"") == ()


def _features(**overrides: float) -> dict[str, float]:
    f = {name: 0.0 for name in FEATURES}
    f.update(overrides)
    return f


def test_reasons_text_is_chinese_and_names_no_values() -> None:
    f = _features(same_petitioner=1.0, same_subdivision=1.0, district_same=1.0, shared_org=1.0, word_cos=0.912)
    assert reasons_for(f, 35.4) == ["同一信访人", "同一街道/乡镇", "同一单位", "相似度0.91", "间隔35天"]
    assert reasons_for(_features(district_same=1.0, word_cos=0.5)) == ["同一区县", "相似度0.50"]


def test_query_context_marks_the_best_candidate() -> None:
    feats = [_features(word_cos=0.6), _features(word_cos=0.2), _features(word_cos=0.5)]
    add_query_context(feats)
    assert [f["is_top"] for f in feats] == [1.0, 0.0, 0.0]
    assert feats[0]["cos_gap"] == pytest.approx(0.1)
    assert feats[1]["cos_gap"] == pytest.approx(-0.4)


def test_verifier_round_trips_through_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = len(FEATURES)
    v = LinkVerifier(features=FEATURES, mean=np.zeros(n), scale=np.ones(n), coef=np.linspace(-1, 1, n), intercept=0.3,
                     platt_a=1.2, platt_b=-0.1, threshold=0.6, version="t")
    v.save(tmp_path / "v.json")
    w = LinkVerifier.load(tmp_path / "v.json")
    rows = np.random.default_rng(0).normal(size=(5, n))
    assert np.allclose(v.probability(rows), w.probability(rows))
    assert w.threshold == 0.6


def test_link_with_features_hands_out_the_features_it_linked_with(extractor: EntityExtractor) -> None:
    """The route saves these features with the case instead of featurising the text a second time."""
    linker = _linker(extractor, [_petition("C-1", ORIGINAL, 0, "13370120768"), _petition("C-2", UNRELATED, 3)])
    q = _petition("C-3", RESUBMISSION, 70, "13370120768")
    ents = extractor.extract(q.text, q)
    links, feats = linker.link_with_features(q, q.text, ents)
    assert links == linker.link(q, q.text, ents)
    expected = linker.featurizer.features(q.text)
    assert feats.bands == expected.bands
    assert feats.vector is not None and expected.vector is not None
    assert np.array_equal(feats.vector, expected.vector)


def test_pair_features_reuse_a_views_entity_sets(extractor: EntityExtractor) -> None:
    """A view's entity sets are computed once and give the same features for every candidate."""
    from triage.linking.verifier import pair_features, view_of

    enc = load_linker(MemoryCaseIndex(), secret=SECRET).encoder
    views = [view_of(t, extractor.extract(t, Petition(text=t)), enc) for t in (ORIGINAL, RESUBMISSION, UNRELATED)]
    first = [pair_features(views[1], c) for c in (views[0], views[2])]
    assert "sets" in vars(views[1])  # cached on the view
    assert [pair_features(views[1], c) for c in (views[0], views[2])] == first
    assert first[0]["shared_amount"] == 1.0 and first[1]["shared_amount"] == 0.0


def test_feature_rows_equal_pair_features_with_query_context(extractor: EntityExtractor) -> None:
    """The batched feature matrix the linker scores is exactly pair_features + add_query_context, and so are the
    verifier's probabilities from it."""
    from triage.linking.verifier import feature_rows, pair_features, view_of

    linker = load_linker(MemoryCaseIndex(), secret=SECRET)
    texts = (ORIGINAL, RESUBMISSION, UNRELATED, ORIGINAL + "老板电话13370120768。", UNRELATED)  # a tie for is_top
    views = [view_of(t, extractor.extract(t, Petition(text=t)), linker.encoder,
                     submitted_at=datetime(2024, 6, 1, tzinfo=TZ) + timedelta(days=i) if i != 2 else None,
                     petitioner_keys=("k1",) if i in (1, 3) else ()) for i, t in enumerate(texts)]
    q, cands = views[1], [views[0], views[2], views[3], views[4]]
    feats = [pair_features(q, c) for c in cands]
    add_query_context(feats)
    rows = feature_rows(q, cands)
    assert rows.tolist() == [[f[name] for name in FEATURES] for f in feats]
    assert rows[:, FEATURES.index("is_top")].sum() == 1.0 and rows[:, FEATURES.index("same_petitioner")].tolist()[2] == 1.0
    v = linker.verifier
    assert np.array_equal(v.probability_of_rows(rows), v.probability(v.matrix(feats)))
    assert feature_rows(q, []).shape == (0, len(FEATURES))
    single = [pair_features(q, cands[0])]
    add_query_context(single)
    assert feature_rows(q, cands[:1]).tolist() == [[single[0][name] for name in FEATURES]]


def test_view_cache_reuses_a_view_until_what_it_reads_changes(extractor: EntityExtractor) -> None:
    from triage.linking.index import CaseSnapshot

    linker = load_linker(MemoryCaseIndex(), secret=SECRET)
    ents = extractor.extract(ORIGINAL, Petition(text=ORIGINAL))
    s = CaseSnapshot(case_id="C-1", text=ORIGINAL, entities=ents, status="needs_review")
    v = linker.view_of_snapshot(s)
    same = CaseSnapshot(case_id="C-1", text=ORIGINAL, entities=ents.model_copy(deep=True), status="closed")
    assert linker.view_of_snapshot(same) is v  # equal content, another status: the cached view
    fewer = ents.model_copy(update={"items": ents.items[1:]})
    changed = CaseSnapshot(case_id="C-1", text=ORIGINAL, entities=fewer)
    assert linker.view_of_snapshot(changed) is not v
    assert linker.view_of_snapshot(CaseSnapshot(case_id="C-1", text=ORIGINAL + "。", entities=fewer)) is not v
