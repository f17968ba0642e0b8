"""TrainConfig: every hyperparameter of `triage train`, loaded from training/configs/*.toml.

A head is a weighted sum of linear "members", each a TF-IDF vectoriser (word n-grams over the
segmented text, or character n-grams) with its own linear classifier. The sum of linear models
over a feature union is itself one linear model, so the ensemble exports as a single
FeatureUnion → LogisticRegression graph; calibration (temperature and class biases) folds into
the same coefficients.
"""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
BASE_CONFIG = CONFIG_DIR / "base.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemberConfig(_Strict):
    name: str = Field(description="Member name (used in logs and the feature union)")
    analyzer: Literal["word", "char"] = Field(description="word: n-grams of segment() words; char: character n-grams")
    ngram_min: int = Field(1, ge=1, description="Smallest n-gram")
    ngram_max: int = Field(2, ge=1, le=5, description="Largest n-gram")
    min_df: int = Field(2, ge=1, description="Drop n-grams seen in fewer documents")
    max_features: int | None = Field(None, ge=100, description="Keep the most frequent n-grams (artifact size)")
    binary: bool = Field(True, description="Binary term frequency (sublinear tf does not convert to ONNX)")
    classifier: Literal["svc", "nbsvm", "lr", "sgd"] = Field(
        "svc", description="LinearSVC, NB-scaled one-vs-rest LinearSVC (NBSVM), LogisticRegression or SGD (modified huber)")
    nb_alpha: float = Field(1.0, gt=0, description="Smoothing of the naive-Bayes ratios (nbsvm)")
    C: float = Field(1.0, gt=0, description="Inverse regularisation for svc/lr")
    alpha: float = Field(3e-5, gt=0, description="Regularisation for sgd")
    weight: float = Field(1.0, gt=0, description="Weight of this member's scores in the head's sum")


def matches_any(shown_path: str, patterns: list[str]) -> bool:
    """Whether the --data file `shown_path` (relative to the repository) matches one of the fnmatch `patterns`."""
    return any(fnmatch(shown_path, pattern) for pattern in patterns)


class CalibrationConfig(_Strict):
    method: Literal["temperature", "temperature_bias", "none"] = Field(
        "temperature_bias", description="Fit on out-of-fold training scores; folded into the exported coefficients"
    )
    folds: int = Field(5, ge=2, le=20, description="Folds for the out-of-fold scores")
    bias_l2: float = Field(0.01, ge=0, description="L2 penalty on the class biases")
    ece_bins: int = Field(15, ge=2, description="Equal-width confidence bins for the expected calibration error")
    domains: list[str] = Field(
        default_factory=list, description="fnmatch patterns of --data files (as in `data_weights`), each one domain; "
                                          "the rows no pattern matches are one more. With any, every domain carries the "
                                          "same total weight in the calibration fit, so the class prior the calibrated "
                                          "probabilities imply does not move when one domain's data grows. Empty: "
                                          "every row counts once")

    def domain_weights(self, shown_paths: list[str]) -> list[float] | None:
        """Per-row calibration weights (mean 1) for rows from the --data files `shown_paths`; None without `domains`."""
        if not self.domains:
            return None
        domain = [next((i for i, pat in enumerate(self.domains) if fnmatch(p, pat)), -1) for p in shown_paths]
        counts = {d: domain.count(d) for d in set(domain)}
        raw = [1.0 / counts[d] for d in domain]
        scale = len(raw) / sum(raw)
        return [w * scale for w in raw]


class InputConfig(_Strict):
    """How a record becomes the string every head sees (recorded in the model manifest's `input`)."""

    title_repeat: int = Field(
        0, ge=0, le=5, description="Put the record's optional `title` this many times before its text, joined by 。 "
                                   "(triage.manifest.compose_input; records without a title: the text alone). "
                                   "0: the text alone")


