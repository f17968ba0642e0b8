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


def _strip_controls(text: str) -> str:
    out = []
    for ch in text:
        if ch in "\n\t":
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Co", "Cn"):
            # Controls, lone surrogates, private use and unassigned code points carry no text.
            continue
        if cat == "Cf":  # format characters: zero-width joiners, BOM, bidi marks
            continue
        out.append(ch)
    return "".join(out)


def normalize(text: str) -> str:
    """Return the canonical form of a petition text.

    >>> normalize("我在ＡＢＣ公司上班，電話１３８ 0000")
    '我在ABC公司上班，电话138 0000'
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_FW_TABLE)
    text = _strip_controls(text)
    with _converter_lock:
        text = _t2s().convert(text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _MANY_NEWLINES.sub("\n\n", text)
    text = _SPACE_BETWEEN_CJK.sub("", text)
    return text.strip()


# --- segmentation ---------------------------------------------------------------------------

DEFAULT_USER_DICT = Path(__file__).resolve().parent.parent / "data" / "dictionaries" / "jieba_user.txt"


class Segmenter:
    """jieba with the project's user dictionary, initialised once per process."""

    def __init__(self, user_dict: Path | None = DEFAULT_USER_DICT) -> None:
        import jieba

        self._tokenizer = jieba.Tokenizer()
        self._tokenizer.initialize()
        if user_dict is not None and user_dict.exists():
            self._tokenizer.load_userdict(str(user_dict))
        self.user_dict = user_dict

    def cut(self, text: str) -> list[str]:
        return [t for t in self._tokenizer.lcut(text, HMM=True) if t.strip()]


@lru_cache(maxsize=1)
def default_segmenter() -> Segmenter:
    import logging

    logging.getLogger("jieba").setLevel(logging.WARNING)
    return Segmenter()


def segment(text: str) -> list[str]:
    """Split a normalised text into words (jieba + the project's user dictionary)."""
    return default_segmenter().cut(text)


def segment_many(texts: Iterable[str]) -> list[list[str]]:
    seg = default_segmenter()
    return [seg.cut(t) for t in texts]
