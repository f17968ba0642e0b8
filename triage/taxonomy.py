"""Load and validate the domain data files in data/ (the label contract and its companions).

Every file carries `taxonomy_version`; all must agree. Loading fails with a TaxonomyError that
names the file, the entry and what is wrong (unknown code, duplicate, broken reference), so an
engineer editing a YAML file sees exactly which line to fix.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from triage.errors import TaxonomyError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Label(_Strict):
    code: str = Field(pattern=r"^[a-z][a-z_]*$")
    name: str
    definition: str | None = None
    basis: str | None = None
    cues: list[str] = Field(default_factory=list)
    not_: list[str] = Field(default_factory=list, alias="not")
    matters: list[str] = Field(default_factory=list)
    blocking: bool = False


class _LabelFile(_Strict):
    taxonomy_version: str
    tracks: list[Label]
    departments: list[Label]
    request_types: list[Label]
    flags: list[Label]
    statuses: list[Label]


class Department(_Strict):
    code: str
    official_name: str
    short_name: str
    district_counterpart: str | None = None
    city_only: bool = False
    units: list[str] = Field(default_factory=list)
    duties: str
    typical_matters: list[str]


class _DepartmentFile(_Strict):
    taxonomy_version: str
    departments: list[Department]


class District(_Strict):
    name: str
    kind: str = Field(pattern=r"^(区|县|自治县)$")
    aliases: list[str] = Field(default_factory=list)
    id_codes: list[str] = Field(default_factory=list)


class LegacyName(_Strict):
    raw: str
    aliases: list[str] = Field(default_factory=list)
    to: str
    since: str
    except_: dict[str, str] = Field(default_factory=dict, alias="except")


class Zone(_Strict):
    name: str
    aliases: list[str] = Field(default_factory=list)
    district: str
    note: str | None = None


class _PlacesFile(_Strict):
    taxonomy_version: str
    as_of: str
    districts: list[District]
    legacy: list[LegacyName] = Field(default_factory=list)
    zones: list[Zone] = Field(default_factory=list)


class _SubdivisionFile(_Strict):
    taxonomy_version: str
    as_of: str
    subdivisions: dict[str, list[str]]


class RuleEntry(_Strict):
    id: str = Field(pattern=r"^R\d{2}[a-z]?$")
    name: str
    basis: str
    note: str | None = None  # deviations from DOMAIN.md and why
    when: Any = None
    then: Any = None


class _RulesFile(_Strict):
    taxonomy_version: str
    rules_version: str
    thresholds: dict[str, Any]
    rules: list[RuleEntry]
    # Checked in detail by triage.rules (operators, codes, periods) when the decider loads.
    settings: dict[str, Any] = Field(default_factory=dict)
    calendar: dict[str, Any] = Field(default_factory=dict)
    link_statuses: dict[str, list[str]] = Field(default_factory=dict)
    keywords: dict[str, list[str]] = Field(default_factory=dict)
    deadlines: dict[str, Any] = Field(default_factory=dict)
    channel_windows: dict[str, Any] = Field(default_factory=dict)
    guidance: dict[str, Any] = Field(default_factory=dict)


def _read(path: Path) -> Any:
    if not path.exists():
        raise TaxonomyError(f"{path}: file not found")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text(encoding="utf-8"))
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TaxonomyError(f"{path}: cannot be parsed: {exc}") from exc


def _parse(model: type[BaseModel], path: Path) -> Any:
    raw = _read(path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise TaxonomyError(
            f"{path}: {loc}: {first['msg']} ({len(exc.errors())} problem(s) in all)"
        ) from exc


def _unique(path: Path, what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise TaxonomyError(f"{path}: duplicate {what} {v!r}")
        seen.add(v)


@dataclass(frozen=True)
class Gazetteer:
    """Chongqing's 37 区县, their aliases, legacy names, zones and 街道/乡镇."""

    as_of: str
    districts: tuple[District, ...]
    legacy: tuple[LegacyName, ...]
    zones: tuple[Zone, ...]
    subdivisions: dict[str, tuple[str, ...]]

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(d.name for d in self.districts)

    @cached_property
    def alias_to_district(self) -> dict[str, str]:
        """Every current name and alias → official district name (legacy names excluded)."""
        out: dict[str, str] = {}
        for d in self.districts:
            for a in (d.name, *d.aliases):
                out[a] = d.name
        return out

    @cached_property
    def subdivision_to_districts(self) -> dict[str, tuple[str, ...]]:
        """街道/乡镇 name → the district(s) that have one of that name."""
        out: dict[str, list[str]] = {}
        for d, subs in self.subdivisions.items():
            for s in subs:
                out.setdefault(s, []).append(d)
        return {s: tuple(ds) for s, ds in out.items()}

    def resolve(self, raw: str, subdivision: str | None = None) -> str | None:
        """Map a district name as written (current, alias or legacy) to the current district.

        >>> g.resolve("渝北区", "统景镇")  # doctest: +SKIP
        '北碚区'
        """
        for leg in self.legacy:
            if raw in (leg.raw, *leg.aliases):
                if subdivision and subdivision in leg.except_:
                    return leg.except_[subdivision]
                return leg.to
        if raw in self.alias_to_district:
            return self.alias_to_district[raw]
        for z in self.zones:
            if raw in (z.name, *z.aliases):
                return z.district
        return None


