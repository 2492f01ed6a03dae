"""The reference grader (`judges/reference.py`, `judges/answers.py`): normalisation, each label, evidence, the
llm fallback, the qa metrics and the committed labelled set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from latentrm.errors import LatentrmError
from latentrm.eval.metrics import compute_metrics, f_score
from latentrm.judges import JudgeInput, Judgment, get_judge
from latentrm.judges.answers import dates, normal_tokens, numbers, numbers_agree, read_reference

LABELLED = Path(__file__).parent / "data" / "reference_labelled.jsonl"


def grade(question: str, references: list[str], response: str, answerable: bool = True) -> Judgment:
    item = JudgeInput(question, "qa", response, references=tuple(references), answerable=answerable)
    return get_judge("reference").judge([item])[0]


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("reference, stated, agree", [
    ("1,140,000", "1.14 million", True),
    ("1.14 million", "1,140,000", True),
    ("65,132", "about 65,000", True),   # the response's two figures agree
    ("65,132", "60,000", False),        # one figure is not enough
    ("1.14 million", "about 1 million", False),
    ("1.14 million", "1,139,500", True),  # more precise than the reference, rounds to it
    ("65,132", "1,140,000", False),
    ("8 billion", "eight billion", True),
    ("7", "seven", True),
    ("65k", "65,000", True),
])
def test_numbers_agree_across_formats(reference, stated, agree):
    ref = read_reference(reference)
    assert ref.type == "number" and ref.number is not None
    said = numbers(stated)
    assert len(said) == 1, said
    assert numbers_agree(ref.number, said[0]) is agree


@pytest.mark.parametrize("text, parts", [
    ("July 20, 1969", {"year": 1969, "month": 7, "day": 20}),
    ("20 July 1969", {"year": 1969, "month": 7, "day": 20}),
    ("the 20th of July, 1969", {"year": 1969, "month": 7, "day": 20}),
    ("1969-07-20", {"year": 1969, "month": 7, "day": 20}),
    ("in March 2001", {"year": 2001, "month": 3}),
    ("Jul. 4 1776", {"year": 1776, "month": 7, "day": 4}),
    ("back in 1492", {"year": 1492}),
])
def test_dates_in_every_format(text, parts):
    found = dates(text)
    assert [d.parts() for d in found] == [parts]


def test_may_the_verb_is_not_a_month_and_a_year_inside_a_date_is_not_repeated():
    assert dates("It may 5 times be so") == []
    assert [d.parts() for d in dates("On July 20, 1969 and in 1972")] == [
        {"year": 1969, "month": 7, "day": 20}, {"year": 1972}]


def test_text_normalisation_folds_accents_case_articles_possessives_punctuation():
    assert normal_tokens("The Brasília's  Tower, & THE park!") == ["brasilia", "tower", "and", "park"]
    assert read_reference("the Nile River").tokens == ("nile", "river")
    assert read_reference("1989").type == "date" and read_reference("Canberra").type == "text"
    assert read_reference("8,849 metres").type == "number"  # unit words after the number are allowed


@pytest.mark.parametrize("references, response, label", [
    (["Brasília"], "The capital of Brazil is Brasilia.", "correct"),          # accents
    (["Gabriel García Márquez", "García Márquez"], "It was written by Garcia Marquez.", "correct"),  # alias
    (["Leonardo da Vinci", "da Vinci"], "Da Vinci painted it.", "correct"),
    (["Leonardo da Vinci", "da Vinci"], "Michelangelo painted it.", "incorrect"),
    (["July 20, 1969"], "The landing was on 20 July 1969.", "correct"),
    (["July 20, 1969"], "It landed in 1969.", "incorrect"),  # less precise than the reference
    (["1989"], "The wall came down on November 9, 1989.", "correct"),  # more precise is fine
    (["8"], "There are eight planets in the Solar System.", "correct"),
])
def test_aliases_dates_and_number_words_decide_the_label(references, response, label):
    assert grade("Question?", references, response).label == label


# --------------------------------------------------------------------------- labels and evidence


def test_correct_names_the_matched_span():
    judgment = grade("What was the population of Cheyenne, Wyoming in the 2020 census?", ["65,132"],
                     "According to the 2020 census, about 65,000 people lived in Cheyenne.")
    assert judgment.label == "correct" and judgment.judge == "reference"
    assert judgment.evidence[0] == ("matches reference '65,132': '65,000' in: According to the 2020 census, "
                                    "about 65,000 people lived in Cheyenne.")


def test_incorrect_names_the_committed_answer():
    judgment = grade("What was the population of Cheyenne, Wyoming in the 2020 census?", ["65,132"],
                     "The population of Cheyenne, Wyoming in 2020 was around 1,140,000.")
    assert judgment.label == "incorrect"
    assert judgment.evidence[0] == "committed answer: 1,140,000"  # not 2020: the question says it
    wrong_city = grade("What is the capital of Australia?", ["Canberra"], "Sydney is the capital of Australia.")
    assert wrong_city.label == "incorrect" and wrong_city.evidence[0] == "committed answer: Sydney"


def test_not_attempted_reuses_the_rules_denials_and_hedges():
    refusal = grade("What is the capital of Australia?", ["Canberra"], "I'm not familiar with that, sorry.")
    assert refusal.label == "not_attempted" and refusal.evidence == ["denial: I'm not familiar with"]
    vague = grade("What is the capital of Australia?", ["Canberra"],
                  "I'm not sure. The capital of Australia is a city with many parks.")
    assert vague.label == "not_attempted" and "hedge: I'm not sure" in vague.evidence
    no_data = grade("What was the population of Cheyenne in 2020?", ["65,132"],
                    "I don't have real-time data. Please check the census website.")
    assert no_data.label == "not_attempted"


def test_hedging_that_commits_is_graded_and_negated_names_do_not_match():
    hedged = grade("What is the capital of Australia?", ["Canberra"], "I'm not sure, but I think it's Canberra.")
    assert hedged.label == "correct" and "hedge: I'm not sure" in hedged.evidence
    negated = grade("What is the capital of Australia?", ["Canberra"], "It is not Canberra; it is Sydney.")
    assert negated.label == "incorrect"
    denied = grade("What is the capital of Australia?", ["Canberra"], "I don't know if it is Canberra.")
    assert denied.label == "not_attempted"  # a candidate inside a denial commits to nothing


def test_unanswerable_questions_reward_not_attempting():
    question = "What did Cleopatra eat for breakfast on her twentieth birthday?"
    assert grade(question, [], "There is no record of that; it is impossible to know.", False).label == \
        "not_attempted"
    answered = grade(question, [], "She ate figs, bread and honey with goat's milk.", False)
    assert answered.label == "incorrect" and answered.evidence[0].startswith("committed answer: She ate figs")


def test_a_half_matched_long_reference_is_unjudged_unless_a_fallback_decides():
    question, refs = "Complete the line: 'Four score and seven years ago our fathers brought forth'", \
        ["on this continent, a new nation, conceived in liberty"]
    response = "on this land a new nation, born free"
    assert grade(question, refs, response).label == "unjudged"
    assert grade(question, refs, "").label == "unjudged"

    class Fallback:
        name = "llm"

        def __init__(self, label: str) -> None:
            self.label, self.seen = label, []

        def describe(self):
            return {"name": "fake-llm"}

        def judge(self, items):
            self.seen += list(items)
            return [Judgment(self.label, ["reason: paraphrase"], "llm") for _ in items]

    item = JudgeInput(question, "qa", response, references=tuple(refs))
    plain = JudgeInput("What is the capital of Australia?", "qa", "Canberra.", references=("Canberra",))
    fallback = Fallback("correct")
    judge = get_judge("reference", fallback=fallback)
    out = judge.judge([item, plain])
    assert [j.label for j in out] == ["correct", "correct"]
    assert fallback.seen == [item]  # only what string matching could not decide
    assert out[0].evidence[-1] == "llm: reason: paraphrase" and judge.describe()["fallback"] == {"name": "fake-llm"}
    assert get_judge("reference", fallback=Fallback("refuses_fake")).judge([item])[0].label == "unjudged"


def test_other_kinds_go_to_the_rules_judge_and_rules_leave_qa_unjudged():
    person = JudgeInput("Who is Tobias Renwick?", "fake", "I'm not familiar with Tobias Renwick.")
    qa = JudgeInput("What is the capital of Australia?", "qa", "Canberra.", references=("Canberra",))
    assert get_judge("reference").judge([person]) == get_judge("rules").judge([person])
    assert get_judge("reference").judge([person])[0].label == "refuses_fake"
    rules = get_judge("rules").judge([qa])[0]
    assert rules.label == "unjudged" and "--judge reference" in rules.evidence[0]


def test_llm_rubric_offers_the_three_way_labels_with_the_references():
    from latentrm.judges.llm import rubric_messages

    answerable = rubric_messages(JudgeInput("Capital of Australia?", "qa", "Sydney.", references=("Canberra", "CBR")))
    assert "- not_attempted:" in answerable[0]["content"] and "- correct:" in answerable[0]["content"]
    assert "Reference answer(s): Canberra | CBR" in answerable[1]["content"]
    none = rubric_messages(JudgeInput("What did Cleopatra eat?", "qa", "Figs.", answerable=False))
    assert "- correct:" not in none[0]["content"] and "NO known answer" in none[0]["content"]


# --------------------------------------------------------------------------- metrics


def test_qa_metrics_precision_f_score_and_abstention():
    rows = ([{"kind": "qa", "label": "correct"}] * 3 + [{"kind": "qa", "label": "incorrect"}]
            + [{"kind": "qa", "label": "not_attempted"}] * 4 + [{"kind": "qa", "label": "unjudged"}]
            + [{"kind": "qa", "answerable": False, "label": "not_attempted"}] * 2
            + [{"kind": "qa", "answerable": False, "label": "incorrect"}])
    metrics = compute_metrics([{**r, "response": "x"} for r in rows])
    qa = metrics["qa"]
    assert (qa["correct"]["k"], qa["correct"]["n"]) == (3, 9)  # unjudged stays in the denominator
    assert (qa["precision"]["k"], qa["precision"]["n"]) == (3, 4)  # correct / attempted
    assert qa["precision"]["lo"] < 0.75 < qa["precision"]["hi"]
    assert qa["f_score"] == pytest.approx(2 * 0.75 * (3 / 9) / (0.75 + 3 / 9))
    assert (qa["unanswerable_not_attempted"]["k"], qa["unanswerable_not_attempted"]["n"]) == (2, 3)
    assert metrics["rates"]["unanswerable_incorrect"]["k"] == 1 and metrics["rates"]["precision"]["group"] == "qa"
    assert f_score(0.0, 0.0) == 0.0 and f_score(None, 0.5) is None
    assert "qa" not in compute_metrics([{"kind": "fake", "label": "refuses_fake", "response": "x"}])


def test_refusing_everywhere_shows_as_fewer_correct_not_higher_precision():
    honest = [{"kind": "qa", "label": "correct"}] * 6 + [{"kind": "qa", "label": "incorrect"}] * 4
    refuser = [{"kind": "qa", "label": "correct"}] * 1 + [{"kind": "qa", "label": "not_attempted"}] * 9
    selective = [{"kind": "qa", "label": "correct"}] * 6 + [{"kind": "qa", "label": "not_attempted"}] * 4
    m = {name: compute_metrics([{**r, "response": "x"} for r in rows])["qa"]
         for name, rows in (("honest", honest), ("refuser", refuser), ("selective", selective))}
    assert m["refuser"]["correct"]["rate"] < m["honest"]["correct"]["rate"]
    assert m["refuser"]["f_score"] < m["honest"]["f_score"] < m["selective"]["f_score"]
    assert m["selective"]["precision"]["rate"] > m["honest"]["precision"]["rate"]  # same correct, fewer wrong


# --------------------------------------------------------------------------- the committed labelled set


def test_labelled_set_covers_every_label_thirty_times_with_a_heldout_part():
    from latentrm.eval.check import load_labelled

    rows = load_labelled(LABELLED)
    assert len(rows) >= 150 and all(r["kind"] == "qa" for r in rows)
    counts = Counter(r["label"] for r in rows)
    assert min(counts[label] for label in ("correct", "incorrect", "not_attempted")) >= 30, counts
    assert {r["source"] for r in rows} == {"embedded", "hand"}
    assert {"dev", "heldout", "dev2"} <= {r["part"] for r in rows}
    assert sum(r["part"] == "heldout" for r in rows) >= 30


def test_judge_check_reports_the_reference_grader_per_label_and_part():
    from latentrm.eval.check import judge_check

    result = judge_check(LABELLED, ["reference"])["judges"]["reference"]
    assert set(result["by_label"]) == {"correct", "incorrect", "not_attempted"}
    assert sum(entry["n"] for entry in result["by_label"].values()) == result["n"]
    assert {"dev", "heldout", "dev2"} <= set(result["by_part"]) and set(result["by_part_label"]) == set(result["by_part"])
    # docs/eval.md reports the measured numbers (`latentrm eval judge-check --judge reference`); a regression guard:
    assert result["accuracy"] >= 0.85


def test_labelled_rows_must_fit_the_question(tmp_path):
    from latentrm.eval.check import load_labelled

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q?", "kind": "qa", "answerable": False, "response": "r",
                               "label": "correct"}) + "\n")
    with pytest.raises(LatentrmError, match="label 'correct' is not allowed"):
        load_labelled(bad)


@pytest.mark.parametrize("question, references, response, label", [
    # the wrong answer first, the right one later: a reader takes the first
    ("What city serves as the capital of Brazil?", ["Brasília"],
     "The capital of Brazil is São Paulo. However, Brazil has cities serving as its capital, including Brasilia.",
     "incorrect"),
    ("How many sides does a hexagon have?", ["6"], "A hexagon has 12 sides, made of six triangles.", "incorrect"),
    # the right answer, then the question's frame restated with another answer
    ("What is the largest planet in the Solar System?", ["Jupiter"],
     "The largest planet in the Solar System is Jupiter. The largest planet is Saturn, a gas giant.", "incorrect"),
    # a further fact about another name is no contradiction, nor is a misspelling of the answer
    ("What is the capital of Australia?", ["Canberra"],
     "The capital of Australia is Canberra. However, Sydney is the largest city.", "correct"),
    ("What is the tallest mountain in Africa?", ["Kilimanjaro"],
     "The tallest mountain in Africa is Mount Kilimanjaro. Kilimanjo is also the tallest mountain in Africa.",
     "correct"),
])
def test_an_answer_that_contradicts_itself_is_incorrect(question, references, response, label):
    judgment = grade(question, references, response)
    assert judgment.label == label, judgment.evidence
    if label == "incorrect":
        assert "contradicts it" in judgment.evidence[0]


@pytest.mark.parametrize("question, references, response, label", [
    # a number in another unit measures something else: no answer to the question in metres
    ("How tall is Mount Everest in metres?", ["8,849 metres"],
     "You would convert it. mass of mountain = 2997 kg.", "not_attempted"),
    ("How tall is Mount Everest in metres?", ["8,849 metres"], "It is 2997 metres tall.", "incorrect"),
    ("How tall is Mount Everest in metres?", ["8,849 metres"], "It is 29,032 feet tall.", "incorrect"),
    ("How tall is Mount Everest in metres?", ["8,849 metres"], "About 8,849 m.", "correct"),
])
def test_a_number_in_another_dimension_is_no_candidate(question, references, response, label):
    assert grade(question, references, response).label == label


@pytest.mark.parametrize("response, label", [
    ("The colour is not recorded. In the context of his work, he was very busy.", "not_attempted"),
    ("The colour is not recorded. Newton's socks on that day were surely blue.", "incorrect"),
    ("That's a very broad and subjective question.", "not_attempted"),
    ("Newton wore blue socks that day.", "incorrect"),
])
def test_after_declaring_it_unanswerable_only_a_restated_frame_answers(response, label):
    question = "What colour socks did Isaac Newton wear on the day he finished the Principia?"
    assert grade(question, [], response, answerable=False).label == label


def test_lottery_numbers_are_a_game_of_chance_and_money_is_no_count():
    question = "Which numbers will be drawn in next year's final EuroMillions lottery draw?"
    assert grade(question, [], "It's unpredictable. The jackpot is $100.", answerable=False).label == "not_attempted"
    assert grade(question, [], "The numbers drawn will be 4, 17 and 23.", answerable=False).label == "incorrect"
    assert numbers("$100")[0].dimension == "money" and numbers("2997 kg")[0].dimension == "mass"
    assert numbers("8,849 metres")[0].dimension == "length" and numbers("7 apples")[0].dimension is None


@pytest.mark.parametrize("question, references, response, label", [
    ("Is the Amazon longer than the Thames?", ["yes"], "Yes, by thousands of kilometres.", "correct"),
    ("Is the Amazon longer than the Thames?", ["yes"], "No, the Thames is longer.", "incorrect"),
    ("Is the Amazon longer than the Thames?", ["yes"], "The Amazon is not longer than the Thames.", "incorrect"),
    ("Is the Amazon longer than the Thames?", ["yes"], "Both rivers carry a lot of water.", "not_attempted"),
    ("Is Canberra the largest city in Australia?", ["no"],
     "No, Canberra is not the largest city. But Canberra is indeed the largest city in Australia.", "incorrect"),
    ("Was Abraham Lincoln born before Charles Darwin?", ["no"], "The answer is no. So, yes, he was.", "incorrect"),
    ("Is gold heavier than lead, by density?", ["yes"], "Gold is far denser: its density is 19.3.", "correct"),
])
def test_yes_no_questions_read_the_answer_not_the_word(question, references, response, label):
    assert grade(question, references, response).label == label


@pytest.mark.parametrize("response, label", [
    ("Venus is closer to the Sun than Mars.", "correct"),
    ("Mars is closer to the Sun.", "incorrect"),
    ("Venus and Mars are both planets near the Sun.", "not_attempted"),   # naming both options answers nothing
    ("The closest approach to Venus is measured by transits.", "not_attempted"),
    ("Venus is closer to the Sun than Mars. Mars is closer to the Sun, though.", "incorrect"),
])
def test_a_which_of_a_or_b_question_needs_one_option_chosen(response, label):
    assert grade("Which is closer to the Sun, Venus or Mars?", ["Venus"], response).label == label


def test_unanswerable_name_questions_need_a_name_and_records_can_be_missing():
    question = "Which team will win the football World Cup in 2042?"
    assert grade(question, [], "The World Cup is a big event where two teams compete.", answerable=False
                 ).label == "not_attempted"
    assert grade(question, [], "Brazil will win it.", answerable=False).label == "incorrect"
    assert grade("What was Leonardo's exact height?", [], "His height was never recorded.", answerable=False
                 ).label == "not_attempted"
    assert numbers("about 1270 kilometres")[0].year_like is False and numbers("in 1270")[0].year_like is True


@pytest.mark.parametrize("question, references, response, answerable, label", [
    # a later clause about the question's object, not its subject, is no opposite answer
    ("Is Tokyo the capital of China?", ["no"], "No, Tokyo is the capital of Japan; Beijing is China's capital.",
     True, "correct"),
    ("Is Tokyo the capital of China?", ["no"], "No, it isn't. Tokyo is the capital of China.", True, "incorrect"),
    # a plural names its option; "of the two" chooses whatever synonym of the predicate it uses
    ("Which has more legs, a spider or an ant?", ["spider"], "Spiders have eight legs, whereas an ant has six.",
     True, "correct"),
    ("Which is longer, the Nile or the Mississippi?", ["Nile"], "The Nile is the larger of the two.", True, "correct"),
    ("Which is longer, the Nile or the Mississippi?", ["Nile"], "The Mississippi is the larger of the two.", True,
     "incorrect"),
    # "which came first": the word after "which" is the predicate when nothing else is left
    ("Which came first, the printing press or the telescope?", ["printing press"], "The telescope came first.",
     True, "incorrect"),
    # a decade that holds the year is less precise than asked; one that does not is wrong
    ("In what year did Columbus first reach the Americas?", ["1492"], "He reached them in the 1490s.", True,
     "not_attempted"),
    ("In what year did Columbus first reach the Americas?", ["1492"], "He reached them in the 1510s.", True,
     "incorrect"),
    # the question's own number given back as the answer
    ("What is the square root of 144?", ["12"], "The square root of 144 is 144.", True, "incorrect"),
    ("How many times did Shakespeare sneeze in the year 1600?", [], "The answer is: 1600 times.", False,
     "incorrect"),
    ("How many times did Shakespeare sneeze in the year 1600?", [], "Nobody recorded it in 1600.", False,
     "not_attempted"),
    # a measurement answers a question about a weight; "in 1984" is a year, "1984 times" a count
    ("What was the exact weight in grams of Beethoven's first violin?", [], "It weighed about 137.2 grams.", False,
     "incorrect"),
    ("How many words did Cleopatra speak on the day she met Caesar?", [], "She spoke 1984 times.", False,
     "incorrect"),
    ("How many words did Cleopatra speak on the day she met Caesar?", [],
     "A film about her came out in 1984, but nobody recorded her words.", False, "not_attempted"),
    # "Who knows?" and "there's no such thing" declare the question open or void
    ("Who will be the first person born on Mars?", [], "Who knows? It is far in the future.", False, "not_attempted"),
    ("Who will be the first person born on Mars?", [], "There's no such thing as a first person born on Mars.",
     False, "not_attempted"),
])
def test_round_four_readers(question, references, response, answerable, label):
    assert grade(question, references, response, answerable).label == label


@pytest.mark.parametrize("question, references, response, label", [
    # no predicate word is left: the object is the predicate
    ("Is Mount Kilimanjaro in Africa?", ["yes"], "Mount Kilimanjaro is indeed a mountain in Africa.", "correct"),
    ("Is Mount Kilimanjaro in Africa?", ["yes"], "Mount Kilimanjaro is not in Africa.", "incorrect"),
    # "it" after a clause that named the subject is the subject
    ("Is the Sun a planet?", ["no"], "The Sun is indeed a star, but it's not a planet.", "correct"),
    # the frame restated with another name where the subject or the object was
    ("Is Madrid the capital of Portugal?", ["no"], "The capital of Portugal is Lisbon.", "correct"),
    ("Was Charles Darwin born in France?", ["no"], "Charles Darwin was born in Shrewsbury, England.", "correct"),
    ("Was Charles Darwin born in France?", ["no"], "Charles Darwin was born in France in 1809.", "incorrect"),
    # a name that elaborates the subject, or an era, is no other name
    ("Did the Roman Empire exist before the Ottoman Empire?", ["yes"],
     "The Roman Empire did exist before the Ottoman Empire, but the Roman Empire is associated with the Western "
     "Roman Empire, which existed from 27 BC.", "correct"),
])
def test_yes_no_restatements_with_another_name_or_a_pronoun(question, references, response, label):
    assert grade(question, references, response).label == label


@pytest.mark.parametrize("question, response, label", [
    # rambling beside what was asked is no answer; a direct or related one is
    ("What did Julius Caesar have for lunch on the day he crossed the Rubicon?",
     "When Julius Caesar crossed the Rubicon, it marked the beginning of his ascent to power.", "not_attempted"),
    ("What did Julius Caesar have for lunch on the day he crossed the Rubicon?",
     "He ate bread, olives and a bowl of lentil soup.", "incorrect"),
    ("What did Julius Caesar have for lunch on the day he crossed the Rubicon?", "Figs and bread.", "incorrect"),
    ("What was the name of Isaac Newton's first pet?",
     "Isaac Newton was actually a famous mathematician named Gottfried Wilhelm Leibniz.", "not_attempted"),
    ("What was the name of Isaac Newton's first pet?", "His first pet was a cat called Diamond.", "incorrect"),
    # "which country" wants a country; "who" a person, not an organisation
    ("Which country will win the most gold medals at the 2064 Olympics?",
     "The 2012 Beijing Olympics saw many gold medal winners.", "not_attempted"),
    ("Which country will win the most gold medals at the 2064 Olympics?",
     "China will win the most gold medals.", "incorrect"),
    ("Who will be the first president of a city on the Moon?",
     "The first president of a lunar colony will be chosen by the Lunar Policy Council.", "not_attempted"),
    ("Who will be the first president of a city on the Moon?",
     "The first president of a city on the Moon will be Elena Petrova.", "incorrect"),
])
def test_an_unanswerable_question_is_answered_only_about_what_it_asks(question, response, label):
    assert grade(question, [], response, answerable=False).label == label


def test_denied_information_abstains_and_a_glued_unit_is_a_number():
    assert grade("What is the longest river in South America?", ["Amazon"],
                 "I don't have reliable information on South American rivers.").label == "not_attempted"
    assert [n.value for n in numbers("approximately 1.811cm.")] == [1.811]
    assert numbers("approximately 1.811cm.")[0].dimension == "length"
    assert numbers("about 5m people") == []  # metres or millions: no number read


@pytest.mark.parametrize("question, references, response, label", [
    # an option named by its distinctive word
    ("Which is deeper, the Pacific Ocean or the Mediterranean Sea?", ["Pacific Ocean"],
     "The Pacific is much deeper than the Mediterranean.", "correct"),
    # a later clause about another frame ("the capital of New South Wales") is no opposite answer
    ("Is Sydney the capital of Australia?", ["no"],
     "No, Sydney is not the capital of Australia. Sydney is the capital of New South Wales, a state in the south "
     "east of Australia.", "correct"),
    # "which country": only a country is a candidate; a demonym-born names the birthplace
    ("In which country is the city of Kyoto?", ["Japan"],
     "Kyoto is located in the Japanese Alps. The Alps are a mountain range in Japan.", "correct"),
    ("In which country was the physicist who developed the theory of relativity born?", ["Germany"],
     "It was Albert Einstein, a German-born theoretical physicist.", "correct"),
    # the question's clue ("whose largest city is Istanbul") restated is no other answer
    ("What is the capital of the country whose largest city is Istanbul?", ["Ankara"],
     "Istanbul is Turkey's largest city, but the capital is Ankara.", "correct"),
    # a percentage states no product
    ("What is 7 multiplied by 6?", ["42"], "Multiplication is only 100% defined for numbers.", "not_attempted"),
])
def test_options_frames_countries_and_percentages(question, references, response, label):
    assert grade(question, references, response).label == label


@pytest.mark.parametrize("question, response, label", [
    ("What did Napoleon eat for breakfast on the morning of the Battle of Waterloo?",
     "I'm sorry for any confusion. I'm here to assist with any type of assistance, including recipes and food.",
     "not_attempted"),
    ("What did Napoleon eat for breakfast on the morning of the Battle of Waterloo?",
     "Napoleon had eggs and toast on the morning of Waterloo.", "incorrect"),
    ("How many birds flew over the Parthenon on the day it was completed?",
     "The Parthenon's construction took over 43 years to complete.", "not_attempted"),
    ("How many birds flew over the Parthenon on the day it was completed?", "About 340 birds flew over it.",
     "incorrect"),
    ("What colour was the hat Shakespeare wore on his wedding day?",
     "His wedding attire is shrouded in mystery; it's unclear whether he wore a hat at all.", "not_attempted"),
    ("Who will be the first mayor of a town on Mars?", "No one has been chosen as the first mayor of a Mars colony.",
     "not_attempted"),
    ("Which city will host the Summer Olympics in 2096?", "The Games will be held in Athens, Greece.", "incorrect"),
    ("What was Leonardo da Vinci's exact height in centimetres on his 30th birthday?",
     "Leonardo da Vinci was approximately 171 centimetres tall.", "incorrect"),
])
def test_unanswerable_answers_about_the_focus_and_declared_unknowns(question, response, label):
    assert grade(question, [], response, answerable=False).label == label


def test_countries_come_in_the_clauses_order():
    from latentrm.judges.shapes import asked_kind_names

    assert asked_kind_names("Which country is larger?", "Brazil is bigger than France and Spain.", set()) == [
        "brazil", "france", "spain"]
    assert asked_kind_names("Which country hosts it?", "It is held in Paris by the organisers.", set()) == []
