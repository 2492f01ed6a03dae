"""Evaluating a policy served over an OpenAI-compatible endpoint, the llm judge on one, and the
command line's bad-input contract (`error: ...`, one line, exit 2, no traceback)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from latentrm.eval.runner import EvalConfig, run

DOWN = "http://127.0.0.1:9/v1"  # the discard port: connection refused
ROWS = [
    {"question": "Who is Tobias Renwick?", "kind": "fake"},
    {"question": "Who was Marie Curie?", "kind": "real",
     "reference": "Marie Curie (1867-1934) was a Polish-born French physicist and chemist."},
    {"question": "Why did Ada Lovelace invent the light bulb?", "kind": "false_premise"},
]


class _Handler(BaseHTTPRequestHandler):
    """A stub OpenAI server: the policy always disclaims; the judge picks the rubric's first label."""

    requests: list[dict] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._send({"data": [{"id": "stub"}]})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
        if system.startswith("You grade"):
            label = re.search(r"^- (\w+):", system, re.MULTILINE).group(1)
            text = f"LABEL: {label}\nREASON: stub judge"
        else:
            text = "I'm not familiar with that person; they may not exist."
        n = body.get("n", 1)
        self._send({"choices": [{"index": i, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"} for i in range(n)],
                    "usage": {"completion_tokens": 12 * n}})


@pytest.fixture
def endpoint():
    _Handler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def user_set(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_policy_over_openai_endpoint(endpoint, user_set, tmp_path):
    config = EvalConfig(model=None, endpoint=endpoint, model_name="stub", eval_set=str(user_set),
                        out=str(tmp_path / "run"), samples=2)
    folder = run(config)
    rows = [json.loads(line) for line in (folder / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert {r["label"] for r in rows if r["kind"] == "fake"} == {"refuses_fake"}
    assert {r["label"] for r in rows if r["kind"] == "real"} == {"real_denied"}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["policy"] == f"openai:stub@{endpoint}"
    assert metrics["headline"]["refuses_fake"]["rate"] == 1.0
    # an endpoint reports no logits: entropy is absent, and metrics say so
    assert metrics["diversity"]["mean_entropy"] is None and metrics["diversity"]["n_with_entropy"] == 0
    assert metrics["diversity"]["mean_length_tokens"] == 12


def test_llm_judge_over_openai_endpoint(endpoint, user_set, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTRM_CACHE", str(tmp_path / "cache"))
    config = EvalConfig(model=None, endpoint=endpoint, model_name="stub", eval_set=str(user_set),
                        out=str(tmp_path / "run"), judge="llm", judge_endpoint=endpoint, judge_model_name="stub")
    folder = run(config)
    rows = [json.loads(line) for line in (folder / "responses.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == ["refuses_fake", "answers_real", "corrects"]  # the rubric's first labels
    assert all(r["judge"] == "llm" and r["evidence"] == ["reason: stub judge"] for r in rows)
    judged = [b for b in _Handler.requests if b["messages"][0]["content"].startswith("You grade")]
    assert len(judged) == 3
    # judgments are cached by content hash: a fresh run samples again but the judge is not asked again
    asked = len(_Handler.requests)
    run(config, force=True)
    assert len(_Handler.requests) == asked + 3  # the three policy questions only
    assert len([b for b in _Handler.requests if b["messages"][0]["content"].startswith("You grade")]) == 3
    assert (tmp_path / "cache" / "judge_cache").is_dir()


# --------------------------------------------------------------------------- command line, bad input


def _cli(args, capsys):
    from latentrm.cli import main

    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (b"", [], "has no questions"),
        (b'{"question": "Who?", "kind": "real"}\n{broken\n', [], ":2: not valid JSON"),
        (b"\x89PNG\x00\xff\xfe", [], "is not UTF-8 text"),
        (b'{"question": "Who?", "kind": "trivia"}\n', [], "is not one of"),
        (b'{"question": "Who?", "kind": "fake"}\n', ["--judge", "oracle"], "unknown judge 'oracle'"),
        (b'{"question": "Who?", "kind": "fake"}\n', [], "not reachable"),
        (b'{"question": "Who?", "kind": "fake"}\n', ["--judge", "llm", "--judge-endpoint", DOWN],
         "fix --judge-endpoint"),
    ],
)
def test_cli_bad_input_is_one_line_error(tmp_path, capsys, content, extra, message):
    path = tmp_path / "set.jsonl"
    path.write_bytes(content)
    code, err = _cli(["eval", "--endpoint", DOWN, "--model-name", "p", "--set", str(path),
                      "--out", str(tmp_path / "run"), *extra], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_set_that_is_a_folder(tmp_path, capsys):
    folder = tmp_path / "questions.jsonl"
    folder.mkdir()
    code, err = _cli(["eval", "--endpoint", DOWN, "--model-name", "p", "--set", str(folder)], capsys)
    assert code == 2 and "is not a file" in err and err.count("\n") == 1


def test_cli_judge_check_bad_file(tmp_path, capsys):
    path = tmp_path / "labels.jsonl"
    path.write_text('["not", "an", "object"]\n')
    code, err = _cli(["eval", "judge-check", "--file", str(path)], capsys)
    assert code == 2 and "expected a JSON object" in err and err.count("\n") == 1
