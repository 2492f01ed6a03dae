"""Eval sets: which questions a policy is asked, with the kind and grounding each needs.

- `heldout`: knowledge-awareness prompts built by the data recipe's own prompt
  templates from entities that appear in no training split (real and made-up);
  see `heldout.py`.
- `false_premise`: hand-written questions asserting something false about a real
  person (`false_premise.py`); labelled corrects / hedges / agrees.
- a user JSONL file: one object per line with `question`, `kind` (real / fake /
  false_premise / unanswerable / answerable / qa) and optional `reference` (grounding
  text), `entity`, `id`. A `qa` question has a short answer: `reference` or
  `references` (a list of acceptable answers), or `"answerable": false` when it has
  none; the `reference` judge grades it correct / incorrect / not_attempted.

`load_set(name_or_path)` returns a list of `EvalItem`; ids are stable, so a resumed
run finds the responses it already has.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.eval.items import EvalItem
from latentrm.io import stable_id
from latentrm.judges import KINDS, REFERENCE_KINDS


def load_user_set(path: str | Path) -> list[EvalItem]:
    """Read and validate a user JSONL eval file; every problem is a one-line LatentrmError."""
    from latentrm.io import read_jsonl_objects

    path = Path(path)
    if not path.exists():
        raise LatentrmError(f"{path}: no such eval file; pass a .jsonl path or one of {', '.join(SETS)}")
    items: list[EvalItem] = []
    seen: set[str] = set()
    for number, row in read_jsonl_objects(path, what="eval file", needs="question and kind"):
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise LatentrmError(f"{path}:{number}: 'question' is missing or empty; every line needs one")
        kind = row.get("kind")
        if kind not in KINDS:
            raise LatentrmError(f"{path}:{number}: kind {kind!r} is not one of {', '.join(KINDS)}")
        reference = row.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise LatentrmError(f"{path}:{number}: 'reference' must be text or absent")
        if isinstance(reference, str) and not reference.strip():
            raise LatentrmError(f"{path}:{number}: 'reference' is empty; give the answer or leave the field out")
        references, answerable = short_answers(row, kind, path, number)
        item_id = str(row.get("id") or stable_id(kind, question, str(number)))
        if item_id in seen:
            raise LatentrmError(f"{path}:{number}: duplicate id {item_id!r}; ids must be unique")
        seen.add(item_id)
        entity = row.get("entity")
        items.append(EvalItem(item_id, kind, question.strip(), None if references else reference or None,
                              str(entity) if entity else None, {"line": number}, references, answerable))
    if not items:
        raise LatentrmError(f"{path}: has no questions; add lines like "
                            '{"question": "Who is Ada Lovelace?", "kind": "real"}')
    return items


def short_answers(row: dict[str, Any], kind: str, path: Path, number: int) -> tuple[tuple[str, ...], bool]:
    """(references, answerable) of one line; only a `qa` question has them, and an answerable one needs one."""
    references = row.get("references")
    answerable = row.get("answerable", True)
    where = f"{path}:{number}"
    if references is not None and (not isinstance(references, list)
                                   or not all(isinstance(r, str) for r in references)):
        raise LatentrmError(f"{where}: 'references' must be a list of strings, like [\"Canberra\"]")
    if references is not None and any(not r.strip() for r in references):
        raise LatentrmError(f"{where}: 'references' holds an empty answer; remove it")
    if not isinstance(answerable, bool):
        raise LatentrmError(f"{where}: 'answerable' must be true or false")
    if kind not in REFERENCE_KINDS:
        if references is not None or "answerable" in row:
            raise LatentrmError(f"{where}: 'references' and 'answerable' are for kind 'qa' (kind here: {kind!r})")
        return (), True
    answers = tuple(r.strip() for r in references or []) or ((row["reference"].strip(),) if row.get("reference")
                                                            else ())
    if answerable and not answers:
        raise LatentrmError(f"{where}: kind 'qa' needs a 'reference' or 'references' (the short answer), "
                            "or \"answerable\": false")
    if not answerable and answers:
        raise LatentrmError(f"{where}: an unanswerable question (\"answerable\": false) takes no reference")
    return answers, answerable


def false_premise_set(*, people: str = "all", **_: Any) -> list[EvalItem]:
    """The hand-written false-premise questions about real people. There are only 40 (on 20 people), so the
    final eval takes them all (`people` all or eval), and the head's selection and the on-policy check split
    the people between them: `select` is one half, `check` the other (by the same stable name hash)."""
    from latentrm.eval.false_premise import FALSE_PREMISES
    from latentrm.eval.heldout import check_people, in_part

    check_people(people)
    halves = {"select": "even", "check": "odd"}

    def keep(entity: str) -> bool:
        if people not in halves:
            return True
        return in_part(entity, "eval") == (halves[people] == "even")  # eval = half of the hashes

    return [EvalItem(stable_id("false_premise", question), "false_premise", question, reference, entity)
            for entity, question, reference in FALSE_PREMISES if keep(entity)]


def heldout_set(*, n_real: int = 100, n_fake: int = 100, seed: int = 0, **kwargs: Any) -> list[EvalItem]:
    """Knowledge-awareness prompts on entities held out of every training split (see heldout.py)."""
    from latentrm.eval.heldout import build_heldout

    return build_heldout(n_real=n_real, n_fake=n_fake, seed=seed, **kwargs)


SETS: dict[str, Callable[..., list[EvalItem]]] = {
    "heldout": heldout_set,
    "false_premise": false_premise_set,
}


def set_name(name_or_path: str) -> str:
    """The folder name a set's outputs go under: the set name, or the JSONL file's stem."""
    return name_or_path if name_or_path in SETS else Path(name_or_path).stem


def load_set(name_or_path: str, **options: Any) -> list[EvalItem]:
    """A named set (`heldout`, `false_premise`) or a user JSONL file."""
    if name_or_path in SETS:
        items = SETS[name_or_path](**options)
        if not items:
            raise LatentrmError(f"eval set '{name_or_path}' came out empty; check its options")
        return items
    path = Path(name_or_path)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson") or path.exists():
        return load_user_set(path)
    raise LatentrmError(f"unknown eval set '{name_or_path}'; use {', '.join(SETS)} or a .jsonl file")
