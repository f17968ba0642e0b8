"""serving.wordpiece: the BERT tokenizer used for training and serving transformer heads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from serving.wordpiece import SPECIAL_TOKENS, WordPieceTokenizer, build_char_vocab
from triage.text import normalize

ROOT = Path(__file__).resolve().parents[2]
VOCAB = [*SPECIAL_TOKENS, "我", "在", "ab", "##c", "公", "司", "，", "1", "##2", "x"]


def test_basic_tokens_split_cjk_punctuation_and_whitespace() -> None:
    tok = WordPieceTokenizer(VOCAB, lowercase=False, max_length=32)
    assert tok.basic_tokens("我在ABC公司，12号\tx.y") == ["我", "在", "ABC", "公", "司", "，", "12", "号", "x", ".", "y"]
    assert WordPieceTokenizer(VOCAB, lowercase=True).basic_tokens("Café ABC") == ["cafe", "abc"]


def test_ids_wordpiece_unknown_and_specials() -> None:
    tok = WordPieceTokenizer(VOCAB, lowercase=True, max_length=32)
    v = {t: i for i, t in enumerate(VOCAB)}
    # "ABC" → ab ##c; "12" → 1 ##2; "号" and "zz" are not in the vocabulary → [UNK]
    assert tok.ids("我在ABC公司，12号 zz") == [v["[CLS]"], v["我"], v["在"], v["ab"], v["##c"], v["公"], v["司"], v["，"],
                                           v["1"], v["##2"], v["[UNK]"], v["[UNK]"], v["[SEP]"]]


def test_truncation_keeps_the_beginning_and_sep() -> None:
    tok = WordPieceTokenizer(VOCAB, max_length=5)
    ids = tok.ids("我在公司我在公司")
    assert len(ids) == 5 and ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    assert ids[1:4] == [VOCAB.index("我"), VOCAB.index("在"), VOCAB.index("公")]


def test_encode_batch_pads_to_longest_with_mask() -> None:
    tok = WordPieceTokenizer(VOCAB, max_length=16)
    enc = tok.encode_batch(["我", "我在公司"])
    assert enc["input_ids"].dtype == np.int64 and enc["input_ids"].shape == (2, 6)
    assert enc["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]]
    assert enc["input_ids"][0, 3:].tolist() == [tok.pad_id] * 3


def test_vocabulary_needs_special_tokens() -> None:
    with pytest.raises(ValueError, match="special token"):
        WordPieceTokenizer(["我", "在"])


def test_char_vocab_is_deterministic_frequency_ordered_with_continuations() -> None:
    texts = ["我在公司上班，电话123", "我在学校，ABC", "我们"]
    vocab = build_char_vocab(texts, size=100, min_count=1)
    assert vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert vocab[len(SPECIAL_TOKENS)] == "我"  # most frequent character first
    assert "1" in vocab and "##1" in vocab and "##我" not in vocab and "##，" not in vocab
    assert vocab == build_char_vocab(list(texts), size=100, min_count=1)
    assert len(build_char_vocab(texts, size=8, min_count=1)) == 8
    assert "电" not in build_char_vocab(texts, size=100, min_count=2)  # seen once


def test_same_ids_as_transformers_bert_tokenizer_on_project_texts() -> None:
    transformers = pytest.importorskip("transformers")
    lines = (ROOT / "data/corpus/written/train.jsonl").read_text(encoding="utf-8").splitlines()[:400]
    texts = [json.loads(x)["text"] for x in lines]
    texts += ["Café ÉCOLE naïve  ABC-123,x.y 😀 \u200b 第３号", "\x00\ufffd hello\tworld\n", ""]
    vocab = build_char_vocab([normalize(t) for t in texts[:300]], size=2500)
    for lowercase in (False, True):
        mine = WordPieceTokenizer(vocab, lowercase=lowercase, max_length=96)
        ref = transformers.BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=lowercase)
        for t in texts:
            assert mine.ids(t) == ref(t, truncation=True, max_length=96)["input_ids"], t[:40]
