"""Text normalisation and word segmentation shared by training and serving.

`normalize()` is applied to every petition before anything else: full-width letters and digits
become half-width, traditional characters become simplified (OpenCC t2s), control and zero-width
characters go, whitespace is collapsed. CJK punctuation (，。！？（）) is kept as written: it
carries sentence structure and the case-number patterns expect it.

`segment()` is the ONE tokenizer used for training and for serving, so a model never sees tokens
produced differently from the ones it was trained on.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

MAX_TEXT_CHARS = 20_000

# Full-width ASCII block U+FF01..U+FF5E maps to U+0021..U+007E; we convert letters, digits and a
# few symbols that appear in numbers, codes and plates. CJK punctuation is left alone.
_FULLWIDTH_KEEP = set("，。！？：；（）【】「」『』、《》〈〉～")
_FW_TABLE = {
    cp: cp - 0xFEE0
    for cp in range(0xFF01, 0xFF5F)
    if chr(cp) not in _FULLWIDTH_KEEP and chr(cp) not in "（），：；！？～"
}
_FW_TABLE[0x3000] = 0x20  # ideographic space
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_SPACE_AROUND_NEWLINE = re.compile(r" *\n *")
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}，。！？：；、（）]) (?=[{_CJK}，。！？：；、（）])")

_converter_lock = threading.Lock()


@lru_cache(maxsize=1)
def _t2s():  # type: ignore[no-untyped-def]  # opencc ships no type hints
    import opencc

    return opencc.OpenCC("t2s")


class _CleanTable(dict[int, int | None]):
    """`str.translate` table: full-width forms → half-width (_FW_TABLE), control / format / private-use /
    unassigned code points → removed, everything else kept. Filled lazily, one `unicodedata` look-up per
    distinct code point; after that a text is cleaned at C speed (was a Python loop over the characters)."""

    _MAX_CACHED = 65_536  # distinct code points remembered (a text of random code points cannot grow it further)

    def __missing__(self, cp: int) -> int | None:
        ch = chr(cp)
        # Controls, lone surrogates, private use, unassigned code points and format characters (zero-width
        # joiners, BOM, bidi marks) carry no text; newline and tab stay.
        keep = ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs", "Co", "Cn", "Cf")
        out = cp if keep else None
        if len(self) < self._MAX_CACHED:
            self[cp] = out
        return out


_CLEAN_TABLE = _CleanTable(_FW_TABLE)


def _clean(text: str) -> str:
    """Full-width forms → half-width; control, surrogate, private-use, unassigned and format characters out
    (newline and tab stay)."""
    return text.translate(_CLEAN_TABLE) if not text.isascii() else _ASCII_CONTROLS.sub("", text)


_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

# normalize() runs several times on the same text in one request (the request model's validator, the
# pipeline, the classifier); it is a pure function of its input, so recent results are remembered, keyed by
# the input and by the output (normalize is idempotent: tests/triage/test_text.py).
_MEMO: dict[str, str] = {}
_MEMO_MAX = 256


def normalize(text: str) -> str:
    """Return the canonical form of a petition text.

    >>> normalize("我在ＡＢＣ公司上班，電話１３８ 0000")
    '我在ABC公司上班，电话138 0000'
    """
    out = _MEMO.get(text)
    if out is None:
        out = _normalize(text)
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        _MEMO[text] = out
        _MEMO[out] = out
    return out


def _normalize(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _clean(text)
    with _converter_lock:
        text = _t2s().convert(text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _MANY_NEWLINES.sub("\n\n", text)
    text = _SPACE_BETWEEN_CJK.sub("", text)
    return text.strip()


# --- segmentation ---------------------------------------------------------------------------
#
# Engine: rjieba (the Rust port of jieba: same dictionary, same DAG + HMM algorithm). Measured with
# `bench/segmentation.py` on 3,000 real messages (3.3 MB), both engines with the user dictionary:
# jieba 0.59 MB/s (1.9 ms per text), rjieba 10.5 MB/s (0.11 ms per text), token F1 0.997 (the
# differences are number runs such as "2-3" kept whole). jieba alone would use the whole 5 ms
# budget of one petition; rjieba leaves room for the model. Models record the engine in their
# manifest (`segmenter_id()`) and serving refuses a model segmented by another engine.

DEFAULT_USER_DICT = Path(__file__).resolve().parent.parent / "data" / "dictionaries" / "jieba_user.txt"
SEGMENTER_ENGINES = ("rjieba", "jieba")
DEFAULT_ENGINE = "rjieba"
_WS = re.compile(r"\s+")


def _user_words(user_dict: Path) -> Iterable[tuple[str, int | None, str | None]]:
    """(word, freq, tag) per line of a jieba user dictionary ("word [freq] [tag]")."""
    for line in user_dict.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        tag = parts[-1] if len(parts) > 1 and not parts[-1].isdigit() else None
        yield parts[0], freq, tag


class Segmenter:
    """A jieba-family word segmenter with the project's user dictionary, initialised once per process."""

    def __init__(self, user_dict: Path | None = DEFAULT_USER_DICT, engine: str = DEFAULT_ENGINE) -> None:
        if engine not in SEGMENTER_ENGINES:
            raise ValueError(f"unknown segmenter engine {engine!r}; expected one of {SEGMENTER_ENGINES}")
        self.engine = engine
        self.user_dict = user_dict
        has_dict = user_dict is not None and user_dict.exists()
        if engine == "rjieba":
            import rjieba

            self._rj = rjieba.Jieba()
            if has_dict:
                assert user_dict is not None
                for word, freq, tag in _user_words(user_dict):
                    self._rj.add_word(word, freq, tag)
        else:
            import jieba

            self._jb = jieba.Tokenizer()
            self._jb.initialize()
            if has_dict:
                self._jb.load_userdict(str(user_dict))

    def cut(self, text: str) -> list[str]:
        words = self._rj.cut(text, True) if self.engine == "rjieba" else self._jb.lcut(text, HMM=True)
        return [w for w in words if w.strip()]


