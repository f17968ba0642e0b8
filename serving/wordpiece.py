"""BERT input ids for the transformer heads, without `transformers` at serving time.

`WordPieceTokenizer` reproduces transformers' `BertTokenizer` (BasicTokenizer: clean text, split
CJK characters, optional lowercasing + accent stripping, split punctuation; then greedy
longest-match-first WordPiece) so a model fine-tuned from a checkpoint directory sees the same ids
in serving as in training. Training uses this same class (one tokenizer for both, like
`segment()`); tests compare it with `BertTokenizer` on the project's texts.

Models trained from scratch use a character vocabulary built from the corpus
(`build_char_vocab`): every frequent character, plus "##c" continuations for non-CJK characters
so Latin words and numbers split into characters instead of becoming [UNK].
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


class WordPieceTokenizer:
    """Text → [CLS] pieces [SEP] ids, truncated to `max_length`, padded per batch with [PAD] (id of the vocab)."""

    def __init__(self, vocab: list[str], *, lowercase: bool = False, max_length: int = 256,
                 max_chars_per_word: int = 100) -> None:
        missing = [t for t in SPECIAL_TOKENS if t not in vocab and t != "[MASK]"]
        if missing:
            raise ValueError(f"vocabulary lacks the special token(s) {', '.join(missing)}")
        if max_length < 3:
            raise ValueError("max_length must leave room for [CLS], one piece and [SEP]")
        self.vocab = {tok: i for i, tok in enumerate(vocab)}
        self.lowercase = lowercase
        self.max_length = max_length
        self.max_chars_per_word = max_chars_per_word
        self.pad_id = self.vocab["[PAD]"]
        self.unk_id = self.vocab["[UNK]"]
        self.cls_id = self.vocab["[CLS]"]
        self.sep_id = self.vocab["[SEP]"]

    @classmethod
    def from_file(cls, path: Path, **kwargs: object) -> WordPieceTokenizer:
        """Read a BERT vocab.txt (one token per line, id = line number)."""
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls(lines, **kwargs)  # type: ignore[arg-type]

    # -- BasicTokenizer ---------------------------------------------------------------------------

    def basic_tokens(self, text: str) -> list[str]:
        out: list[str] = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_whitespace(ch):
                out.append(" ")
            elif _is_cjk(cp):
                out += [" ", ch, " "]
            else:
                out.append(ch)
        tokens: list[str] = []
        for word in "".join(out).split():
            if self.lowercase:
                word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
            current: list[str] = []
            for ch in word:
                if _is_punctuation(ch):
                    if current:
                        tokens.append("".join(current))
                        current = []
                    tokens.append(ch)
                else:
                    current.append(ch)
            if current:
                tokens.append("".join(current))
        return tokens

    # -- WordPiece --------------------------------------------------------------------------------

    def _pieces(self, word: str) -> list[int]:
        if len(word) > self.max_chars_per_word:
            return [self.unk_id]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk_id]
            ids.append(found)
            start = end
        return ids

    def ids(self, text: str) -> list[int]:
        """[CLS] + pieces (truncated) + [SEP]."""
        body: list[int] = []
        limit = self.max_length - 2
        for word in self.basic_tokens(text):
            body += self._pieces(word)
            if len(body) >= limit:
                body = body[:limit]
                break
        return [self.cls_id, *body, self.sep_id]

    def encode_batch(self, texts: Iterable[str]) -> dict[str, npt.NDArray[np.int64]]:
        """{"input_ids", "attention_mask"}: int64 [N, longest in the batch]."""
        seqs = [self.ids(t) for t in texts]
        width = max((len(s) for s in seqs), default=2)
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def build_char_vocab(texts: Iterable[str], *, size: int = 6000, min_count: int = 2) -> list[str]:
    """Special tokens, then the most frequent characters (count ≥ min_count), "##c" for non-CJK ones.

    Ordered by frequency (ties by character) so the same texts always give the same vocabulary.
    """
    counts: Counter[str] = Counter()
    tok = WordPieceTokenizer(list(SPECIAL_TOKENS), max_length=3)
    for text in texts:
        for word in tok.basic_tokens(text):
            counts.update(word)
    vocab = list(SPECIAL_TOKENS)
    for ch, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if n < min_count or len(vocab) >= size:
            break
        vocab.append(ch)
        if not _is_cjk(ord(ch)) and not _is_punctuation(ch) and len(vocab) < size:
            vocab.append("##" + ch)
    return vocab
