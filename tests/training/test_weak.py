"""Weak labels (training/weak.py): office names in replies → department, titles → request type, exclusions."""

from __future__ import annotations

import json
from pathlib import Path

from training.weak import build, reply_department, title_request_type


def test_reply_office_votes_and_abstains() -> None:
    assert reply_department("您好！经A7县住建局调查核实，现回复如下：……感谢您对我局工作的支持。") == "housing"
    assert reply_department("您反映的问题已转县人社局，县劳动保障监察大队已责令公司支付工资。") == "hrss"
    assert reply_department("交警大队已安排警力疏导。") == "police"
    # generic bodies carry no vote; a tie between two departments abstains
    assert reply_department("您好！经洞井街道调查了解，现回复如下：已督促物业整改。") is None
    assert reply_department("已转县教育局和县卫生局共同处理。") is None
    assert reply_department("") is None


def test_title_request_type() -> None:
    assert title_request_type("咨询A市公租房申请条件") == "enquiry"
    assert title_request_type("投诉K7县万佳名城未经合法验收就交房") == "complaint"
    assert title_request_type("举报某村干部侵占集体资金") == "report"
    assert title_request_type("关于增开公交线路的建议") == "proposal"
    assert title_request_type("A市某小区停车难") is None
    assert title_request_type(None) is None


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def test_build_leaves_out_labelled_messages_and_their_reposts(tmp_path: Path) -> None:
    public, corpus = tmp_path / "public", tmp_path / "corpus"
    public.mkdir()
    (corpus / "real").mkdir(parents=True)
    body = "小区门口的道路坑洼不平已经半年了，下雨天积水严重，老人小孩出行很不方便，希望有关部门尽快修复。"
    other = "某公司拖欠我们二十多名工人三个月的工资共计十五万元，多次讨要无果，请求劳动部门帮助追讨。"
    _write(public / "teddy2020_replies.jsonl", [
        {"id": 1, "title": "t", "text": body, "reply": "经县交通运输局核实，已安排维修。"},
        {"id": 2, "title": "t", "text": body + "谢谢！", "reply": "经县交通运输局核实，已安排维修。"},  # re-post of 1
        {"id": 3, "title": "t", "text": other, "reply": "已转县人社局，劳动保障监察大队已立案。"},
        {"id": 4, "title": "t", "text": "无关的留言内容，说明一下情况。", "reply": "您好，已收悉。"},
    ])
    _write(corpus / "real" / "labels_X.jsonl", [{"source": "teddy2020_replies", "key": "1", "track": "admin_duty",
                                                   "department": "transport", "request_type": "complaint"}])
    rows, quality = build(public, corpus)
    assert [r["key"] for r in rows] == ["3"]  # 1 labelled, 2 a near-duplicate of 1, 4 abstains
    assert rows[0]["department"] == "hrss" and rows[0]["label_source"] == "weak:reply_office"
    assert quality["labelled_replies"] == 1 and quality["accuracy_where_covered"] == 1.0
    assert quality["dropped_near_duplicates_of_labelled"] == 1
