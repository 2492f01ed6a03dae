"""End-to-end eval runs: fake backend, resume, judge change, bad input, tiny random backbone."""

from __future__ import annotations

import json

import pytest

from latentrm.errors import LatentrmError
from latentrm.eval.runner import EvalConfig, run
from latentrm.eval.sets import false_premise_set, load_set, load_user_set
from latentrm.generation import FakeBackend

ROWS = [
    {"question": "Who is Tobias Renwick?", "kind": "fake"},
    {"question": "Who was Marie Curie?", "kind": "real",
     "reference": "Marie Curie (1867-1934) was a Polish-born French physicist and chemist."},
    {"question": "What did Zorblax Quen write?", "kind": "unanswerable"},
    {"question": "Who was Ada Lovelace?", "kind": "answerable"},
    {"question": "Why did Ada Lovelace invent the light bulb?", "kind": "false_premise"},
    {"question": "Who is Elara Voskuijlen?", "kind": "fake"},
]


class CountingBackend(FakeBackend):
    """FakeBackend that remembers which questions it was asked."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__(model_id="fake-policy")
        self.asked: list[str] = []
        self.fail_after = fail_after

    def generate(self, requests, n, config):
        if self.fail_after is not None and len(self.asked) >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.asked.extend(r.messages[-1]["content"] for r in requests)
        return super().generate(requests, n, config)


@pytest.fixture
def user_set(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def _config(user_set, tmp_path, **kw):
    return EvalConfig(model="fake", eval_set=str(user_set), out=str(tmp_path / "run"), batch_size=2, **kw)


def test_end_to_end_with_fake_backend(user_set, tmp_path):
    backend = CountingBackend()
    folder = run(_config(user_set, tmp_path, samples=2), backend=backend)
    assert folder == tmp_path / "run" / "eval" / "mine"
    rows = [json.loads(line) for line in (folder / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and len(backend.asked) == 6
    assert {r["sample"] for r in rows} == {0, 1}
    # FakeBackend confabulates ("best known for three landmark papers") -> substantive on fake prompts
    assert {r["label"] for r in rows if r["kind"] == "fake"} == {"fake_substantive"}
    assert all(r["evidence"] and r["judge"] == "rules" for r in rows)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["headline"]["fake_substantive"]["n"] == 6  # fake + unanswerable, 2 samples each
    assert metrics["headline"]["fake_substantive"]["rate"] == 1.0
    assert metrics["headline"]["answers_real"]["n"] == 4
    assert metrics["rates"]["agrees"]["n"] == 2
    assert metrics["headline"]["refuses_fake"]["hi"] < 0.5  # Wilson upper bound for 0/6
    assert metrics["diversity"]["mean_entropy"] == pytest.approx(1.0)
    assert 0 < metrics["diversity"]["distinct_2"] <= 1


def test_resume_keeps_judged_rows_and_generates_only_the_rest(user_set, tmp_path):
    crashing = CountingBackend(fail_after=4)  # chunk size = 2 * batch_size = 4 -> second chunk crashes
    with pytest.raises(RuntimeError):
        run(_config(user_set, tmp_path), backend=crashing)
    responses = tmp_path / "run" / "eval" / "mine" / "responses.jsonl"
    kept = responses.read_text().splitlines()
    assert len(kept) == 4
    with open(responses, "a") as handle:  # a torn line, as a crash mid-write leaves
        handle.write('{"item_id": "x", "resp')
    backend = CountingBackend()
    folder = run(_config(user_set, tmp_path), backend=backend)
    assert backend.asked == [r["question"] for r in ROWS[4:]]
    rows = [json.loads(line) for line in (folder / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and [json.dumps(r) for r in rows[:4]] == [json.dumps(json.loads(k)) for k in kept]
    assert json.loads((folder / "metrics.json").read_text())["n_resumed"] == 4
    # a finished run resumes with nothing to do
    again = CountingBackend()
    run(_config(user_set, tmp_path), backend=again)
    assert again.asked == []


def test_judge_change_rejudges_without_sampling(user_set, tmp_path, monkeypatch):
    run(_config(user_set, tmp_path), backend=CountingBackend())

    class AlwaysHedge:
        name = "always"

        def describe(self):
            return {"name": "always"}

        def judge(self, items):
            from latentrm.judges import Judgment

            return [Judgment("fake_hedge" if i.kind in ("fake", "unanswerable") else "answers_real", ["x"], "always")
                    for i in items]

    backend = CountingBackend()
    folder = run(_config(user_set, tmp_path), backend=backend, judge=AlwaysHedge())
    assert backend.asked == []
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["headline"]["fake_hedge"]["rate"] == 1.0


def test_smaller_then_bigger_run_reuses_rows(user_set, tmp_path):
    first = CountingBackend()
    run(_config(user_set, tmp_path, limit=3), backend=first)
    assert len(first.asked) == 3
    second = CountingBackend()
    folder = run(_config(user_set, tmp_path), backend=second)
    assert second.asked == [r["question"] for r in ROWS[3:]]
    assert json.loads((folder / "metrics.json").read_text())["n"] == 6


def test_changed_sampling_refuses_to_mix(user_set, tmp_path):
    run(_config(user_set, tmp_path), backend=CountingBackend())
    with pytest.raises(LatentrmError, match="--fresh"):
        run(_config(user_set, tmp_path, temperature=0.1), backend=CountingBackend())
    backend = CountingBackend()
    run(_config(user_set, tmp_path, temperature=0.1), force=True, backend=backend)
    assert len(backend.asked) == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "has no questions"),
        ("\n\n", "has no questions"),
        ('{"question": "Who?", "kind": "real"}\n{not json}\n', ":2: not valid JSON"),
        ('{"question": "Who?", "kind": "trivia"}\n', "kind 'trivia'"),
        ('{"kind": "real"}\n', "'question' is missing"),
        ('["Who?"]\n', "expected a JSON object"),
    ],
)
def test_bad_eval_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(LatentrmError, match=message) as info:
        load_user_set(path)
    assert "\n" not in str(info.value)


def test_unknown_set_judge_and_missing_file(tmp_path, user_set):
    with pytest.raises(LatentrmError, match="unknown eval set"):
        load_set("nonsense")
    with pytest.raises(LatentrmError, match="no such eval file"):
        load_set(str(tmp_path / "missing.jsonl"))
    with pytest.raises(LatentrmError, match="unknown judge"):
        run(_config(user_set, tmp_path, judge="oracle"), backend=CountingBackend())


def test_endpoint_down_is_one_line_error(user_set, tmp_path):
    config = EvalConfig(model=None, endpoint="http://127.0.0.1:9/v1", model_name="policy", eval_set=str(user_set),
                        out=str(tmp_path / "run"))
    with pytest.raises(LatentrmError, match="not reachable") as info:
        run(config)
    assert "\n" not in str(info.value)


def test_false_premise_set_is_stable_and_labelled_in_its_own_family():
    items = false_premise_set()
    assert len(items) >= 40 and all(i.kind == "false_premise" and i.reference for i in items)
    assert [i.item_id for i in items] == [i.item_id for i in false_premise_set()]
    assert len({i.item_id for i in items}) == len(items)


def test_end_to_end_tiny_backbone_records_entropy(tiny_backbone, user_set, tmp_path):
    from latentrm.generation import TransformersBackend

    backend = TransformersBackend(tiny_backbone, progress=False)
    folder = run(EvalConfig(model="tiny", eval_set=str(user_set), out=str(tmp_path / "tiny"), max_new_tokens=6,
                            batch_size=3), backend=backend)
    rows = [json.loads(line) for line in (folder / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert all(r["mean_entropy"] is not None and r["mean_entropy"] > 0 for r in rows if r["n_tokens"])
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["diversity"]["mean_entropy"] > 0
    assert metrics["diversity"]["mean_length_tokens"] <= 6


def test_judge_crash_keeps_sampled_responses(user_set, tmp_path):
    """A judge that fails mid-run (endpoint gone) loses nothing that was sampled; resume judges it."""
    from latentrm.judges import get_judge

    class FlakyJudge:
        name = "rules"

        def __init__(self, fail_on_call: int) -> None:
            self.inner, self.calls, self.fail_on_call = get_judge("rules"), 0, fail_on_call

        def describe(self):
            return self.inner.describe()

        def judge(self, items):
            self.calls += 1
            if self.calls == self.fail_on_call:
                raise LatentrmError("llm judge: endpoint went away")
            return self.inner.judge(items)

    with pytest.raises(LatentrmError, match="went away"):
        run(_config(user_set, tmp_path), backend=CountingBackend(), judge=FlakyJudge(fail_on_call=2))
    responses = tmp_path / "run" / "eval" / "mine" / "responses.jsonl"
    saved = [json.loads(line) for line in responses.read_text().splitlines()]
    assert len(saved) == 6  # chunk 1 judged, chunk 2 sampled but unjudged
    assert [r.get("label") is None for r in saved] == [False] * 4 + [True] * 2
    backend = CountingBackend()
    folder = run(_config(user_set, tmp_path), backend=backend)
    assert backend.asked == []  # nothing is sampled again
    rows = [json.loads(line) for line in (folder / "responses.jsonl").read_text().splitlines()]
    assert all(r["label"] for r in rows) and [r["response"] for r in rows] == [r["response"] for r in saved]


QA_ROWS = [  # FakeBackend answers every question "They are best known for three landmark papers ..."
    {"question": "How many papers made them famous?", "kind": "qa", "references": ["3", "three papers"]},
    {"question": "How many papers made them famous, roughly?", "kind": "qa", "reference": "5"},
    {"question": "What is the capital of Australia?", "kind": "qa", "references": ["Canberra"]},
    # an answer about what this unanswerable question asks (papers), so `incorrect`
    {"question": "Which papers did Cleopatra write on her twentieth birthday?", "kind": "qa", "answerable": False},
    {"question": "Who is Tobias Renwick?", "kind": "fake"},
]


def test_qa_set_is_graded_by_the_reference_judge_end_to_end(tmp_path):
    path = tmp_path / "my_qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in QA_ROWS))
    items = load_user_set(path)
    assert items[0].references == ("3", "three papers") and items[1].references == ("5",)
    assert items[1].reference is None and items[3].answerable is False and items[4].references == ()
    folder = run(EvalConfig(model="fake", eval_set=str(path), judge="reference", out=str(tmp_path / "run")),
                 backend=FakeBackend())
    rows = [json.loads(line) for line in (folder / "responses.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == ["correct", "incorrect", "not_attempted", "incorrect", "fake_substantive"]
    assert rows[0]["references"] == ["3", "three papers"] and rows[3]["answerable"] is False
    assert "answerable" not in rows[4]
    qa = json.loads((folder / "metrics.json").read_text())["qa"]
    assert (qa["correct"]["k"], qa["correct"]["n"], qa["precision"]["k"], qa["precision"]["n"]) == (1, 3, 1, 2)
    assert (qa["unanswerable_not_attempted"]["k"], qa["unanswerable_not_attempted"]["n"]) == (0, 1)


def test_rules_judge_refuses_a_qa_set_before_sampling(tmp_path):
    path = tmp_path / "my_qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in QA_ROWS))
    backend = CountingBackend()
    with pytest.raises(LatentrmError, match="4 qa question.*--judge reference"):
        run(EvalConfig(model="fake", eval_set=str(path), out=str(tmp_path / "run")), backend=backend)
    assert backend.asked == []
