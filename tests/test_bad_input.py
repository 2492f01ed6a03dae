"""Bad CLI input (issue 9, part 3): each case is one `error:` line naming the option or path, exit code 2,
no traceback, and nothing written.

Every case fails before a model loads: commands that would load one get `--model` (or `--rm`) pointing at a
path that does not exist, so a check that came late would fail with a different message. The degenerate-head
case trains on the tiny random backbone. Read-only places are ones that refuse writes to root too (CI runs as
root, where a chmod-ed folder stays writable): a path under a regular file, and a path under /proc.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from latentrm.errors import LatentrmError
from latentrm.validate import check_writable_dir, check_writable_file
from test_cli import ROWS, _run, _write

READ_ONLY = "/proc/latentrm-read-only"  # mkdir under /proc fails for root as well
NO_MODEL = "{tmp}/no-such-model"

CASES = [
    # ----- tracebacks before the fix
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--lr", "-1"], "--lr -1.0: must be greater than 0"),
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--lr", "nan"], "--lr nan: must be a finite number"),
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--run-dir", "{file}"], "is a file, not a directory"),
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--run-dir", "{file}/run"],
     "sits under the file"),
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--run-dir", READ_ONLY + "/run"],
     "--run-dir /proc/latentrm-read-only/run: /proc is not writable"),
    (["features", "--pairs", "{pairs}", "--model", NO_MODEL, "--run-dir", READ_ONLY], "--run-dir"),
    (["features", "--pairs", "{pairs}", "--model", NO_MODEL, "--run-dir", "{file}/run"], "sits under the file"),
    (["eval", "--model", NO_MODEL, "--run-dir", READ_ONLY], "/proc is not writable"),
    (["eval", "--model", NO_MODEL, "--run-dir", "{file}/run"], "sits under the file"),
    (["data", "build", "--model", NO_MODEL, "--out", READ_ONLY], "--out /proc/latentrm-read-only"),
    (["data", "build", "--model", NO_MODEL, "--out", "{file}/data"], "sits under the file"),
    (["rm", "eval", "--rm", "{tmp}/rm", "--pairs", "{pairs}", "--out", "{tmp}"], "is a directory; pass a file path"),
    (["rm", "eval", "--rm", "{tmp}/rm", "--pairs", "{pairs}", "--out", READ_ONLY + "/m.json"],
     "/proc is not writable"),
    (["rm", "eval", "--rm", "{tmp}/rm", "--pairs", "{pairs}", "--out", "{file}/m.json"], "sits under the file"),
    (["rm", "score", "--rm", "{tmp}/rm", "--input", "{inputs}", "--out", READ_ONLY + "/s.jsonl"],
     "--out /proc/latentrm-read-only/s.jsonl"),
    (["eval", "--model", NO_MODEL, "--max-new-tokens", "0"], "--max-new-tokens"),
    (["data", "show", "{pairs}", "--n", "-1"], "--n"),
    (["serve", "--rm", "{tmp}/rm", "--port", "-1"], "--port"),
    (["serve", "--rm", "{tmp}/rm", "--port", "99999"], "--port"),
    # ----- accepted silently before the fix
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--epochs", "0"], "--epochs"),
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--epochs", "-5"], "--epochs"),
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--batch-size", "0"], "--batch-size"),
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--ensemble", "0"], "--ensemble"),
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--scale", "-0.0"], "--scale -0.0: a scale of 0"),
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--scale", "0"], "--scale 0.0: a scale of 0"),
    (["rm", "score", "--rm", "{tmp}/rm", "--input", "{inputs}", "--batch-size", "0"], "--batch-size"),
    (["rm", "audit", "--rm", "{tmp}/rm", "--max-pairs", "0"], "--max-pairs"),
    (["eval", "--model", NO_MODEL, "--limit", "0"], "--limit"),
    (["eval", "--model", NO_MODEL, "--limit", "-2"], "--limit"),
    (["eval", "--model", NO_MODEL, "--samples", "0"], "--samples"),
    (["data", "build", "--model", NO_MODEL, "--temperature", "-1"], "--temperature -1.0: must be >= 0"),
    (["eval", "--model", NO_MODEL, "--temperature", "-1"], "--temperature -1.0: must be >= 0"),
    # ----- data that carries no signal
    (["rm", "train", "--pairs", "{identical}", "--model", NO_MODEL, "--run-dir", "{tmp}/run"],
     "row(s) 3, 6 have the same chosen and rejected text"),
    # ----- errors that came late or said too little
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--head", "foo"],
     "--head 'foo': use one of linear, projection_sum, mlp"),
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--ensemble-mode", "foo"],
     "--ensemble-mode 'foo': use one of seed, bootstrap, layers"),
    (["serve", "--rm", "{tmp}/rm", "--shaper", "nosuch"], "--shaper 'nosuch': use one of"),
    (["serve", "--rm", "{badrm}", "--log-level", "banana"], "--log-level 'banana': use one of critical"),
    (["serve", "--rm", "{badrm}", "--max-body-mb", "-1"], "--max-body-mb -1.0: give a size in MiB > 0"),
    (["serve", "--rm", "{badrm}", "--device", "banana"], "--device 'banana': use cpu, cuda"),
    (["rm", "train", "--pairs", "{tmp}", "--model", NO_MODEL, "--run-dir", "{tmp}/run"], "is a directory"),
    (["rm", "score", "--rm", "{tmp}/rm", "--input", "{tmp}"], "is a directory"),
    (["rm", "score", "--rm", "{badrm}", "--prompt", "a", "--completion", "b"],
     "rm.json (head type 'mlp') does not match"),
    (["rm", "goodhart", "--rm", "{tmp}/rm", "--n-prompts", "-3"], "--n-prompts"),
    # ----- rl compare: every arm's config and the start policy, before anything trains
    (["rl", "compare", "--pairs", "{pairs}", "--rm", "{tmp}/rm", "--warm-start", "banana"],
     "--warm-start 'banana': use one of dpo, ipo, kto, sft"),
    (["rl", "compare", "--pairs", "{pairs}", "--rm", "{tmp}/rm", "--policy", "{tmp}/no-such-model"], "--policy:"),
    (["rl", "compare", "--pairs", "{pairs}", "--rm", "{tmp}/rm", "--set", "shaper=banana"],
     "--set shaper: every arm sets its own shaper"),
    (["rl", "compare", "--pairs", "{pairs}", "--rm", "{tmp}/rm", "--set", "mix=banana"], "--set mix:"),
    (["rl", "compare", "--pairs", "{pairs}", "--rm", "{tmp}/rm", "--arms", "", "--baselines", ""],
     "--arms and --baselines are both empty"),
    (["rl", "compare", "--pairs", "{pairs}", "--rm", "{tmp}/rm", "--baseline-lr", "nan"], "--baseline-lr finite"),
    (["rl", "compare", "--pairs", "{pairs}", "--rm", "{tmp}/rm", "--set", "steps=abc"], "steps"),
    # ----- issue 23: accepted nonsense and late tracebacks
    (["rm", "train", "--pairs", "{pairs}", "--model", NO_MODEL, "--margin", "-1"], "--margin -1.0: must be >= 0"),
    (["features", "--pairs", "{pairs}", "--model", NO_MODEL, "--layers", ""], "--layers is empty"),
    (["data", "merge", "{pairs}", "{pairs}", "--out", "{tmp}/m.csv"], "a pairs file is .parquet or .jsonl"),
    (["rl", "train", "--pairs", "{pairs}", "--rm", "{headless}", "--steps", "2"], "no head.safetensors"),
    (["rl", "train", "--pairs", "{pairs}", "--rm", "{tmp}/rm", "--set", "steps=abc", "--steps", "2"],
     "steps='abc': expected int"),
    (["rm", "eval", "--rm", "{abc_layer}", "--pairs", "{pairs}"], "'layer' is 'abc', not a layer number"),
    # ----- usage errors are one line too
    (["rm", "train", "--pairs", "{pairs}", "--epochs", "x"], "--epochs: Input should be a valid integer"),
    (["rm", "train", "--pairs", "{pairs}", "--no-such-option"], "No such option: --no-such-option"),
]


def _mismatched_rm(folder: Path) -> Path:
    """An rm folder whose rm.json names an mlp head while head.safetensors holds a projection_sum head."""
    from safetensors.torch import save_file

    from latentrm.rm.heads import make_head

    folder.mkdir()
    head = make_head("projection_sum", 8, scale=0.01)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(folder / "head.safetensors"))
    meta = {"backbone": {"spec": str(folder / "no-such-model"), "revision": "x", "hidden_size": 8},
            "layer": 1, "head": {**head.config(), "type": "mlp"}}
    (folder / "rm.json").write_text(json.dumps(meta))
    return folder


def _headless_rm(folder: Path) -> Path:
    """An rm folder with a good rm.json and no head.safetensors."""
    _mismatched_rm(folder)
    (folder / "head.safetensors").unlink()
    meta = json.loads((folder / "rm.json").read_text())
    (folder / "rm.json").write_text(json.dumps({**meta, "chosen_quantiles": {"all": [0.0, 1.0]}}))
    return folder


def _abc_layer_rm(folder: Path) -> Path:
    _mismatched_rm(folder)
    meta = json.loads((folder / "rm.json").read_text())
    (folder / "rm.json").write_text(json.dumps({**meta, "layer": "abc"}))
    return folder


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("argv, fragment", CASES, ids=[" ".join(a[:2] + a[-2:]) for a, _ in CASES])
def test_bad_input_gives_one_line_error(argv, fragment, tmp_path, capsys, monkeypatch):
    cwd = tmp_path / "cwd"  # relative defaults (runs/quick, runs/data) land here, inside the snapshot
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    identical = [dict(row) for row in ROWS]
    for index in (2, 5):
        identical[index]["rejected"] = identical[index]["chosen"]
    inputs = tmp_path / "score.jsonl"
    inputs.write_text(json.dumps({"prompt": "Who is X?", "completion": "I don't know X."}) + "\n")
    (tmp_path / "a-file.txt").write_text("not a folder\n")
    paths = {"tmp": str(tmp_path), "pairs": str(_write(tmp_path / "pairs.jsonl", ROWS)),
             "identical": str(_write(tmp_path / "identical.jsonl", identical)), "inputs": str(inputs),
             "file": str(tmp_path / "a-file.txt"), "badrm": str(_mismatched_rm(tmp_path / "badrm")),
             "headless": str(_headless_rm(tmp_path / "headless")), "abc_layer": str(_abc_layer_rm(tmp_path / "abc"))}
    before = _tree(tmp_path)
    code, out, err = _run([part.format(**paths) for part in argv], capsys)
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment.format(**paths) in lines[0]
    assert "Traceback" not in err + out
    assert _tree(tmp_path) == before  # nothing written, not even a probe or an empty run folder


def test_a_head_with_tied_scores_is_refused_and_not_saved(tiny_model_dir, tmp_path, capsys):
    """Layer 0 at the last token is the embedding of the same end-of-turn token for every text: no signal."""
    pairs = _write(tmp_path / "pairs.jsonl", ROWS)
    run = tmp_path / "run"
    code, out, err = _run(["rm", "train", "--pairs", str(pairs), "--run-dir", str(run), "--model", str(tiny_model_dir),
                           "--layer", "0", "--epochs", "5"], capsys)
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert code == 2, (out, err)
    assert len(lines) == 1 and "tied scores on all" in lines[0] and "layer 0" in lines[0], err
    assert "Traceback" not in err
    assert not (run / "rm").exists()  # no rm.json that looks fine


def test_repeated_rows_warn_once_and_training_continues(tiny_model_dir, tmp_path, capsys):
    pairs = _write(tmp_path / "pairs.jsonl", ROWS + ROWS[:3])
    run = tmp_path / "run"
    code, _, err = _run(["rm", "train", "--pairs", str(pairs), "--run-dir", str(run), "--model", str(tiny_model_dir),
                         "--layer", "2", "--epochs", "5"], capsys)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0, err
    assert len(warnings) == 1 and "3 row(s) repeat an earlier row" in warnings[0]
    assert (run / "rm" / "rm.json").exists()


def test_writable_checks_refuse_what_os_access_refuses(tmp_path, monkeypatch):
    """The os.access branch (a chmod-ed folder for non-root users), forced so it runs the same as root."""
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(LatentrmError, match=r"--run-dir .*: .* is not writable; pick a folder"):
        check_writable_dir(tmp_path / "run", "--run-dir")
    with pytest.raises(LatentrmError, match="not writable"):
        check_writable_file(tmp_path / "out.json", "--out")


def test_writable_checks_accept_new_and_existing_places_and_leave_nothing(tmp_path):
    assert check_writable_dir(tmp_path / "a" / "b", "--run-dir") == tmp_path / "a" / "b"
    assert check_writable_dir(tmp_path, "--run-dir") == tmp_path
    (tmp_path / "m.json").write_text("{}")
    assert check_writable_file(tmp_path / "m.json", "--out") == tmp_path / "m.json"
    assert check_writable_file(tmp_path / "new" / "m.json", "--out") == tmp_path / "new" / "m.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # probes removed, nothing created


QA_OK = {"question": "What is the capital of Australia?", "kind": "qa", "references": ["Canberra"]}


@pytest.mark.parametrize("line, fragment", [
    ({"question": "Capital of Kenya?", "kind": "qa", "reference": "  "}, "'reference' is empty"),
    ({"question": "Capital of Kenya?", "kind": "qa", "references": "Nairobi"}, "'references' must be a list of strings"),
    ({"question": "Capital of Kenya?", "kind": "qa", "references": ["Nairobi", 7]},
     "'references' must be a list of strings"),
    ({"question": "Capital of Kenya?", "kind": "qa", "references": ["Nairobi", ""]}, "holds an empty answer"),
    ({"question": "Capital of Kenya?", "kind": "qa"}, "kind 'qa' needs a 'reference' or 'references'"),
    ({"question": "Capital of Kenya?", "kind": "qa", "references": []}, "kind 'qa' needs a 'reference'"),
    ({"question": "Capital of Kenya?", "kind": "qa", "answerable": "no"}, "'answerable' must be true or false"),
    ({"question": "Capital of Kenya?", "kind": "qa", "answerable": False, "references": ["Nairobi"]},
     "takes no reference"),
    ({"question": "Who is Tobias Renwick?", "kind": "fake", "references": ["x"]}, "are for kind 'qa'"),
], ids=["empty-reference", "references-text", "references-number", "references-empty-item", "qa-no-reference",
        "qa-empty-list", "answerable-text", "unanswerable-with-reference", "references-on-fake"])
def test_bad_qa_lines_name_the_file_and_line(line, fragment, tmp_path, capsys):
    path = tmp_path / "my_qa.jsonl"
    path.write_text(json.dumps(QA_OK) + "\n" + json.dumps(line) + "\n")
    code, out, err = _run(["eval", "--model", str(tmp_path / "no-such-model"), "--set", str(path), "--judge",
                           "reference", "--run-dir", str(tmp_path / "run")], capsys)
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:2: "), err
    assert fragment in lines[0] and "Traceback" not in err + out
    assert not (tmp_path / "run").exists()


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path, capsys):
    import socket

    rm = _mismatched_rm(tmp_path / "rm")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code, out, err = _run(["serve", "--rm", str(rm), "--port", str(port)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert f"--port {port}: 127.0.0.1:{port} is already in use" in lines[0] and "Traceback" not in err + out
