"""Organisation tagger (triage/orgs.py): decoding, features, persistence, training, the shipped model."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from tests.factories import state_marked_example
from tests.triage.test_entities import ORG_SENTENCES, WordTagger
from triage.entities import EXTRACTOR_VERSION, ORG_TAGGER_PATH, ORG_TAGGER_WORDS_PATH, EntityExtractor, load_org_tagger
from triage.orgs import (
    _ALLOWED,
    _END_OK,
    _START_OK,
    NEG,
    TAGS,
    Lexicon,
    OrgTagger,
    StateLayer,
    _word_atoms,
    spans_to_tags,
    tags_to_spans,
    viterbi_chunks,
)
from triage.schemas import Petition


def _brute_force(em: np.ndarray, trans: np.ndarray) -> tuple[int, ...]:
    best: tuple[float, tuple[int, ...]] | None = None
    for seq in itertools.product(range(len(TAGS)), repeat=len(em)):
        if not (_START_OK[seq[0]] and _END_OK[seq[-1]]):
            continue
        score = sum(em[i, t] for i, t in enumerate(seq)) + sum(trans[a, b] for a, b in itertools.pairwise(seq))
        if best is None or score > best[0]:
            best = (score, seq)
    assert best is not None
    return best[1]


def test_viterbi_chunks_is_the_exact_best_bioes_path() -> None:
    rng = np.random.default_rng(3)
    trans = np.where(_ALLOWED, rng.standard_normal((5, 5)), NEG).astype(np.float32)
    em = (rng.standard_normal((22, 5)) * 2).astype(np.float32)
    chunks = [(0, 5), (6, 7), (8, 13), (15, 19)]  # one batch of different lengths; 5, 13, 14, 19+ stay outside
    tags = viterbi_chunks(em, chunks, trans)
    for s, e in chunks:
        assert tuple(tags[s:e].tolist()) == _brute_force(em[s:e], trans)
    assert tags[[5, 13, 14, 19, 20, 21]].tolist() == [0] * 6


def test_bioes_round_trip() -> None:
    spans = [(0, 3), (4, 5), (7, 12)]
    tags = spans_to_tags(14, spans)
    assert [TAGS[t] for t in tags[:6]] == ["B", "I", "E", "O", "S", "O"]
    assert tags_to_spans(tags) == spans


def test_chunks_cut_at_punctuation_and_quotes() -> None:
    text = "我在，九龙坡区“夕阳红颐养院”。 好"
    assert [text[s:e] for s, e in OrgTagger.chunks(text)] == ["我在", "九龙坡区", "夕阳红颐养院", "好"]


def test_decoding_cuts_at_conjunctions_no_name_contains() -> None:
    text = "酉阳县供电公司并县经信委：与顺达物流的关系，区水利局转市水利局及区移民办"
    assert [text[s:e] for s, e in OrgTagger.chunks(text, decoding=True)] == [
        "酉阳县供电公司", "县经信委", "顺达物流的关系", "区水利局", "市水利局", "区移民办"]
    assert [text[s:e] for s, e in OrgTagger.chunks(text)] == [  # training chunks: punctuation only
        "酉阳县供电公司并县经信委", "与顺达物流的关系", "区水利局转市水利局及区移民办"]
    assert OrgTagger.chunks("住房和城乡建设委员会", decoding=True) == [(0, 10)]  # 和 stands in names


def test_nested_repeats_of_a_found_name() -> None:
    from triage.entities import nested_repeats

    text = "我向东溪镇政府申请，镇政府不批，请求区政府对东溪镇政府的决定复议"
    first, second = text.index("东溪镇政府"), text.rindex("东溪镇政府")
    alone, district = text.index("，镇政府") + 1, text.index("区政府")
    found = [(first, first + 5), (alone, alone + 3), (district, district + 3), (second, second + 5)]
    # 镇政府 inside both 东溪镇政府; 区政府 is found but inside no other name; 政府 alone was never found
    assert nested_repeats(text, found) == [(first + 2, first + 5), (second + 2, second + 5)]
    assert nested_repeats(text, [(first, first + 5), (second, second + 5)]) == []  # nothing found on its own
    # an occurrence that crosses a found span's boundary is no repeat
    assert nested_repeats("顺达物流有限公司，顺达物流", [(2, 8), (9, 13)]) == []


def test_free_repeats_add_the_other_occurrences_of_a_found_name() -> None:
    from triage.entities import free_repeats

    text = "潼柠公司只愿意按低价收购，我们找过潼柠公司三次，惠康公司也不管，请督促潼柠公司履约"
    first = text.index("潼柠公司")
    second, third = text.index("潼柠公司", first + 1), text.rindex("潼柠公司")
    found = [(first, first + 4)]
    assert free_repeats(text, found, found) == [(second, second + 4), (third, third + 4)]
    # an occurrence overlapping an entity already taken (a person, a longer name) is left alone
    assert free_repeats(text, found, [*found, (second - 1, second + 2)]) == [(third, third + 4)]
    # single characters never spread; two found names each spread, never onto each other's span
    assert free_repeats("厂里说厂医院会管，厂", [(0, 1)], [(0, 1)]) == []
    assert free_repeats("区政府和镇政府，区政府", [(0, 3), (4, 7)], [(0, 3), (4, 7)]) == [(8, 11)]


def test_extractor_marks_every_occurrence_of_a_name_it_found_once(taxonomy) -> None:  # type: ignore[no-untyped-def]
    """The served extractor: whatever found the name once (tagger, convention, short name), every free occurrence is an
    organisation too, as the corpus annotates them."""
    class OneName:  # a word tagger whose only organisation word is the first 家美装饰
        version = "one-name"

        def words(self, text: str) -> list[tuple[int, int, str]]:
            i = text.index("家美装饰")
            return [(i, i + 4, "ORG")]

        def tag(self, text: str) -> list[tuple[int, int, str]]:
            return self.words(text)

    x = EntityExtractor(taxonomy.gazetteer, OneName(), org_tagger=None)
    text = "家美装饰收了定金不开工，再去找家美装饰，店门关了。"
    orgs = [(e.start, e.end, e.source) for e in x.extract(text).items if e.type == "org"]
    assert [(s, e) for s, e, _ in orgs] == [(0, 4), (15, 19)] and orgs[1][2] == "repeat"


def test_trim_orgs_before_company_names(taxonomy) -> None:  # type: ignore[no-untyped-def]
    from triage.entities import trim_orgs

    x = EntityExtractor(taxonomy.gazetteer, org_tagger=None)

    def trimmed(text: str, *names: str) -> list[str]:
        spans = [(text.index(n), text.index(n) + len(n)) for n in names]
        return [text[s:e] for s, e in trim_orgs(text, spans, x._places(text))]

    text = "我在永川区快行汽车租赁公司开车，找过九龙坡区税务局、黔江区文旅投资集团、垫江县水务公司、江北区某物流公司，打过12345"
    assert trimmed(text, "永川区快行汽车租赁公司", "九龙坡区税务局", "黔江区文旅投资集团", "垫江县水务公司", "江北区某物流公司",
                   "12345") == ["快行汽车租赁公司", "九龙坡区税务局", "黔江区文旅投资集团", "垫江县水务公司", "江北区某物流公司"]
    # symbols and punctuation never begin or end a name; a span of nothing else is dropped
    text = "今天😀巴渝老灶火锅公司✨又关门了，找“区人社局”…"
    assert trimmed(text, "😀巴渝老灶火锅公司✨", "“区人社局”", "…") == ["巴渝老灶火锅公司", "区人社局"]


def test_lexicon_matches_longest_with_its_bucket() -> None:
    lex = Lexicon({"九龙机械": Lexicon.bucket(0.9), "九龙机械集团": Lexicon.bucket(0.3)})
    assert lex.matches("到九龙机械集团和九龙机械") == [(1, 7, 2), (8, 12, 4)]
    assert lex.matches("九龙机械集") == [(0, 4, 4)]  # a longer name cut off by the end of the text is no match
    assert Lexicon({}).matches("九龙机械") == []


def test_lexicon_matches_as_one_regular_expression_of_all_names() -> None:
    """The dictionary scan finds what re.finditer over all names, longest alternative first, finds (what it replaced)."""
    import random
    import re

    rng = random.Random(7)
    for _ in range(300):
        names = {"".join(rng.choices("甲乙丙", k=rng.randint(1, 4))): rng.randint(1, 4) for _ in range(rng.randint(1, 6))}
        text = "".join(rng.choices("甲乙丙丁", k=rng.randint(0, 30)))
        regex = re.compile("|".join(map(re.escape, sorted(names, key=len, reverse=True))))
        assert Lexicon(names).matches(text) == [(m.start(), m.end(), names[m.group()]) for m in regex.finditer(text)]


def test_cached_hash_powers_equal_a_fresh_cumulative_product() -> None:
    from triage.orgs import _P, _P_INV, _powers

    for n in (0, 3, 1500, 5000, 7):  # growing the cache past its first size, then slicing it again
        powers, inv = _powers(n)
        assert np.array_equal(powers, np.cumprod(np.full(n, _P, dtype=np.uint64)))
        assert np.array_equal(inv, np.cumprod(np.full(n, _P_INV, dtype=np.uint64)))
    assert (powers * inv == 1).all()  # each power times its inverse is 1 mod 2**64


@pytest.mark.parametrize("n_templates", [1, 5, 8, 13, 16, 37])
def test_fused_emission_pass_sums_in_numpys_order(n_templates: int) -> None:
    """The compiled hash + gather + sum gives numpy's bits (pairwise order) for any number of templates."""
    from triage.orgs import _emission_kernel

    rng = np.random.default_rng(n_templates)
    width, n, bits = 3, 50, 12
    atoms = rng.integers(0, 2**63, (n_templates, width, n), dtype=np.uint64)
    seeds = rng.integers(0, 2**63, n_templates, dtype=np.uint64)
    mul = rng.integers(1, 2**63, (n_templates, width), dtype=np.uint64)
    weights_t = (rng.standard_normal((5, 1 << bits)) * 10).astype(np.float32)
    mask = np.uint64((1 << bits) - 1)
    h = seeds[:, None]
    for k in range(width):
        h = (h ^ atoms[:, k]) * mul[:, k, None]
    feats = ((h ^ (h >> np.uint64(29))) & mask).astype(np.int64).T
    out = np.empty((n, 5), dtype=np.float32)
    _emission_kernel()(atoms, seeds, mul, mask, np.ascontiguousarray(weights_t.T), out)
    assert np.array_equal(out, np.take(weights_t, feats, axis=1).sum(axis=2).T)


