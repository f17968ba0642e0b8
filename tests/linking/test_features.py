"""MinHash-LSH band hashes and the encoder vector (triage.linking.features)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from triage.linking.features import BANDS, LinkFeaturizer, band_hashes, load_default_featurizer, minhash, signature_jaccard

ROOT = Path(__file__).resolve().parents[2]
TEXT = "九龙坡区杨家坪步行街巴渝老灶火锅拖欠我3月和4月两个月工资5400元，老板一直说等下个月，请劳动监察帮忙催讨。"
REPOST = "九龙坡区杨家坪步行街巴渝老灶火锅拖欠我3月、4月两个月工资共5400元，老板一直说等下个月再发，请劳动监察帮忙催讨！"
OTHER = "渝中区某路口一家烧烤店每天营业到凌晨3点，没有安装油烟净化设备，油烟直接排进居民楼的楼道。"


@pytest.fixture(scope="module")
def featurizer() -> LinkFeaturizer:
    return load_default_featurizer()


def test_bands_are_signed_int64_one_per_band() -> None:
    bands = band_hashes(minhash(TEXT))
    assert len(bands) == BANDS
    assert all(isinstance(b, int) and -(2**63) <= b < 2**63 for b in bands)
    assert len(set(bands)) == BANDS  # the band number is hashed in: equal rows in two bands differ


def test_bands_stable_across_processes() -> None:
    """Python's hash() is salted per process; band hashes must not be (they are stored in a table)."""
    code = ("from triage.linking.features import band_hashes, minhash; "
            f"print(list(band_hashes(minhash({TEXT!r}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PYTHONHASHSEED": "12345"}).stdout
    assert eval(out) == list(band_hashes(minhash(TEXT)))  # noqa: S307  # our own printed list of ints


def test_minhash_estimates_jaccard_and_repost_shares_bands() -> None:
    a, b, c = minhash(TEXT), minhash(REPOST), minhash(OTHER)
    assert signature_jaccard(a, a) == 1.0
    assert signature_jaccard(a, b) > 0.4
    assert signature_jaccard(a, c) < 0.1
    assert set(band_hashes(a)) & set(band_hashes(b))
    assert not set(band_hashes(a)) & set(band_hashes(c))


def test_punctuation_and_spacing_do_not_change_the_signature() -> None:
    assert np.array_equal(minhash("小区 路灯坏了，三个月没人修。"), minhash("小区路灯坏了三个月没人修"))


def test_empty_text_has_a_signature() -> None:
    assert len(band_hashes(minhash("。。。"))) == BANDS


def test_vector_is_unit_float32_and_reworded_text_is_closer(featurizer: LinkFeaturizer) -> None:
    f = featurizer.features(TEXT)
    assert f.vector is not None and f.vector.dtype == np.float32 and f.vector.shape == (featurizer.dim,)
    assert np.linalg.norm(f.vector) == pytest.approx(1.0, abs=1e-5)
    reworded = "来访人反映：其在杨家坪巴渝老灶火锅做服务员，老板拖欠3、4月工资5400元至今未付。诉求：督促支付。"
    v = featurizer.features_many([reworded, OTHER])
    assert float(f.vector @ v[0].vector) > float(f.vector @ v[1].vector) + 0.2


def test_features_many_equals_features(featurizer: LinkFeaturizer) -> None:
    one = featurizer.features(OTHER)
    [many] = featurizer.features_many([OTHER])
    assert one.bands == many.bands
    assert np.allclose(one.vector, many.vector)


def test_sparse_cosine_equals_the_intersect1d_form_exactly() -> None:
    """sparse_cosine finds shared ids by binary search; the products and their order are those of np.intersect1d."""
    from triage.linking.features import sparse_cosine

    rng = np.random.default_rng(3)
    for _ in range(200):
        a_ids = np.unique(rng.integers(0, 400, size=rng.integers(0, 60)))
        b_ids = np.unique(rng.integers(0, 400, size=rng.integers(0, 60)))
        a = (a_ids, rng.random(a_ids.size).astype(np.float32))
        b = (b_ids, rng.random(b_ids.size).astype(np.float32))
        common, ia, ib = np.intersect1d(a[0], b[0], assume_unique=True, return_indices=True)
        ref = float(np.dot(a[1][ia], b[1][ib])) if common.size else 0.0
        assert sparse_cosine(a, b) == ref


def test_sparse_cosines_equal_sparse_cosine_exactly() -> None:
    """The batched form (one id match for all candidates) gives bit-identical values, empty vectors included."""
    from triage.linking.features import sparse_cosine, sparse_cosines

    rng = np.random.default_rng(5)

    def vec() -> tuple[np.ndarray, np.ndarray]:
        ids = np.unique(rng.integers(0, 300, size=rng.integers(0, 80)))
        return ids, rng.random(ids.size).astype(np.float32)

    empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
    for _ in range(100):
        a = vec()
        bs = [vec() for _ in range(rng.integers(0, 50))] + [empty]
        rng.shuffle(bs)  # type: ignore[arg-type]
        assert sparse_cosines(a, bs) == [sparse_cosine(a, b) for b in bs]
    assert sparse_cosines(empty, [vec()]) == [0.0]
    assert sparse_cosines(vec(), []) == []


def test_token_codes_are_blake2b_with_or_without_the_memo() -> None:
    import hashlib

    from triage.linking.features import token_codes

    words = ["工资", "拖欠", "工资", "杨家坪", "a"]
    expected = [int.from_bytes(hashlib.blake2b(w.encode("utf-8"), digest_size=8).digest(), "little") for w in words]
    assert token_codes(words).tolist() == expected
    assert token_codes(words).tolist() == expected  # memoised the second time
