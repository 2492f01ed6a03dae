"""The judge contract, below eval and audit: labels, `JudgeInput` / `Judgment`, the `Judge` Protocol, the registry.

Labels, by prompt kind (`unanswerable` uses the made-up labels, `answerable` the real ones):

- made-up entity: `refuses_fake`, `fake_hedge`, `fake_substantive`;
- real entity: `answers_real`, `real_denied`, `real_incorrect`;
- false premise (a false claim, too): `corrects`, `hedges`, `agrees`;
- true claim (the user states something true and asks for confirmation): `confirms_true`, `hedges_true`,
  `disputes_true` (the sycophancy recipe's other side: contradicting a true statement is not honesty either);
- a question with a short reference answer (`qa`): `correct`, `incorrect`, `not_attempted`; a `qa`
  question marked `answerable: false` has no right answer, so it is `not_attempted` or `incorrect`.

Every judge may answer `unjudged`; it never guesses. The registry lists `rules` (`rules.py`), `reference`
(`reference.py`) and `llm` (`llm.py`) by module path, so this module imports none of them and all import it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from latentrm.errors import LatentrmError
from latentrm.registry import Registry

# Which labels make up the denominator of each headline rate.
FAKE_LABELS = ("refuses_fake", "fake_hedge", "fake_substantive")
REAL_LABELS = ("answers_real", "real_denied", "real_incorrect")
FALSE_PREMISE_LABELS = ("corrects", "hedges", "agrees")
TRUE_CLAIM_LABELS = ("confirms_true", "hedges_true", "disputes_true")
QA_LABELS = ("correct", "incorrect", "not_attempted")
UNANSWERABLE_QA_LABELS = ("not_attempted", "incorrect")  # no reference: answering at all is wrong
UNJUDGED = "unjudged"
LABEL_GROUPS: dict[str, tuple[str, ...]] = {
    "fake": FAKE_LABELS,
    "real": REAL_LABELS,
    "false_premise": FALSE_PREMISE_LABELS,
    "true_claim": TRUE_CLAIM_LABELS,
    "qa": QA_LABELS,
}


def label_group(kind: str) -> str:
    """The label family a prompt kind is judged in: unanswerable -> fake labels, answerable -> real labels."""
    return {"fake": "fake", "unanswerable": "fake", "real": "real", "answerable": "real"}.get(kind, kind)


def group_of_label(label: str) -> str:
    """The prompt kind a label is given to ("fake_substantive" -> "fake"): the denominator of its rate."""
    for group, labels in LABEL_GROUPS.items():
        if label in labels:
            return group
    raise LatentrmError(f"label {label!r} is given by no judge; known: "
                        f"{', '.join(label for labels in LABEL_GROUPS.values() for label in labels)}")


_WORD = re.compile(r"\w+(?:'\w+)?")
_WORD_OR_MARK = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def words(text: str, *, punctuation: bool = False) -> list[str]:
    """Lower-cased word tokens (a tokenizer-free unit); `punctuation=True` keeps each mark as a token too."""
    return (_WORD_OR_MARK if punctuation else _WORD).findall(text.lower())


Kind = Literal["real", "fake", "false_premise", "true_claim", "unanswerable", "answerable", "qa"]
KINDS: tuple[str, ...] = ("real", "fake", "false_premise", "true_claim", "unanswerable", "answerable", "qa")
# Kinds graded against short reference answers (`references`), by the `reference` judge or the llm judge.
REFERENCE_KINDS: tuple[str, ...] = ("qa",)
LABELS: dict[str, tuple[str, ...]] = LABEL_GROUPS


def labels_for(kind: str) -> tuple[str, ...]:
    """The allowed labels for a prompt kind."""
    if kind not in KINDS:
        raise LatentrmError(f"prompt kind '{kind}' is not one of {', '.join(KINDS)}")
    return LABELS[label_group(kind)]


@dataclass(frozen=True)
class JudgeInput:
    """One response to judge. `reference` is the grounding text for real entities, when known; for a `qa`
    question, `references` are its acceptable short answers and `answerable=False` says it has none."""

    question: str
    kind: str
    response: str
    reference: str | None = None
    entity: str | None = None
    references: tuple[str, ...] = ()
    answerable: bool = True


def allowed_labels(item: JudgeInput) -> tuple[str, ...]:
    """The labels a judge may give this item: its kind's labels; an unanswerable `qa` cannot be `correct`."""
    if item.kind in REFERENCE_KINDS and not item.answerable:
        return UNANSWERABLE_QA_LABELS
    return labels_for(item.kind)


@dataclass(frozen=True)
class Judgment:
    label: str
    evidence: list[str] = field(default_factory=list)
    judge: str = ""


class Judge(Protocol):
    """A behaviour judge: labels a batch of responses."""

    name: str

    def judge(self, items: Sequence[JudgeInput]) -> list[Judgment]: ...

    def describe(self) -> dict[str, Any]: ...


JudgeFactory = Callable[..., Judge]
JUDGES: Registry[JudgeFactory] = Registry("judge", hint="--judge")
JUDGES.lazy("rules", "latentrm.judges.rules:RulesJudge")
JUDGES.lazy("reference", "latentrm.judges.reference:ReferenceJudge")
JUDGES.lazy("llm", "latentrm.judges.llm:LLMJudge")


def register_judge(name: str) -> Callable[[JudgeFactory], JudgeFactory]:
    """Decorator: add a judge factory to the registry under `name`."""
    return JUDGES.register(name)


def get_judge(name: str, **kwargs: Any) -> Judge:
    """Build a registered judge by name (`rules`, `llm`, ...)."""
    return JUDGES.get(name)(**kwargs)


