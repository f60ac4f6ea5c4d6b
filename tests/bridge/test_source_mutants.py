"""The broken trainers of source_mutants.py still apply to the current source (each substitution finds
its text exactly once and yields valid Python that differs from the original), so
`python -m tests.bridge.run_mutants` keeps checking what it claims to. Which tests catch each mutant:
tests/bridge/run_mutants.py prints the table."""

import pytest

from .source_mutants import MUTANTS, PACKAGE, apply

ISSUE_24 = {
    "intra term sign flipped",
    "intra term between the wrong pairs",
    "one-directional InfoNCE",
    "tau2 = tau3 = 1",
    "tau1 = 1",
    "no completion noise",
    "no re-normalisation",
    "memories swapped between the spaces",
    "L_avc only",
    "L_ttc only",
    "random consistency",
}


def test_the_table_holds_the_eleven_broken_trainers_of_issue_24():
    assert set(MUTANTS) == ISSUE_24
    assert all(MUTANTS.values())


@pytest.mark.parametrize(
    "variant", [v for variants in MUTANTS.values() for v in variants], ids=lambda v: v.name.replace(" ", "-")
)
def test_each_mutation_applies_to_the_current_source(variant):
    mutated = apply(variant)
    assert mutated
    for name, text in mutated.items():
        assert text != (PACKAGE / name).read_text(encoding="utf-8")
