from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from triage.errors import TaxonomyError
from triage.taxonomy import DATA_DIR, load_taxonomy

SHARED = Path(__file__).resolve().parents[3] / "shared"


def test_taxonomy_covers_every_code_in_the_contract(taxonomy) -> None:  # type: ignore[no-untyped-def]
    contract = (SHARED / "TAXONOMY.md").read_text(encoding="utf-8") if SHARED.exists() else None
    assert taxonomy.codes("tracks") == [
        "judicial", "litigation", "arbitration", "admin_review", "admin_duty", "discipline", "mediation",
        "suggestion", "petition",
    ]
    assert len(taxonomy.codes("departments")) == 28
    assert taxonomy.codes("request_types") == ["complaint", "report", "enquiry", "proposal", "help"]
    assert {"group", "risk", "repeat", "confidential", "pii_sensitive", "place_unknown"} <= set(taxonomy.codes("flags"))
    if contract is not None:
        # Every department code in TAXONOMY.md §2's table is known, and no other.
        section = contract.split("## 2.")[1].split("## 3.")[0]
        codes = [c for c in re.findall(r"^\| ([a-z_]+) \|", section, flags=re.M) if c != "code"]
        assert sorted(codes) == sorted(taxonomy.codes("departments"))


def test_gazetteer_has_the_37_districts(taxonomy) -> None:  # type: ignore[no-untyped-def]
    g = taxonomy.gazetteer
    assert len(g.districts) == 37
    kinds = [d.kind for d in g.districts]
    assert (kinds.count("区"), kinds.count("县"), kinds.count("自治县")) == (25, 8, 4)
    assert "江北区" not in g.names and "渝北区" not in g.names
    assert all(d in g.names for d in g.subdivisions)


@pytest.mark.parametrize(
    ("raw", "sub", "expected"),
    [
        ("渝北区", "回兴街道", "两江新区"),
        ("渝北区", "统景镇", "北碚区"),
        ("渝北", "茨竹镇", "北碚区"),
        ("江北区", None, "两江新区"),
        ("北碚区", "蔡家岗街道", "两江新区"),
        ("北碚区", "天生街道", "北碚区"),
        ("开县", None, "开州区"),
        ("石柱县", None, "石柱土家族自治县"),
        ("万盛经开区", None, "綦江区"),
        ("A2区", None, None),
    ],
)
def test_gazetteer_resolves_legacy_names(taxonomy, raw, sub, expected) -> None:  # type: ignore[no-untyped-def]
    assert taxonomy.gazetteer.resolve(raw, sub) == expected


@pytest.fixture()
def data_copy(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(DATA_DIR, target, ignore=shutil.ignore_patterns("corpus"))
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"fixture text {old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_unknown_department_code_is_reported(data_copy: Path) -> None:
    edit(data_copy / "responsibility" / "departments.yaml", "code: sport", "code: sports")
    with pytest.raises(TaxonomyError, match=r"departments.yaml: unknown department code 'sports'"):
        load_taxonomy(data_copy)


def test_missing_responsibility_entry_is_reported(data_copy: Path) -> None:
    p = data_copy / "responsibility" / "departments.yaml"
    text = p.read_text(encoding="utf-8")
    start = text.index("  - code: sport\n")
    end = text.index("  - code: economy\n")
    p.write_text(text[:start] + text[end:], encoding="utf-8")
    with pytest.raises(TaxonomyError, match=r"no responsibility entry for department\(s\) sport"):
        load_taxonomy(data_copy)


def test_duplicate_track_code_is_reported(data_copy: Path) -> None:
    edit(data_copy / "taxonomy" / "labels.yaml", "code: litigation", "code: judicial")
    with pytest.raises(TaxonomyError, match=r"labels.yaml: duplicate tracks code 'judicial'"):
        load_taxonomy(data_copy)


def test_broken_legacy_reference_is_reported(data_copy: Path) -> None:
    edit(data_copy / "places" / "chongqing.yaml", "大湾镇: 北碚区", "大湾镇: 北培区")
    with pytest.raises(TaxonomyError, match=r"legacy '渝北区' except '大湾镇' maps to unknown '北培区'"):
        load_taxonomy(data_copy)


def test_version_mismatch_is_reported(data_copy: Path) -> None:
    edit(data_copy / "policy" / "rules.toml", 'taxonomy_version = "2"', 'taxonomy_version = "1"')
    with pytest.raises(TaxonomyError, match=r"rules.toml: taxonomy_version '1' differs"):
        load_taxonomy(data_copy)


def test_unknown_field_is_reported_with_its_location(data_copy: Path) -> None:
    edit(data_copy / "taxonomy" / "labels.yaml", "  - code: litigation\n", "  - code: litigation\n    colour: red\n")
    with pytest.raises(TaxonomyError, match=r"labels.yaml: tracks.1.colour: Extra inputs are not permitted"):
        load_taxonomy(data_copy)


def test_threshold_out_of_range_is_reported(data_copy: Path) -> None:
    edit(data_copy / "policy" / "rules.toml", "tau_auto = 0.85", "tau_auto = 85")
    with pytest.raises(TaxonomyError, match=r"thresholds.tau_auto must be a number in \[0, 1\]"):
        load_taxonomy(data_copy)


def test_duplicate_rule_id_is_reported(data_copy: Path) -> None:
    edit(data_copy / "policy" / "rules.toml", 'id = "R02"', 'id = "R01"')
    with pytest.raises(TaxonomyError, match=r"duplicate rule id 'R01'"):
        load_taxonomy(data_copy)


def test_unknown_subdivision_district_is_reported(data_copy: Path) -> None:
    p = data_copy / "places" / "subdivisions.yaml"
    p.write_text(p.read_text(encoding="utf-8") + "  渝北区: [回兴街道]\n", encoding="utf-8")
    with pytest.raises(TaxonomyError, match=r"subdivisions.yaml: unknown district '渝北区'"):
        load_taxonomy(data_copy)
