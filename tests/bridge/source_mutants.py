"""Broken C-MCR trainers as edits of the product source (issue 24): each must turn a test red.

Every mutant is one or more variants, each a list of text substitutions in avsearch/bridge/*.py (the
text to replace must occur exactly once in its file). `python -m tests.bridge.run_mutants` applies each
variant to a copy of the package in a temporary folder and runs the bridge tests against it; the
working tree is never modified. tests/bridge/test_source_mutants.py checks in the normal suite that
every substitution still applies to the current source.

Unlike tests/bridge/mutants.py (config overrides and monkeypatches for the outcome-level check of
test_mutants.py), nothing here goes through the trainer's own switches.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "avsearch" / "bridge"
LOSS_LINE = (  # eq. 10 in loss_terms
    '    terms["loss"] = loss + method.lambda_intra'
    ' * sum((0.5 * terms[f"intra_{s}"] for s in config.intra_sides), zero)'
)


@dataclass(frozen=True)
class Edit:
    file: str  # relative to avsearch/bridge/
    old: str  # must occur exactly once in the file
    new: str


@dataclass(frozen=True)
class Variant:
    name: str  # how this variant breaks the trainer
    edits: tuple[Edit, ...]


def _v(name: str, *edits: tuple[str, str, str]) -> Variant:
    return Variant(name, tuple(Edit(*e) for e in edits))


MUTANTS: dict[str, tuple[Variant, ...]] = {
    "intra term sign flipped": (
        _v("loss - lambda * L_intra", ("train.py", "= loss + method.lambda_intra", "= loss - method.lambda_intra")),
        _v(
            "intra_alignment negated",
            (
                "losses.py",
                "return (overlap - pseudo).norm(dim=-1).mean()",
                "return -(overlap - pseudo).norm(dim=-1).mean()",
            ),
        ),
    ),
    "intra term between the wrong pairs": (
        _v(
            "caption with the other space's pseudo embedding",
            ("train.py", "intra_alignment(t0, v0)", "intra_alignment(t0, v1)"),
            ("train.py", "intra_alignment(t1, v1)", "intra_alignment(t1, v0)"),
        ),
        _v(
            "the inter pairs instead (t^I, t^A) and (v^I, a^A)",
            ("train.py", "intra_alignment(t0, v0)", "intra_alignment(t0, t1)"),
            ("train.py", "intra_alignment(t1, v1)", "intra_alignment(v0, v1)"),
        ),
    ),
    "one-directional InfoNCE": (
        _v(
            "cross-entropy over rows only",
            (
                "losses.py",
                "return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))",
                "return F.cross_entropy(logits, target)",
            ),
        ),
    ),
    "tau2 = tau3 = 1": (
        _v(
            "loss_terms passes 1",
            ("train.py", "info_nce(t0, t1, method.tau2)", "info_nce(t0, t1, 1.0)"),
            ("train.py", "info_nce(v0, v1, method.tau3)", "info_nce(v0, v1, 1.0)"),
        ),
        _v("info_nce ignores tau", ("losses.py", "logits = a @ b.T / tau", "logits = a @ b.T")),
    ),
    "tau1 = 1": (
        _v("consistency_for_sides passes 1", ("train.py", "            config.method.tau1,", "            1.0,")),
        _v("the exact softmax ignores tau", ("consistency.py", "logits = (q @ block.T) / tau", "logits = q @ block.T")),
    ),
    "no completion noise": (
        _v("noise never added", ("losses.py", "x = x + draw * noise_var**0.5", "x = x")),
        _v(
            "completion switches noise off",
            ("train.py", "noise=abl.noise, renorm=abl.renorm", "noise=False, renorm=abl.renorm"),
        ),
    ),
    "no re-normalisation": (
        _v("never re-normalised", ("losses.py", "return F.normalize(x, dim=-1) if renorm else x", "return x")),
        _v(
            "completion switches renorm off",
            ("train.py", "noise=abl.noise, renorm=abl.renorm", "noise=abl.noise, renorm=False"),
        ),
    ),
    "memories swapped between the spaces": (
        _v(
            "eq. 2 draws from the other side's memory",
            (
                "train.py",
                "            data.memory[i],\n            config.method.tau1,",
                "            data.memory[1 - i],\n            config.method.tau1,",
            ),
        ),
        _v(
            "pseudo arrays swapped in the training data",
            ("train.py", "pseudo[0], pseudo[1])", "pseudo[1], pseudo[0])"),
        ),
        _v("pseudo batches swapped in loss_terms", ("train.py", "t0, t1, v0, v1 = batch", "t0, t1, v1, v0 = batch")),
    ),
    "L_avc only": (_v("loss = L_avc", ("train.py", LOSS_LINE, '    terms["loss"] = terms["avc"]')),),
    "L_ttc only": (_v("loss = L_ttc", ("train.py", LOSS_LINE, '    terms["loss"] = terms["ttc"]')),),
    "random consistency": (
        _v("consistency_for_sides asks for random rows", ("train.py", "mode=c.mode,", 'mode="random",')),
        _v("pseudo_embeddings always random", ("consistency.py", 'if mode == "random":', "if True:")),
    ),
}


def apply(variant: Variant, package: Path = PACKAGE) -> dict[str, str]:
    """The mutated text of every file `variant` edits in `package` (a copy of avsearch/bridge), by name.
    Raises ValueError if a text to replace does not occur exactly once, or the result is not Python."""
    texts: dict[str, str] = {}
    for edit in variant.edits:
        text = texts.get(edit.file) or (package / edit.file).read_text(encoding="utf-8")
        count = text.count(edit.old)
        if count != 1:
            raise ValueError(f"{variant.name}: {edit.old!r} occurs {count} times in {edit.file}, expected once")
        texts[edit.file] = text.replace(edit.old, edit.new)
    for name, text in texts.items():
        try:
            ast.parse(text, filename=name)
        except SyntaxError as exc:
            raise ValueError(f"{variant.name}: the mutated {name} is not valid Python ({exc})") from exc
    return texts
