"""Text-derived link features: MinHash-LSH band hashes and a semantic vector (numpy only).

`LinkFeaturizer.features(text)` gives what a CaseIndex stores for one case (triage/linking/index.py):

* **bands** — MinHash over character 3-gram shingles of the text without whitespace and
  punctuation (`NUM_PERM` permutations), cut into `BANDS` bands of `ROWS` rows; each band is
  hashed (blake2b, 8 bytes) to a signed 64-bit integer that also encodes the band number, so
  two cases sharing any band value are LSH candidates. With 32 bands × 4 rows a pair at character
  3-gram Jaccard 0.5 shares a band with probability 0.88, at 0.3 with 0.23.
* **vector** — a float32 L2-normalised vector from the encoder in the linker's model directory
  (`HashedTfidfEncoder`: word TF-IDF with idf learned on the corpus and public messages, signed
  feature hashing to 512 dimensions; chosen by measurement, see training/linking.py), or None when
  the featurizer has no encoder.

Everything is deterministic across processes and machines: shingles are hashed from their code
points with fixed integer mixing (no Python `hash()`), permutations come from a fixed seed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from triage.errors import ArtifactMismatchError
from triage.linking.index import LinkFeatures

NUM_PERM = 128
BANDS = 32
ROWS = NUM_PERM // BANDS
SHINGLE = 3
MINHASH_SEED = 20260301
MERSENNE = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)
FEATURIZER_VERSION = f"minhash{NUM_PERM}x{BANDS}-k{SHINGLE}"

DEFAULT_LINKER_DIR = Path(__file__).resolve().parents[2] / "models" / "default" / "linker"
ENCODER_FILE = "encoder.npz"

_DROP = re.compile(r"[\s\W_]+", re.UNICODE)  # whitespace, punctuation, symbols


def _mix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser: a fixed, well-spread 64-bit mix (uint64 arithmetic wraps by definition)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def codepoints(text: str) -> npt.NDArray[np.uint64]:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def ngram_codes(cps: npt.NDArray[np.uint64], n: int) -> npt.NDArray[np.uint64]:
    """One 64-bit code per character n-gram (n ≤ 3 is exact: 21 bits per code point), mixed."""
    if len(cps) < n:
        return np.zeros(0, dtype=np.uint64)
    code = np.full(len(cps) - n + 1, np.uint64(n), dtype=np.uint64)
    for i in range(n):
        code = (code << np.uint64(21)) ^ cps[i:len(cps) - n + 1 + i]
    return _mix64(code)


def shingle_text(text: str) -> str:
    return _DROP.sub("", text)


_rng = np.random.default_rng(MINHASH_SEED)
_PERM_A = _rng.integers(1, int(MERSENNE), size=NUM_PERM, dtype=np.uint64)
_PERM_B = _rng.integers(0, int(MERSENNE), size=NUM_PERM, dtype=np.uint64)


def minhash(text: str) -> npt.NDArray[np.uint64]:
    """MinHash signature (NUM_PERM uint64 values < 2^32) of the text's character 3-gram set."""
    cps = codepoints(shingle_text(text))
    shingles = ngram_codes(cps, SHINGLE) if len(cps) >= SHINGLE else ngram_codes(cps, max(1, len(cps)))
    if shingles.size == 0:
        return np.full(NUM_PERM, MAX_HASH, dtype=np.uint64)
    hv = np.unique(shingles & MAX_HASH)  # 32-bit shingle hashes, as datasketch does
    with np.errstate(over="ignore"):
        ph = ((hv[:, None] * _PERM_A[None, :] + _PERM_B[None, :]) % MERSENNE) & MAX_HASH
    return ph.min(axis=0)


def band_hashes(signature: npt.NDArray[np.uint64]) -> tuple[int, ...]:
    """One signed 64-bit hash per band; the band number is part of the hashed bytes."""
    out = []
    for b in range(BANDS):
        h = hashlib.blake2b(digest_size=8, person=b"triage-lsh")
        h.update(b.to_bytes(2, "little"))
        h.update(signature[b * ROWS:(b + 1) * ROWS].astype("<u8").tobytes())
        out.append(int.from_bytes(h.digest(), "little", signed=True))
    return tuple(out)