def test_text_emissions_equal_the_features_path_on_the_shipped_tagger(taxonomy) -> None:  # type: ignore[no-untyped-def]
    tagger = load_org_tagger(ORG_TAGGER_WORDS_PATH)
    assert tagger is not None
    x = EntityExtractor(taxonomy.gazetteer, WordTagger(ORG_SENTENCES), departments=taxonomy.responsibilities.values(),
                        org_tagger=tagger)
    for text in ORG_SENTENCES:
        words = WordTagger(ORG_SENTENCES).words(text)
        marks = x.org_marks(text, words, x._places(text))
        assert np.array_equal(tagger.text_emissions(text, words, marks), tagger.emissions(tagger.features(text, words, marks)))


def test_word_identity_does_not_depend_on_position() -> None:
    text = "区政府找区政府"
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    lab, word, wpos, prev_lab, _ = _word_atoms(cp, [(0, 3, "ORG"), (3, 4, "v"), (4, 7, "ORG")])
    assert word[0] == word[4] != 0 and word[1] == word[0]  # every character carries its word
    assert word[3] == 0  # one-character words have no identity feature
    assert wpos.tolist() == [1, 2, 3, 4, 1, 2, 3]
    assert lab[0] == lab[4] != lab[3] and prev_lab[4] == lab[3]


