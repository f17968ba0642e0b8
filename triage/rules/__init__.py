"""Deterministic, versioned decision rules (DOMAIN.md §2, R01–R19) over the model's suggestions.

`load_decider(taxonomy)` reads data/policy/rules.toml and returns the RuleDecider the pipeline's
`decide` stage uses. See engine.py for the evaluation model and conditions.py for the condition
language.
"""

from triage.rules.engine import (
    RULES_PATH,
    RuleDecider,
    RuleFileError,
    RuleOutcome,
    RuleSet,
    load_decider,
    load_rules,
)

__all__ = ["RULES_PATH", "RuleDecider", "RuleFileError", "RuleOutcome", "RuleSet", "load_decider", "load_rules"]