@lru_cache(maxsize=1)
def default_segmenter() -> Segmenter:
    import logging

    logging.getLogger("jieba").setLevel(logging.WARNING)
    return Segmenter()


def segmenter_id() -> str:
    """Identify the default segmentation: engine and a hash of the user dictionary it loaded.

    Stored in each model manifest: a model must be served with the tokens it was trained on.
    """
    import hashlib

    seg = default_segmenter()
    digest = "none"
    if seg.user_dict is not None and seg.user_dict.exists():
        digest = hashlib.sha256(seg.user_dict.read_bytes()).hexdigest()[:16]
    return f"{seg.engine}+userdict:{digest}"


def segment(text: str) -> list[str]:
    """Split a normalised text into words (rjieba + the project's user dictionary)."""
    return default_segmenter().cut(text)


def segment_many(texts: Iterable[str]) -> list[list[str]]:
    seg = default_segmenter()
    return [seg.cut(t) for t in texts]


def segmented_text(text: str) -> str:
    """The model input: the words of `segment()` joined by single spaces (no other whitespace).

    The ONNX graphs split on " " only, so a word never contains whitespace here.
    """
    return " ".join(_WS.sub("_", w) for w in segment(text))


class NameScanner:
    """Leftmost-longest, non-overlapping matches of a fixed set of names (scanning on after each match).

    The same matches as one regular expression of all the names, longest alternative first, found by a first-character
    dictionary instead (with the 1,410 organisation names: 0.11 vs 0.21 ms per 500-character petition).
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(n for n in names if n)
        lengths: dict[str, set[int]] = {}
        for name in self.names:
            lengths.setdefault(name[0], set()).add(len(name))
        self._lengths = {c: sorted(ls, reverse=True) for c, ls in lengths.items()}

    def find(self, text: str) -> list[tuple[int, int]]:
        out = []
        names, lengths = self.names, self._lengths
        i, n = 0, len(text)
        while i < n:
            for length in lengths.get(text[i], ()):
                if i + length <= n and text[i:i + length] in names:
                    out.append((i, i + length))
                    i += length
                    break
            else:
                i += 1
        return out