def signature_jaccard(a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64]) -> float:
    return float(np.mean(a == b))


@runtime_checkable
class Encoder(Protocol):
    version: str
    dim: int

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """float32 [len(texts), dim], rows L2-normalised (zero rows stay zero)."""


_PUNCT_TOKEN = re.compile(r"^[\W_]+$", re.UNICODE)


def word_tokens(text: str) -> list[str]:
    """Words of `segment()` without whitespace/punctuation tokens (the encoder's analyzer)."""
    return list(_word_tokens(text))


@functools.lru_cache(maxsize=16)
def _word_tokens(text: str) -> tuple[str, ...]:
    # Memoised for the few latest texts: the link stage reads the petition's words twice (its vector, its view).
    from triage.text import segment

    return tuple(w for w in segment(text) if not _PUNCT_TOKEN.match(w))


_TOKEN_CODES: dict[str, int] = {}
_TOKEN_CODES_MAX = 200_000  # words are few (a vocabulary); the memo is dropped whole when it grows past this


def _token_code(t: str) -> int:
    code = _TOKEN_CODES.get(t)
    if code is None:
        code = int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little")
        if len(_TOKEN_CODES) >= _TOKEN_CODES_MAX:
            _TOKEN_CODES.clear()
        _TOKEN_CODES[t] = code
    return code


def token_codes(tokens: Sequence[str]) -> npt.NDArray[np.uint64]:
    """A stable 64-bit code per token (blake2b of its UTF-8 bytes; memoised per word, the hashing was a third
    of a view's cost)."""
    return np.fromiter(map(_token_code, tokens), dtype=np.uint64, count=len(tokens))