class HeadOverride(_Strict):
    members: list[MemberConfig] | None = Field(None, description="Members for this head only")
    exclude_data: list[str] = Field(
        default_factory=list, description="This head does not train on the rows of matching --data files (fnmatch "
                                          "patterns on the path relative to the repository, as in `data_weights`)")
    data_weights: dict[str, float] = Field(
        default_factory=dict, description="This head's sample weights of matching --data files, looked up before the "
                                          "top-level `data_weights` (same patterns)")
    target_data: list[str] = Field(
        default_factory=list, description="Domain adaptation (Daumé's feature augmentation): the rows of matching --data "
                                          "files are the target domain (texts like the served ones), the others the "
                                          "source; every feature gets a shared, a source and a target copy, and the "
                                          "exported model keeps shared + target weights. Empty: no adaptation")
    second_choice_weight: float | None = Field(
        None, ge=0, le=1, description="This head's `second_choice_weight` (None: the top-level value)")


class TrainConfig(_Strict):
    seed: int = Field(20260301, description="Seed of every random choice (folds, SGD)")
    class_weight: Literal["balanced", "none"] = Field("balanced", description="Class weighting of the classifiers")
    members: list[MemberConfig] = Field(min_length=1, description="Default members of every head")
    heads: dict[str, HeadOverride] = Field(default_factory=dict, description="Per-field overrides")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    input: InputConfig = Field(default_factory=InputConfig, description="Model input built from text (+ title)")
    parity_tolerance: float = Field(1e-4, gt=0, description="Largest allowed |p_onnx - p_sklearn|")
    parity_rows: int = Field(500, ge=1, description="Rows of the dev (or train) data used for the parity check")
    data_weights: dict[str, float] = Field(
        default_factory=dict, description="Sample weight of the rows of matching --data files (fnmatch pattern on the "
                                          "path relative to the repository → weight; default 1)")
    second_choice_weight: float = Field(
        0.0, ge=0, le=1, description="Soft labels from the labellers' second choices: a row whose `second_choice` "
                                     "names another label for the head's field (real messages the labeller was not "
                                     "sure of) also trains as that label, at this fraction of the row's weight, "
                                     "never scored by the calibration (training.datasets.second_choice_rows). "
                                     "0: gold labels only")
    shared_vocabulary: bool = Field(
        False, description="Members with the same vectoriser settings in different heads share one vectoriser fitted on "
                           "the union of those heads' training texts (one TfIdfVectorizer node in the graph: faster)")

    def weight_of(self, shown_path: str, field: str | None = None) -> float:
        """The sample weight of the --data file `shown_path` (relative to the repository) for head `field`: the first
        matching pattern of the head's own `data_weights`, else of the top-level `data_weights`, else 1."""
        override = self.heads.get(field) if field else None
        for table in (override.data_weights if override else {}, self.data_weights):
            hit = next((w for pattern, w in table.items() if fnmatch(shown_path, pattern)), None)
            if hit is not None:
                return hit
        return 1.0

    def excludes(self, field: str, shown_path: str) -> bool:
        """Whether head `field` leaves out the rows of the --data file `shown_path` (relative to the repository)."""
        override = self.heads.get(field)
        return bool(override) and matches_any(shown_path, override.exclude_data)

    def adapts(self, field: str) -> bool:
        """Whether head `field` trains with domain adaptation (it has `target_data` patterns)."""
        override = self.heads.get(field)
        return bool(override and override.target_data)

    def is_target(self, field: str, shown_path: str) -> bool:
        """Whether the --data file `shown_path` is in head `field`'s target domain (matches its `target_data`)."""
        override = self.heads.get(field)
        return bool(override) and matches_any(shown_path, override.target_data)

    def second_choice_for(self, field: str) -> float:
        """Head `field`'s second-choice weight fraction: its own override, else the top-level value."""
        override = self.heads.get(field)
        if override is not None and override.second_choice_weight is not None:
            return override.second_choice_weight
        return self.second_choice_weight

    def members_for(self, field: str) -> list[MemberConfig]:
        override = self.heads.get(field)
        return override.members if override and override.members else self.members


def _set_path(data: dict[str, Any], dotted: str, raw: str) -> None:
    keys = dotted.split(".")
    node: Any = data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    try:
        value: Any = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def load_config(path: Path = BASE_CONFIG, overrides: list[str] | None = None) -> TrainConfig:
    """Read a TOML config and apply `key.path=value` overrides (`members.0.C=0.5`).

    Raises:
        ValueError: an override is not of the form key=value, or the result is not a valid config.
    """
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        _set_path(data, key.strip(), raw.strip())
    return TrainConfig.model_validate(data)