@dataclass(frozen=True)
class Taxonomy:
    """The label contract plus responsibility list, gazetteer and rule-file skeleton."""

    version: str
    tracks: tuple[Label, ...]
    departments: tuple[Label, ...]
    request_types: tuple[Label, ...]
    flags: tuple[Label, ...]
    statuses: tuple[Label, ...]
    responsibilities: dict[str, Department]
    gazetteer: Gazetteer
    rules_version: str
    thresholds: dict[str, Any] = field(default_factory=dict)
    rules: tuple[RuleEntry, ...] = ()

    def codes(self, kind: str) -> list[str]:
        """Codes of one label set, in file order: tracks, departments, request_types, flags, statuses."""
        return [label.code for label in getattr(self, kind)]

    def name_of(self, kind: str, code: str) -> str:
        for label in getattr(self, kind):
            if label.code == code:
                return str(label.name)
        raise TaxonomyError(f"unknown {kind} code {code!r}")

    @property
    def field_kinds(self) -> dict[str, str]:
        """Petition gold field → label set."""
        return {"track": "tracks", "department": "departments", "request_type": "request_types"}


def load_taxonomy(data_dir: Path = DATA_DIR) -> Taxonomy:
    """Load every domain data file from `data_dir` and cross-check them.

    Raises:
        TaxonomyError: a file is missing or malformed, a code is unknown or duplicated, a
            reference is broken, or the files disagree on taxonomy_version.
    """
    labels_path = data_dir / "taxonomy" / "labels.yaml"
    dept_path = data_dir / "responsibility" / "departments.yaml"
    places_path = data_dir / "places" / "chongqing.yaml"
    subs_path = data_dir / "places" / "subdivisions.yaml"
    rules_path = data_dir / "policy" / "rules.toml"

    labels: _LabelFile = _parse(_LabelFile, labels_path)
    for kind in ("tracks", "departments", "request_types", "flags", "statuses"):
        _unique(labels_path, f"{kind} code", [lab.code for lab in getattr(labels, kind)])
        _unique(labels_path, f"{kind} name", [lab.name for lab in getattr(labels, kind)])
    version = labels.taxonomy_version

    def same_version(path: Path, v: str) -> None:
        if v != version:
            raise TaxonomyError(
                f"{path}: taxonomy_version {v!r} differs from {labels_path.name} ({version!r}); "
                "update the file to the current label contract"
            )

    depts: _DepartmentFile = _parse(_DepartmentFile, dept_path)
    same_version(dept_path, depts.taxonomy_version)
    dept_codes = [d.code for d in depts.departments]
    _unique(dept_path, "department code", dept_codes)
    known = {lab.code for lab in labels.departments}
    for code in dept_codes:
        if code not in known:
            raise TaxonomyError(f"{dept_path}: unknown department code {code!r} (not in {labels_path.name})")
    missing = sorted(known - set(dept_codes))
    if missing:
        raise TaxonomyError(f"{dept_path}: no responsibility entry for department(s) {', '.join(missing)}")
    for d in depts.departments:
        if d.district_counterpart is None and not d.city_only:
            raise TaxonomyError(f"{dept_path}: {d.code}: give district_counterpart or set city_only: true")
        if d.district_counterpart is not None and "{district}" not in d.district_counterpart:
            raise TaxonomyError(f"{dept_path}: {d.code}: district_counterpart must contain {{district}}")

    places: _PlacesFile = _parse(_PlacesFile, places_path)
    same_version(places_path, places.taxonomy_version)
    names = [d.name for d in places.districts]
    _unique(places_path, "district", names)
    _unique(places_path, "district name or alias", [a for d in places.districts for a in (d.name, *d.aliases)])
    name_set = set(names)
    for leg in places.legacy:
        if leg.to not in name_set:
            raise TaxonomyError(f"{places_path}: legacy {leg.raw!r} maps to unknown district {leg.to!r}")
        for sub, target in leg.except_.items():
            if target not in name_set:
                raise TaxonomyError(f"{places_path}: legacy {leg.raw!r} except {sub!r} maps to unknown {target!r}")
    for z in places.zones:
        if z.district not in name_set:
            raise TaxonomyError(f"{places_path}: zone {z.name!r} refers to unknown district {z.district!r}")

    subdivisions: dict[str, tuple[str, ...]] = {}
    if subs_path.exists():
        subs: _SubdivisionFile = _parse(_SubdivisionFile, subs_path)
        same_version(subs_path, subs.taxonomy_version)
        # The same town name can exist in two districts (走马镇: 九龙坡区 and 万州区), so names
        # are unique only within a district; resolution uses context for the ambiguous ones.
        for district, items in subs.subdivisions.items():
            if district not in name_set:
                raise TaxonomyError(f"{subs_path}: unknown district {district!r} (use the official name)")
            _unique(subs_path, f"subdivision of {district}", items)
            subdivisions[district] = tuple(items)

    rules: _RulesFile = _parse(_RulesFile, rules_path)
    same_version(rules_path, rules.taxonomy_version)
    _unique(rules_path, "rule id", [r.id for r in rules.rules])
    track_codes = {t.code for t in labels.tracks}
    for key, value in rules.thresholds.items():
        if isinstance(value, dict):
            for track, v in value.items():
                if track not in track_codes:
                    raise TaxonomyError(f"{rules_path}: thresholds.{key}: unknown track {track!r}")
                if not isinstance(v, int | float) or not 0 <= v <= 1:
                    raise TaxonomyError(f"{rules_path}: thresholds.{key}.{track} must be a number in [0, 1]")
        elif not isinstance(value, int | float) or not 0 <= value <= 1:
            raise TaxonomyError(f"{rules_path}: thresholds.{key} must be a number in [0, 1]")

    return Taxonomy(
        version=version,
        tracks=tuple(labels.tracks),
        departments=tuple(labels.departments),
        request_types=tuple(labels.request_types),
        flags=tuple(labels.flags),
        statuses=tuple(labels.statuses),
        responsibilities={d.code: d for d in depts.departments},
        gazetteer=Gazetteer(
            as_of=places.as_of,
            districts=tuple(places.districts),
            legacy=tuple(places.legacy),
            zones=tuple(places.zones),
            subdivisions=subdivisions,
        ),
        rules_version=rules.rules_version,
        thresholds=dict(rules.thresholds),
        rules=tuple(rules.rules),
    )
