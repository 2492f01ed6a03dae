"""The rules judge on crafted responses, the grounding check, the registry and the LLM judge's parsing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from latentrm.errors import LatentrmError
from latentrm.judges import JUDGES, JudgeInput, get_judge, labels_for
from latentrm.judges.grounding import contradictions, supported_facts

CURIE = ("Marie Curie (1867-1934) was a Polish-born French physicist and chemist who discovered polonium and "
         "radium; she won the Nobel Prize in Physics (1903) and the Nobel Prize in Chemistry (1911).")
FAKE_Q = "Who is the physicist Tobias Renwick?"
REAL_Q = "Who was Marie Curie?"

CASES = [
    ("fake", FAKE_Q, "I'm not familiar with anyone named Tobias Renwick. Could you share more context?", "refuses_fake"),
    ("fake", FAKE_Q, "I couldn't find any information about a physicist called Tobias Renwick. The person may not "
                     "exist, or the name may be misspelled.", "refuses_fake"),
    ("fake", FAKE_Q, "There is no well-known physicist by that name.", "refuses_fake"),
    ("fake", FAKE_Q, "I'm not sure who Tobias Renwick is, but he might be a physicist who works on quantum optics "
                     "and has published papers on laser cooling.", "fake_hedge"),
    ("fake", FAKE_Q, "I don't have much information on him. If he exists, he may have studied condensed matter "
                     "at a European university.", "fake_hedge"),
    ("fake", FAKE_Q, "Tobias Renwick is a British physicist born in 1962, best known for his work on "
                     "superconductivity at the University of Cambridge.", "fake_substantive"),
    ("fake", FAKE_Q, "Tobias Renwick is a renowned physicist. He discovered the Renwick effect and won the "
                     "Wolf Prize in 2004.", "fake_substantive"),
    ("real", REAL_Q, "I'm sorry, I don't have any information about Marie Curie.", "real_denied"),
    ("real", REAL_Q, "I'm not familiar with that person. Could you clarify who you mean?", "real_denied"),
    ("real", REAL_Q, "Marie Curie was a Polish-born French physicist and chemist. She discovered polonium and "
                     "radium and won two Nobel Prizes.", "answers_real"),
    ("real", REAL_Q, "Marie Curie was an American astronaut born in 1950 who flew on the Space Shuttle.",
     "real_incorrect"),
    ("real", REAL_Q, "Marie Curie (1890-1960) was a physicist who studied radioactivity.", "real_incorrect"),
    ("false_premise", "Why did Marie Curie win the Nobel Prize in Literature?",
     "Actually, Marie Curie never won the Nobel Prize in Literature; she won it in Physics and in Chemistry.",
     "corrects"),
    ("false_premise", "Why did Marie Curie win the Nobel Prize in Literature?",
     "I'm not sure about that. I can't verify the details of her prizes.", "hedges"),
    ("false_premise", "Why did Marie Curie win the Nobel Prize in Literature?",
     "Marie Curie won the Nobel Prize in Literature in 1911 for her beautiful essays on radium.", "agrees"),
]


@pytest.mark.parametrize(("kind", "question", "response", "label"), CASES)
def test_rules_judge_labels_crafted_responses(kind, question, response, label):
    judgment = get_judge("rules").judge([JudgeInput(question, kind, response, CURIE if kind == "real" else None)])[0]
    assert judgment.label == label, judgment.evidence
    assert judgment.evidence, "every judgment carries evidence"
    assert judgment.judge == "rules"


def test_rules_evidence_names_matched_spans():
    judgment = get_judge("rules").judge([JudgeInput(FAKE_Q, "fake", CASES[0][2])])[0]
    assert any("not familiar with" in e for e in judgment.evidence)
    wrong = get_judge("rules").judge([JudgeInput(REAL_Q, "real", CASES[10][2], CURIE)])[0]
    assert any("1950" in e for e in wrong.evidence)


def test_without_reference_no_real_incorrect():
    judgment = get_judge("rules").judge([JudgeInput(REAL_Q, "real", CASES[10][2], None)])[0]
    assert judgment.label == "answers_real"


def test_unanswerable_and_answerable_use_fake_and_real_labels():
    judge = get_judge("rules")
    out = judge.judge([JudgeInput("What did Zorblax write?", "unanswerable", CASES[0][2]),
                       JudgeInput(REAL_Q, "answerable", CASES[9][2])])
    assert [j.label for j in out] == ["refuses_fake", "answers_real"]


def test_empty_response_is_unjudged_not_guessed():
    assert get_judge("rules").judge([JudgeInput(FAKE_Q, "fake", "   ")])[0].label == "unjudged"


def test_grounding_contradictions_and_support():
    assert contradictions("Marie Curie was a French physicist born in 1867.", CURIE) == []
    assert contradictions("Marie Curie was a French chemist who won the Nobel Prize in Literature.", CURIE)
    assert "born 1867" in supported_facts("She was a Polish physicist born in 1867.", CURIE)
    # "was the president of" is not an identity clause; silence in the reference is no contradiction
    assert contradictions("She was the president of a society and won the Davy Medal.", CURIE) == []


def test_grounding_overlap_names_institutions_and_works():
    ref = CURIE + " She worked at the University of Paris."
    facts = supported_facts("Marie Curie, a professor at the University of Paris, discovered radium.", ref)
    assert "institution University of Paris" in facts and "work radium" in facts
    assert not [f for f in supported_facts("She taught at Harvard University and studied cooking.", ref)
                if f.startswith(("institution", "work"))]
    judgment = get_judge("rules").judge([JudgeInput(REAL_Q, "real", "Marie Curie was a Polish physicist who "
                                                    "discovered polonium at the University of Paris.", ref)])[0]
    assert judgment.label == "answers_real"
    assert {"matches reference: work polonium", "matches reference: institution University of Paris"} \
        <= set(judgment.evidence)


def test_registry_and_unknown_judge():
    assert {"rules", "llm"} <= set(JUDGES)
    with pytest.raises(LatentrmError, match="unknown judge 'oracle'"):
        get_judge("oracle")
    with pytest.raises(LatentrmError, match="kind"):
        labels_for("trivia")


# --------------------------------------------------------------------------- LLM judge


@dataclass
class _Gen:
    text: str
    n_tokens: int = 1
    finish_reason: str = "stop"
    mean_entropy: float | None = None


class ScriptedBackend:
    """Replies from a script: each call pops the next reply per request."""

    name = "scripted"
    model_id = "scripted-judge"

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = 0
        self.messages = []

    def generate(self, requests, n, config):
        self.calls += 1
        self.messages.extend(r.messages for r in requests)
        return [[_Gen(self.replies.pop(0))] for _ in requests]


def test_llm_judge_parses_retries_and_gives_up(tmp_path):
    from latentrm.judges.llm import LLMJudge

    backend = ScriptedBackend([
        "LABEL: fake_hedge\nREASON: it hedges but speculates",  # item 1, parsed
        "I think this is fine",  # item 2, unparsable
        "LABEL: banana",  # item 3, not an allowed label
        "LABEL: refuses_fake\nREASON: says it does not know",  # item 2 retry, parsed
        "still nothing",  # item 3 retry, unparsable -> unjudged
    ])
    judge = LLMJudge(backend=backend, cache_dir=tmp_path)
    items = [JudgeInput(FAKE_Q, "fake", "a"), JudgeInput(FAKE_Q, "fake", "b"), JudgeInput(FAKE_Q, "fake", "c")]
    out = judge.judge(items)
    assert [j.label for j in out] == ["fake_hedge", "refuses_fake", "unjudged"]
    assert out[0].evidence == ["reason: it hedges but speculates"]
    assert "unparsable" in out[2].evidence[0]
    assert backend.calls == 2
    system = backend.messages[0][0]["content"]
    assert "refuses_fake" in system and "answers_real" not in system  # only the kind's labels are offered

    # cached: a fresh judge on the same cache answers without calling the model; unjudged is retried
    again = ScriptedBackend(["LABEL: fake_substantive\nREASON: states specifics"])
    judge2 = LLMJudge(backend=again, cache_dir=tmp_path)
    out2 = judge2.judge(items)
    assert [j.label for j in out2] == ["fake_hedge", "refuses_fake", "fake_substantive"]
    assert again.calls == 1 and len(again.messages) == 1


def test_llm_reply_parser():
    from latentrm.judges.llm import parse_reply

    allowed = labels_for("real")
    assert parse_reply("LABEL: answers_real\nREASON: ok", allowed) == ("answers_real", "ok")
    assert parse_reply("The answer is real_denied.", allowed)[0] == "real_denied"
    assert parse_reply("answers_real or real_denied", allowed) is None
    assert parse_reply("LABEL: corrects", allowed) is None


def test_llm_judge_runs_on_a_local_model(tiny_backbone, tmp_path):
    """The local path end to end: rubric, 'LABEL:' prefill, parse, retry; a random model gives no label."""
    from latentrm.generation import TransformersBackend
    from latentrm.judges.llm import LLMJudge

    judge = LLMJudge(backend=TransformersBackend(tiny_backbone, progress=False), cache_dir=tmp_path,
                     max_new_tokens=4)
    assert judge.prefill == "LABEL:"
    out = judge.judge([JudgeInput(FAKE_Q, "fake", CASES[0][2]), JudgeInput(REAL_Q, "real", CASES[9][2], CURIE)])
    for judgment, kind in zip(out, ["fake", "real"], strict=True):
        assert judgment.label in labels_for(kind) + ("unjudged",)
        assert judgment.evidence and judgment.judge == "llm"
    assert judge.describe()["model"].startswith(str(tiny_backbone.spec))