def _toy_examples() -> list:  # type: ignore[type-arg]
    from training.orgs import Example

    names = ["鼎盛汽车", "家美装饰", "华武建设", "顺达物流"]
    out = []
    for i, name in enumerate(names * 3):
        text = f"我在{name}上班，老板拖欠工资"
        words = [(0, 1, "r"), (1, 2, "p"), (2, 2 + len(name), "nz"), (2 + len(name), 4 + len(name), "v"), *[]]
        words.append((4 + len(name), len(text), "n"))
        out.append(Example(str(i), str(i), text, words, {}, [(2, 2 + len(name))], OrgTagger.chunks(text)))
    return out


def test_perceptron_learns_names_from_annotations() -> None:
    from training.orgs import train

    examples = _toy_examples()
    tagger = train(examples, epochs=3, bits=12, folds=2)
    text = "我在云栈软件上班，老板拖欠工资"  # a name never seen, in the same context
    words = [(0, 1, "r"), (1, 2, "p"), (2, 6, "nz"), (6, 8, "v"), (8, len(text), "n")]
    assert tagger.spans(text, words, {}) == [(2, 6)]


def test_save_and_load_keep_every_weight(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w = np.zeros((1 << 10, len(TAGS)), dtype=np.float32)
    w[rng.integers(0, 1 << 10, 50)] = rng.standard_normal((50, len(TAGS)))
    tagger = OrgTagger(w, rng.standard_normal((5, 5)).astype(np.float32), 10, "t-1", Lexicon({"区政府": 4}))
    tagger.save(tmp_path / "t.npz")
    back = OrgTagger.load(tmp_path / "t.npz")
    assert np.array_equal(back.weights_, w) and np.array_equal(back.transitions_, tagger.transitions_)
    assert back.lexicon.names == {"区政府": 4} and back.version == "t-1"


def test_shipped_tagger_is_used_with_a_word_tagger(taxonomy) -> None:  # type: ignore[no-untyped-def]
    assert ORG_TAGGER_PATH.exists(), "the organisation tagger ships in models/entities/"
    assert ORG_TAGGER_WORDS_PATH.exists(), "the words-only organisation tagger ships in models/entities/"
    tagger = load_org_tagger(ORG_TAGGER_WORDS_PATH)  # the fake word tagger has no encoder states
    assert tagger is not None and not tagger.uses_states
    x = EntityExtractor(taxonomy.gazetteer, WordTagger(ORG_SENTENCES), departments=taxonomy.responsibilities.values())
    assert x.org_tagger is tagger and x.version == f"{EXTRACTOR_VERSION}+fake-words+{tagger.version}"
    text = "找了区信访办和区公安分局，督促法院执行"
    p = Petition(text=text)
    orgs = [(e.text, e.source) for e in x.extract(p.text, p).items if e.type == "org"]
    assert orgs == [("区信访办", "tagger"), ("区公安分局", "tagger")]  # 法院 alone is a bare type noun (E1)
    assert EntityExtractor(taxonomy.gazetteer).org_tagger is None  # no words, no tagger: rules only


def test_convention_names_where_the_tagger_finds_nothing() -> None:
    from triage.entities import convention_orgs

    def names(text: str, word_orgs: list[tuple[int, int]] | None = None) -> list[str]:
        return [text[s:e] for s, e in sorted(convention_orgs(text, word_orgs or []))]

    # a level-prefixed body after a function word or at a clause start (E1/E2); not inside a title or a verb
    assert names("找过镇水利站，区国资委答复说找街道征收办") == ["镇水利站", "区国资委", "街道征收办"]
    assert names("区长信箱里说，镇里要求，县局长来了，市场监管局") == []
    assert names("我们恳请县政府：一、组织相关部门") == []  # 请 + 政府: E2 did not add these, writers mostly did not tag them
    # a quoted name ending in an organisation head: every occurrence; a quoted phrase is no name
    text = "东城街道“夕阳红颐养院”超床位，夕阳红颐养院的护理员不足，说是“因私绕行”"
    assert names(text) == ["夕阳红颐养院", "夕阳红颐养院"]
    # a residential word run with a proper name; descriptions (安置小区) are not names
    text = "住璧城街道御璟湾小区，旁边的安置小区"
    assert names(text, [(5, 10), (15, 19)]) == ["御璟湾小区"]


def test_convention_names_only_where_the_tagger_finds_nothing(taxonomy) -> None:  # type: ignore[no-untyped-def]
    sentences = {  # words the shipped tagger finds no organisation in (orgs-3 is fitted on train+dev: with LAC's own
        # words for these dev sentences, 县教委 ORG and 过镇|水利站, it now finds the names itself)
        "其按县教委安排到沙子镇交流": [("其", "r"), ("按", "p"), ("县教委", "n"), ("安排", "v"), ("到", "v"), ("沙子镇", "LOC"),
                                      ("交流", "v")],
        "说找街道征收办": [("说", "v"), ("找", "v"), ("街道", "n"), ("征收", "vn"), ("办", "n")],
        # entities-5: a found name again inside a longer one; a company without the 区 name before it; no 与 inside
        "我向东溪镇政府申请，镇政府不批": [("我", "r"), ("向", "p"), ("东溪镇政府", "ORG"), ("申请", "v"), ("，", "w"),
                                         ("镇政府", "ORG"), ("不", "d"), ("批", "v")],
        "我在永川区快行汽车租赁公司开车，与快行汽车租赁公司签过合同": [
            ("我", "r"), ("在", "p"), ("永川区快行汽车租赁公司", "ORG"), ("开车", "v"), ("，", "w"), ("与", "p"),
            ("快行汽车", "ORG"), ("租赁公司", "vn"), ("签", "v"), ("过", "u"), ("合同", "n")],
        **ORG_SENTENCES,
    }
    x = EntityExtractor(taxonomy.gazetteer, WordTagger(sentences), departments=taxonomy.responsibilities.values())

    def orgs(text: str) -> list[tuple[str, str | None]]:
        p = Petition(text=text)
        return [(e.text, e.source) for e in x.extract(p.text, p).items if e.type == "org"]

    assert orgs("其按县教委安排到沙子镇交流") == [("县教委", "convention")]
    assert orgs("说找街道征收办") == [("街道征收办", "convention")]
    # the convention also proposes 区信访办, 区公安分局 and 镇政府 here: the tagger's spans stay, nothing is doubled
    assert orgs("找了区信访办和区公安分局，督促法院执行") == [("区信访办", "tagger"), ("区公安分局", "tagger")]
    assert orgs("原国营川东船厂的工人，派出所说去找镇政府") == [("国营川东船厂", "tagger"), ("镇政府", "tagger")]
    assert orgs("我向东溪镇政府申请，镇政府不批") == [("东溪镇政府", "tagger"), ("镇政府", "repeat"), ("镇政府", "tagger")]
    assert orgs("我在永川区快行汽车租赁公司开车，与快行汽车租赁公司签过合同") == [("快行汽车租赁公司", "tagger")] * 2


def test_estate_names_after_a_subdistrict_or_before_a_unit_word(taxonomy) -> None:  # type: ignore[no-untyped-def]
    from triage.entities import estate_names

    x = EntityExtractor(taxonomy.gazetteer, org_tagger=None)

    def names(text: str) -> list[str]:
        return [text[s:e] for s, e in estate_names(text, [(p.start, p.end) for p in x._places(text)])]

    assert names("我是渝北区龙塔街道悦澜府项目的业主，巴南区龙洲湾街道滨江御府三期，") == ["悦澜府", "滨江御府三期"]
    assert names("我们是龙兴镇悦江台3栋的购房人，我们悦江台业主") == ["悦江台", "悦江台"]
    # 政府 is no estate, nor a street, a community or a description with 这/那/某; 府 alone is too short
    assert names("龙塔街道区政府的，龙塔街道某花园，龙塔街道解放路，在这新城项目，在府项目") == []


def test_numbered_courts_and_court_divisions() -> None:
    from triage.entities import convention_orgs

    text = "一中院发回重审，该院民二庭庭长说，开庭时刑事庭不在，二中院"
    assert sorted(text[s:e] for s, e in convention_orgs(text)) == ["一中院", "二中院", "民二庭"]


def test_unnamed_institutions_after_their_places() -> None:
    from triage.entities import unnamed_institutions

    text = "孩子在北碚区歇马街道某小学读书，我在万州区某医院看病，沙坪坝区某医院院长不管，江津区一家医院也不管，渝中区某公司欠薪"
    places = [(text.index(p), text.index(p) + len(p)) for p in ("北碚区", "歇马街道", "万州区", "沙坪坝区", "江津区", "渝中区")]
    # the whole place run; not 某医院 without a place, not before a title (院长), not 一家, not a company
    assert [text[s:e] for s, e in unnamed_institutions(text, places)] == ["北碚区歇马街道某小学", "万州区某医院"]
    assert unnamed_institutions("在某小学", []) == []


def test_short_trade_names() -> None:
    from triage.entities import trade_names

    words = [("开发商", "n"), ("渝禾", "PER"), ("置业", "n"), ("不退钱", "v"), ("，", "w"), ("城市", "n"), ("建设", "vn"),
             ("很快", "d"), ("，", "w"), ("我在", "r"), ("永川", "LOC"), ("兴隆", "LOC"), ("陶瓷", "n"), ("上班", "v"),
             ("，", "w"), ("施工方", "n"), ("酉州", "LOC"), ("建筑", "n"), ("劳务公司", "n"), ("，有家“安居理财”公司", "x")]
    text = "".join(w for w, _ in words)
    spans = trade_names(text, WordTagger({text: words}).words(text), [(text.index("永川"), text.index("永川") + 2)])
    # 永川 (a place) is part of the name; 城市|建设 is a description (城市 is no proper word); 酉州建筑 goes on (劳务公司)
    assert [text[s:e] for s, e in spans] == ["安居理财", "渝禾置业", "永川兴隆陶瓷"]


def test_short_names_of_found_companies() -> None:
    from triage.entities import short_names

    text = "我起诉重庆黔城置业有限公司，黔城置业没钱；重庆长江电机股份有限公司原是长江电机厂，宏达路桥工程有限公司即宏达路桥公司"
    names = ("重庆黔城置业有限公司", "重庆长江电机股份有限公司", "宏达路桥工程有限公司")
    found = [(text.index(n), text.index(n) + len(n)) for n in names]
    # the bare core stands on its own; not when it starts a longer name (长江电机厂); with 公司 after it the whole
    assert [text[s:e] for s, e in short_names(text, found, [])] == ["黔城置业", "宏达路桥公司"]


def _one_hot_layer(dim: int = 4) -> StateLayer:
    """State dimension k makes tag k (O, B, I, E) likely (coefficient 8), which the CRF weighs by 4; S never is."""
    coef = np.zeros((dim, len(TAGS)), dtype=np.float32)
    coef[np.arange(4), np.arange(4)] = 8.0
    return StateLayer(coef, np.zeros(len(TAGS), dtype=np.float32), np.eye(len(TAGS), dtype=np.float32) * 4)


def test_state_layer_drives_decoding_and_is_required() -> None:
    tagger = OrgTagger(np.zeros((1 << 8, len(TAGS)), dtype=np.float32), np.zeros((5, 5), dtype=np.float32), 8, "t-s",
                       state_layer=_one_hot_layer())
    text = "我去找了渝北区某某单位反映"
    states = np.zeros((len(text), 4), dtype=np.float32)
    states[:, 0] = 1.0
    states[3:10] = 0.0
    states[3, 1], states[4:9, 2], states[9, 3] = 1.0, 1.0, 1.0  # 了渝北区某某单 … as B I I I I I E
    assert tagger.uses_states
    assert tagger.spans(text, [], {}, states) == [(3, 10)]
    probs = tagger.state_layer.probs(states)  # type: ignore[union-attr]
    assert np.allclose(probs.sum(axis=1), 1.0) and probs[3].argmax() == 1
    with pytest.raises(ValueError, match="encoder states"):
        tagger.spans(text, [], {})
    with pytest.raises(ValueError, match="shape"):
        tagger.spans(text, [], {}, states[:, :3])


def test_state_layer_survives_save_and_load(tmp_path: Path) -> None:
    layer = _one_hot_layer()
    layer.weights[1, 2] = -0.5
    tagger = OrgTagger(np.zeros((1 << 8, len(TAGS)), dtype=np.float32), np.ones((5, 5), dtype=np.float32), 8, "t-s",
                       Lexicon({}), layer)
    tagger.save(tmp_path / "s.npz")
    back = OrgTagger.load(tmp_path / "s.npz")
    assert back.state_layer is not None and back.uses_states
    for name in ("coef", "bias", "weights"):
        assert np.array_equal(getattr(back.state_layer, name), getattr(layer, name))
    plain = OrgTagger(np.zeros((1 << 8, len(TAGS)), dtype=np.float32), np.ones((5, 5), dtype=np.float32), 8, "t-p")
    plain.save(tmp_path / "p.npz")
    assert OrgTagger.load(tmp_path / "p.npz").state_layer is None


def test_extractor_takes_the_words_only_tagger_without_encoder_states(taxonomy) -> None:  # type: ignore[no-untyped-def]
    words_only = WordTagger(ORG_SENTENCES)  # like the fast engine: words, no words_states
    x = EntityExtractor(taxonomy.gazetteer, words_only, departments=taxonomy.responsibilities.values())
    assert x.org_tagger is not None and not x.org_tagger.uses_states
    shipped = load_org_tagger()
    assert shipped is not None and shipped.uses_states  # orgs-6 reads LAC's encoder states (state and sequence layers)
    assert x.org_tagger is load_org_tagger(ORG_TAGGER_WORDS_PATH)
    with pytest.raises(ValueError, match="words_states"):
        EntityExtractor(taxonomy.gazetteer, words_only, org_tagger=shipped)


def test_crf_learns_from_encoder_states() -> None:
    """Random characters around and in the names, every word alike: only the state features tell where names are."""
    from training.orgs import Example, tagger_f1, train_crf

    rng = np.random.default_rng(5)
    pool = [chr(c) for c in range(0x4E00, 0x4E00 + 400)]

    def example(i: int, chars: list[str]) -> Example:
        return state_marked_example(i, chars, rng)

    examples = [example(i, pool[:300]) for i in range(60)]
    # C = 1: the shipped 0.01 suits ~470k training characters; on these ~600 it penalises the layer too much
    tagger = train_crf(examples, bits=10, c1=0.0, c2=0.1, max_iter=100, folds=2, states=True, state_c=1.0)
    assert tagger.uses_states and tagger.state_layer is not None and tagger.state_layer.dim == 4
    unseen = [example(100 + i, pool[300:]) for i in range(20)]
    assert all(tagger.spans(x.text, x.words, {}, x.states) == x.gold for x in unseen)
    assert tagger_f1(tagger, unseen)["f1"] == 1.0  # training's own scorer passes the states too
    plain = train_crf(examples, bits=10, c1=0.0, c2=0.1, max_iter=100, folds=2)
    assert sum(plain.spans(x.text, x.words, {}) == x.gold for x in unseen) < 10


def test_retraining_keeps_the_out_of_fold_figures_only_for_the_same_artifact_recipe() -> None:
    from training.orgs import carry_over

    card = {"version": "orgs-5", "command": "python -m training.orgs --c2 0.01", "train": {"sha256": "a"}, "lac": "l",
            "extractor": "e", "dev": {"sha256": "d", "entities": {}}, "sha256": "new"}
    previous = {**card, "sha256": "old", "out_of_fold": {"pooled": 0.86}}
    assert carry_over(previous, card)["out_of_fold"] == {"pooled": 0.86}
    assert carry_over(previous, card)["sha256"] == "new"
    for key, value in (("command", "python -m training.orgs --c2 0.1"), ("train", {"sha256": "b"}),
                       ("version", "orgs-6"), ("dev", {"sha256": "e"})):
        assert "out_of_fold" not in carry_over({**previous, key: value}, card), key
    assert "out_of_fold" not in carry_over({k: v for k, v in previous.items() if k != "out_of_fold"}, card)


def test_domain_augmentation_serves_the_written_convention_where_real_messages_differ() -> None:
    """Twice as many real messages leave the same kind of name untagged: pooled, they outvote the written records;
    with one copy of each feature per domain (augment), the served weights follow the written convention."""
    from dataclasses import replace

    from training.orgs import train_crf

    written = _toy_examples()
    real = [replace(x, id=f"r{x.id}{k}", group=f"real:{x.id}{k}", gold=[], domain="real") for x in written for k in (0, 1)]
    text = "我在云栈软件上班，老板拖欠工资"  # a name never seen, in the same context
    words = [(0, 1, "r"), (1, 2, "p"), (2, 6, "nz"), (6, 8, "v"), (8, len(text), "n")]
    augmented = train_crf(written + real, bits=12, c1=0.0, c2=0.1, max_iter=100, folds=2, augment=True)
    assert augmented.spans(text, words, {}) == [(2, 6)]
    pooled = train_crf(written + real, bits=12, c1=0.0, c2=0.1, max_iter=100, folds=2)
    assert pooled.spans(text, words, {}) == []
    alone = train_crf(written, bits=12, c1=0.0, c2=0.1, max_iter=100, folds=2, augment=True)
    assert alone.spans(text, words, {}) == [(2, 6)]  # no real records: only the written copies and the shared weights