@dataclass
class HashedTfidfEncoder:
    """Word TF-IDF (sublinear tf, idf learned per hash bucket) → signed feature hashing to `dim` → L2 norm.

    Words come from `segment()` (the project's one tokenizer). A word's bucket is its blake2b code
    modulo `len(idf)`; bucket b adds ±idf·tf to dimension mix64(b ^ seed) mod dim with the sign from
    another bit of the same mix, so the projection is fixed by the seed and nothing but `idf` is
    stored. Cosine of two vectors approximates the cosine of their sparse TF-IDF vectors
    (measured in training/linking.py: original retrieved in the top 20 for 98% of dev re-submissions).
    """

    idf: npt.NDArray[np.float32]
    dim: int
    seed: int
    version: str

    def __post_init__(self) -> None:
        mixed = _mix64(np.arange(len(self.idf), dtype=np.uint64) ^ np.uint64(self.seed))
        self._dims = (mixed % np.uint64(self.dim)).astype(np.int64)
        self._signs = np.where((mixed >> np.uint64(63)) == 1, -1.0, 1.0).astype(np.float32)

    @property
    def buckets(self) -> int:
        return int(self.idf.shape[0])

    def bucket_ids(self, tokens: Sequence[str]) -> npt.NDArray[np.int64]:
        """Hash bucket of every token."""
        return (token_codes(tokens) % np.uint64(self.buckets)).astype(np.int64)

    def tfidf(self, text: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Sparse L2-normalised TF-IDF of one text: (sorted bucket ids, weights)."""
        return self.tfidf_of_buckets(self.bucket_ids(word_tokens(text)))

    def tfidf_of_buckets(self, buckets: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        if buckets.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        uniq, counts = np.unique(buckets, return_counts=True)
        w = ((1.0 + np.log(counts)) * self.idf[uniq]).astype(np.float32)
        norm = float(np.linalg.norm(w))
        return uniq, (w / norm if norm > 0 else w)

    def project(self, ids: npt.NDArray[np.int64], weights: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        v = np.bincount(self._dims[ids], weights=weights * self._signs[ids], minlength=self.dim).astype(np.float32)
        norm = float(np.linalg.norm(v))
        return v / norm if norm > 0 else v

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = self.project(*self.tfidf(t))
        return out

    @classmethod
    def load(cls, path: Path) -> HashedTfidfEncoder:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("kind") != "hashed-word-tfidf":
                raise ArtifactMismatchError(f"{path}: unknown encoder kind {meta.get('kind')!r}; "
                                            "retrain with `triage train-linker`.")
            return cls(idf=z["idf"].astype(np.float32), dim=int(meta["dim"]), seed=int(meta["seed"]),
                       version=str(meta["version"]))

    def save(self, path: Path) -> None:
        meta = json.dumps({"kind": "hashed-word-tfidf", "version": self.version, "dim": self.dim, "seed": self.seed})
        np.savez_compressed(path, idf=self.idf.astype(np.float16), meta=np.asarray(meta))


def sparse_cosine(a: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
                  b: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]) -> float:
    """Cosine of two sparse L2-normalised vectors given as (sorted ids, weights).

    The shared ids by binary search (a few µs; np.intersect1d sorts both arrays again): the same
    products in the same (ascending id) order as before, so the same float result."""
    if a[0].size == 0 or b[0].size == 0:
        return 0.0
    pos = np.searchsorted(a[0], b[0])
    np.minimum(pos, a[0].size - 1, out=pos)
    hit = a[0][pos] == b[0]
    if not hit.any():
        return 0.0
    return float(np.dot(a[1][pos[hit]], b[1][hit]))


def sparse_cosines(a: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
                   bs: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]) -> list[float]:
    """`[sparse_cosine(a, b) for b in bs]`, with the id matching done once for all of bs.

    Each cosine is still one np.dot of the same shared weights in the same order (contiguous slices of
    the gathered arrays), so every value equals sparse_cosine's."""
    out = [0.0] * len(bs)
    if a[0].size == 0 or not bs:
        return out
    sizes = np.fromiter((b[0].size for b in bs), dtype=np.intp, count=len(bs))
    if not sizes.any():
        return out
    ids = np.concatenate([b[0] for b in bs])
    pos = np.searchsorted(a[0], ids)
    np.minimum(pos, a[0].size - 1, out=pos)
    hit = a[0][pos] == ids
    qa = a[1][pos[hit]]
    cb = np.concatenate([b[1] for b in bs])[hit]
    shared = np.zeros(hit.size + 1, dtype=np.intp)
    np.cumsum(hit, out=shared[1:])
    ends = shared[np.cumsum(sizes)].tolist()  # shared ids before each b's end
    start = 0
    for i, end in enumerate(ends):
        if end > start:
            out[i] = float(np.dot(qa[start:end], cb[start:end]))
        start = end
    return out


class LinkFeaturizer:
    """Band hashes and semantic vector of one normalised text (the CaseIndex's LinkFeatures)."""

    def __init__(self, encoder: Encoder | None = None) -> None:
        self.encoder = encoder
        self.version = FEATURIZER_VERSION + (f"+{encoder.version}" if encoder else "")

    @property
    def dim(self) -> int | None:
        return self.encoder.dim if self.encoder else None

    def signature(self, text: str) -> npt.NDArray[np.uint64]:
        return minhash(text)

    def features(self, text: str) -> LinkFeatures:
        """LinkFeatures of one normalised text (triage.text.normalize)."""
        vec = self.encoder.encode([text])[0] if self.encoder else None
        return LinkFeatures(bands=band_hashes(minhash(text)), vector=vec)

    def features_many(self, texts: Sequence[str]) -> list[LinkFeatures]:
        vecs = self.encoder.encode(texts) if self.encoder else [None] * len(texts)
        return [LinkFeatures(bands=band_hashes(minhash(t)), vector=v) for t, v in zip(texts, vecs, strict=True)]


def load_encoder(model_dir: Path = DEFAULT_LINKER_DIR) -> Encoder:
    """The encoder of a linker model directory.

    Raises:
        ArtifactMismatchError: the directory has no encoder artifact.
    """
    path = model_dir / ENCODER_FILE
    if not path.exists():
        raise ArtifactMismatchError(
            f"No linker encoder at {path}. Train one with `triage train-linker` or point the linker at models/default/linker."
        )
    return HashedTfidfEncoder.load(path)


def load_default_featurizer(model_dir: Path = DEFAULT_LINKER_DIR) -> LinkFeaturizer:
    """The featurizer of the linker model directory (MinHash + its encoder)."""
    return LinkFeaturizer(load_encoder(model_dir))
