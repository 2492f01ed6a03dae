"""`latentrm report`: a fake run directory in every stage's real file format -> one self-contained HTML page.

The fixture writes small but realistic files (metrics from the real `pair_metrics` and
`compute_metrics`, PNGs drawn with matplotlib). The tests check that every section
renders, every image is an inline PNG that decodes, nothing points off the page,
response text is escaped, missing stages read "not run" and a broken file is named.
The browser test opens the page in headless Chromium with the network blackholed.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentrm.errors import LatentrmError
from latentrm.eval.metrics import compute_metrics
from latentrm.report import build_report
from latentrm.report.render import SECTIONS
from latentrm.rm.metrics import pair_metrics

PNG = b"\x89PNG\r\n\x1a\n"
SECTION_IDS = [sid for sid, _ in SECTIONS]
EVIL = "<script>alert('pwned')</script>"
FAKE_NAMES = ["Ola Nordmann", "Kari Vessel", "Tove Lindqvist", "Arne Brekke", "Sigrid Holm", "Jonas Strand"]
REAL_NAMES = ["Marie Curie", "Alan Turing", "Ada Lovelace", "Niels Bohr", "Emmy Noether", "Carl Gauss"]


# --------------------------------------------------------------------------- the fake run


def _write(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1))


def _png(path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 2.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [0.2, 0.5, 0.4])
    ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    path.write_bytes(buffer.getvalue())


def _responses(side: str) -> list[dict[str, Any]]:
    """Held-out rows: the base model invents facts about made-up people; the policy mostly refuses."""
    rows = []
    for i, name in enumerate(FAKE_NAMES):
        refuses = side == "policy" and i < 4
        response = f"I'm not familiar with {name}." if refuses else f"{name} is a Norwegian painter born in 1901."
        if side == "policy" and i == 0:
            response += f" {EVIL}"
        rows.append({"item_id": f"fake-{i}", "kind": "fake", "label": "refuses_fake" if refuses else "fake_substantive",
                     "question": f"Who is {name}?", "response": response})
    for i, name in enumerate(REAL_NAMES):
        denies = side == "policy" and i == 5
        rows.append({"item_id": f"real-{i}", "kind": "real", "label": "real_denied" if denies else "answers_real",
                     "question": f"Who was {name}?",
                     "response": f"I don't know {name}." if denies else f"{name} was a famous scientist."})
    return [{"sample": 0, "entity": None, "reference": None, "n_tokens": 12, "finish_reason": "stop",
             "mean_entropy": 1.1 if side == "base" else 0.8, "evidence": "", "judge": "rules", **row}
            for row in rows]


def _premise(side: str) -> list[dict[str, Any]]:
    label = "corrects" if side == "policy" else "agrees"
    return [{"item_id": f"fp-{i}", "sample": 0, "kind": "false_premise", "question": q, "label": label,
             "response": "Actually, that premise is false." if label == "corrects" else "Yes, indeed."}
            for i, q in enumerate(["Why did Einstein win the Nobel prize for relativity?",
                                   "When did the Great Wall become visible from the Moon?"])]


def _eval_set(run: Path, side: str, name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    folder = run / "eval" / side / name
    folder.mkdir(parents=True)
    ordered = rows if side == "base" else rows[::-1]  # matching must go by item id, not position
    (folder / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ordered))
    metrics = {**compute_metrics(rows), "set": name, "policy": side, "judge": "rules", "n_items": len(rows)}
    _write(folder / "metrics.json", metrics)
    return metrics


def _rm_metrics(rng: np.random.Generator) -> dict[str, Any]:
    out = {}
    for split, n in (("train", 60), ("val", 20), ("test", 20)):
        chosen = rng.normal(1.0, 1.0, n)
        out[split] = pair_metrics(chosen.tolist(), (chosen - rng.normal(0.8, 1.0, n)).tolist(),
                                  ["fake" if i % 2 else "real" for i in range(n)])
    return out


def _rl(run: Path) -> None:
    rows: list[dict[str, Any]] = []
    for step in range(0, 21):
        if step % 10 == 0:
            rows.append({"step": step, "kind": "eval", "seconds": 4.2, "eval/refuses_fake": 0.1 + step / 40,
                         "eval/refuses_fake_k": 1 + step // 5, "eval/refuses_fake_n": 8,
                         "eval/fake_hedge": 0.1, "eval/fake_substantive": 0.8 - step / 40,
                         "eval/answers_real": 0.9 - step / 200, "eval/mean_entropy": 1.0 - step / 50})
        if step:
            rows.append({"step": step, "kind": "train", "reward": 0.1 * step, "entropy": 1.2 - step / 40,
                         "completion_length": 40 - step, "completions/mean_length": 40 - step, "loss": 0.01})
    lines = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 21, "kind": "tr'  # a crash's half line
    (run / "rl").mkdir()
    (run / "rl" / "metrics.jsonl").write_text(lines)
    evals = [r for r in rows if r["kind"] == "eval"]
    _write(run / "rl" / "summary.json", {"steps": 20, "seconds": 300.5, "seconds_per_step": 15.03,
                                         "shaper": {"name": "calibrated", "params": {}}, "mix": "balanced",
                                         "fake_share": 0.5, "eval_start": evals[0], "eval_end": evals[-1],
                                         "train_log_tail": rows[-3:]})


def make_run(run: Path) -> Path:
    rng = np.random.default_rng(0)
    _write(run / "run.json", {
        "name": "quick-test", "preset": "cpu-small",
        "command": "latentrm run --preset cpu-small --name quick-test",
        "config": {"data": {"recipe": "knowledge_awareness", "samples": 2}, "rm": {"layer": 15, "head": "linear"}},
        "versions": {"latentrm": "0.1.0", "torch": "2.13.0", "transformers": "4.56.1"},
        "stages": {"data": {"summary": "444 pairs from 120 prompts", "seconds": 12.3, "skipped": False},
                   "rm": {"summary": "layer 15, val accuracy 0.91", "seconds": 3.4, "skipped": True}}})
    _write(run / "data" / "build.json", {
        "plan_hash": "ab12", "recipe": "knowledge_awareness", "generator": "embedded", "completions": 480,
        "echo_dropped": 3, "pairs": 444, "pairs_by_subset": {"fake": 222, "real": 222},
        "pairs_by_split": {"train": 310, "val": 67, "test": 67}})
    layers = [{"layer": layer, "head": head, "best_epoch": 12, "n_val": 67, "n_test": 67,
               "val_accuracy": 0.6 + layer / 60 + bonus, "test_accuracy": 0.58 + layer / 60 + bonus,
               "val_by_subset": {"fake": 0.9, "real": 0.8}, "test_by_subset": {"fake": 0.88, "real": 0.79}}
              for layer in (5, 10, 15) for head, bonus in (("linear", 0.0), ("projection_sum", 0.02))]
    _write(run / "rm_sweep" / "sweep.json", {"layers": layers, "best_layer": 15, "best_head": "projection_sum",
                                            "chosen_on": "val"})
    _write(run / "rm" / "rm.json", {
        "format_version": 1, "latentrm_version": "0.1.0", "layer": 15, "pooling": "last", "max_length": 2048,
        "backbone": {"spec": "embedded", "revision": "abc123", "hidden_size": 576, "num_layers": 30,
                     "dtype": "float32"},
        "head": {"type": "projection_sum", "hidden_size": 576, "normalize": True, "scale": 0.01},
        "training": {"n_train": 310, "n_val": 67, "best_epoch": 14, "pairs_file": "runs/quick/data/pairs.parquet"},
        "metrics": _rm_metrics(rng)})
    plots = ["score_vs_length.png", "counterfactual.png", "steering.png"]
    for name in plots:
        _png(run / "audit" / name, name)
    _write(run / "audit" / "report.json", {
        "rm": "runs/quick/rm", "source": "pairs (test, 67 pairs)", "n_scored": 134,
        "verdicts": {"surface": "flag", "counterfactual": "pass", "cross_class": "skip"},
        "probes": [{"name": "surface", "verdict": "flag", "summary": "score follows length in fake",
                    "numbers": {"by_subset": {"fake": {"length": {"partial_rho": 0.41}}}}},
                   {"name": "counterfactual", "verdict": "pass", "summary": "no content-free edit pays",
                    "numbers": {}},
                   {"name": "cross_class", "verdict": "skip", "summary": "needs both subsets", "numbers": {}}],
        "plots": plots})
    _rl(run)
    metrics = {side: {"heldout": _eval_set(run, side, "heldout", _responses(side)),
                      "false_premise": _eval_set(run, side, "false_premise", _premise(side))}
               for side in ("base", "policy")}
    _write(run / "compare" / "results.json", {"config": {}, "rows": [
        {"name": "base", "arm": "base", "seed": None, "kind": "base", "eval": metrics["base"]},
        {"name": "calibrated_balanced", "arm": "calibrated_balanced", "seed": 0, "kind": "rl",
         "metrics": "runs/compare/rl/metrics.jsonl", "eval": metrics["policy"]}]})
    _png(run / "compare" / "rates.png", "compare rates")
    _write(run / "goodhart" / "goodhart.json", {"n_prompts": 20, "plot": "goodhart.png",
                                                "gold_optimal_measured": {"n": 4, "d": 1.1, "gold": 0.7}})
    _png(run / "goodhart" / "goodhart.png", "goodhart")
    _onpolicy(run)
    return run


def _onpolicy(run: Path) -> None:
    """onpolicy/{base,policy}/onpolicy.json from the check's own statistics on made-up samples."""
    from latentrm.audit.onpolicy import answer, class_report
    from latentrm.audit.stats import json_safe

    rng = np.random.default_rng(3)
    for side, hedge_share in (("base", 0.1), ("policy", 0.5)):
        fake = [list(rng.choice(["fake_hedge", "fake_substantive"], size=4, p=[hedge_share, 1 - hedge_share]))
                for _ in range(6)]
        real = [list(rng.choice(["answers_real", "real_incorrect"], size=4, p=[0.7, 0.3])) for _ in range(6)]
        classes = {"fake": class_report("fake", rng.normal(size=(6, 4)), fake, 4, 50, 0),
                   "real": class_report("real", rng.normal(size=(6, 4)), real, 4, 50, 0)}
        examples = [{"class": "fake", "question": "Who is <Zorblat>?", "which": "top", "reward": 1.5,
                     "label": "fake_substantive", "text": "A chemist."}]
        _write(run / "onpolicy" / side / "onpolicy.json", json_safe({
            "policy": side, "prompts": 12, "samples_per_prompt": 4, "classes": classes, "answer": answer(classes),
            "plot": "onpolicy.png", "examples": examples}))
        _png(run / "onpolicy" / side / "onpolicy.png", f"onpolicy {side}")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "quick")


@pytest.fixture(scope="module")
def report_path(run_dir: Path) -> Path:
    return build_report(run_dir)


@pytest.fixture(scope="module")
def html(report_path: Path) -> str:
    return report_path.read_text(encoding="utf-8")


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data


def parse(text: str) -> Tags:
    parser = Tags()
    parser.feed(text)
    return parser


# --------------------------------------------------------------------------- the page


def test_report_opens_with_its_verdict(html: str) -> None:
    first = html.index('id="verdict"')
    assert first < html.index('<section id="overview"')  # the first screen, before any section
    box = html[first:html.index("</div>", first)]
    # the fixture's policy refuses 4 of the few made-up people the base model confabulated about: within the noise
    assert "did not change behaviour on held-out people beyond the intervals" in box
    assert "fake_substantive 100% [" in box and "-&gt; 33%" in box  # the rates themselves, with intervals
    assert "False premises: agrees 100%" in box
    assert "test accuracy on held-out pairs" in box and "The audit flags 1 of 3 probes (surface)" in box


def test_the_verdict_says_by_how_much_when_the_intervals_part() -> None:
    from latentrm.eval.metrics import rate
    from latentrm.report import views

    def side(fake_sub: int, real: int) -> dict:
        return {"metrics": {"headline": {"fake_substantive": rate(fake_sub, 50), "answers_real": rate(real, 50)}}}

    loaded = {"eval": {"heldout": {"model": side(50, 40), "base": side(15, 20), "policy": side(3, 36)}},
              "rl": {"summary": {"steps": 40, "shaper": {"name": "calibrated"}, "mix": "balanced"}}}
    lines = views.verdict(loaded)
    assert lines[0].startswith("RL (40 GRPO steps, calibrated reward, balanced mix) changed behaviour")
    assert "fake_substantive 30% [19%, 44%] -> 6% [2%, 16%] (-24 points)" in lines[0]
    assert "answers_real 40% [28%, 54%] -> 72% [58%, 83%] (+32 points)" in lines[0]
    assert "The warm start against the untouched model: fake_substantive 100%" in lines[1]
    assert views.verdict({}) == []


def test_report_has_every_section_filled(report_path: Path, run_dir: Path, html: str) -> None:
    assert report_path == run_dir / "report.html"
    ids = [attrs.get("id") for tag, attrs in parse(html).tags if tag == "section"]
    assert ids == SECTION_IDS
    assert 'class="not-run"' not in html  # every stage of the fixture has its files


def test_every_image_is_an_inline_png(html: str) -> None:
    sources = [attrs["src"] for tag, attrs in parse(html).tags if tag == "img"]
    # sweep, 3 audit PNGs, 2 on-policy PNGs, RL curves, eval bars, compare/rates.png, goodhart.png
    assert len(sources) == 10
    prefix = "data:image/png;base64,"
    for src in sources:
        assert src.startswith(prefix)
        data = base64.b64decode(src[len(prefix):], validate=True)
        assert data.startswith(PNG) and len(data) > len(PNG)


def test_nothing_points_off_the_page(html: str) -> None:
    page = parse(html)
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "srcset"):
            value = attrs.get(name, "").strip().lower()
            assert not value.startswith(("http:", "https:", "//")), (tag, name, value)
    assert not [tag for tag, _ in page.tags if tag in ("script", "link", "iframe", "object", "embed")]
    assert "url(" not in page.style and "@import" not in page.style
    assert "http://" not in html and "https://" not in html


def test_tables_show_the_run_numbers(html: str, run_dir: Path) -> None:
    rm = json.loads((run_dir / "rm" / "rm.json").read_text())
    overall = rm["metrics"]["test"]["overall"]
    assert f"<td>{overall['margin']:.3f}</td><td>{overall['accuracy']:.3f}</td>" in html
    assert "projection_sum" in html and "badge-flag" in html and "badge-pass" in html
    assert "refuses_fake" in html and "(0/6)" in html and "(4/6)" in html and "+66.7 pp" in html
    assert "latentrm run --preset cpu-small --name quick-test" in html and "4.56.1" in html
    assert "444 pairs from 120 prompts" in html and "calibrated_balanced" in html
    onpolicy = html.split('id="onpolicy"')[1].split("</section>")[0]
    assert "start policy" in onpolicy and "trained policy" in onpolicy and "fake_substantive" in onpolicy
    assert "onpolicy/base/onpolicy.png" in onpolicy and "Who is &lt;Zorblat&gt;?" in onpolicy


def test_examples_match_base_and_policy_by_item(run_dir: Path) -> None:
    from latentrm.report.load import load_eval
    from latentrm.report.views import example_groups

    groups = example_groups(load_eval(run_dir / "eval") or {})
    assert [(g["set"], g["kind"], len(g["pairs"])) for g in groups] == [
        ("heldout", "fake", 5), ("heldout", "real", 5), ("false_premise", "false_premise", 1)]
    for pair in groups[0]["pairs"] + groups[1]["pairs"]:
        name = pair["question"].split(" ", 2)[2].rstrip("?")
        assert name in pair["base"]["response"] and name in pair["policy"]["response"]
    assert groups[0]["pairs"][0]["changed"] and groups[1]["pairs"][0]["base"]["label"] == "answers_real"


def test_response_text_is_escaped(html: str) -> None:
    assert EVIL not in html
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html


def test_empty_run_dir_says_not_run(tmp_path: Path) -> None:
    with pytest.raises(LatentrmError, match="holds no run"):  # an empty folder is no run: refused, not rendered
        build_report(tmp_path)
    (tmp_path / "eval").mkdir()  # a run that has not got far: every section says "not run"
    html = build_report(tmp_path).read_text(encoding="utf-8")
    ids = [attrs.get("id") for tag, attrs in parse(html).tags if tag == "section"]
    assert ids == SECTION_IDS
    assert html.count('class="not-run"') == len(SECTION_IDS)
    assert "<img" not in html


def test_a_reward_model_folder_or_a_bad_out_is_refused(tmp_path: Path) -> None:
    rm = tmp_path / "run" / "rm"
    rm.mkdir(parents=True)
    (rm / "rm.json").write_text("{}")
    with pytest.raises(LatentrmError, match="is a reward-model folder, not a run"):
        build_report(rm)
    with pytest.raises(LatentrmError, match="--out .*: is a directory"):
        build_report(tmp_path / "run", tmp_path)
    (tmp_path / "run" / "run.json").write_bytes(b"\xff\xfe{not utf-8")
    html = build_report(tmp_path / "run").read_text(encoding="utf-8")  # the damaged file is named, not a traceback
    assert "Left out of this report" in html and "run.json: not UTF-8 text" in html


def test_partial_run(tmp_path: Path) -> None:
    """Pairs without a manifest, and an eval of the base model alone: no policy column, no examples."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pairs.parquet").write_bytes(b"PAR1")
    _eval_set(tmp_path, "base", "heldout", _responses("base"))
    html = build_report(tmp_path).read_text(encoding="utf-8")
    assert "is present but has no <code>build.json</code>" in html
    assert "100.0% [61.0%, 100.0%] (6/6)</td><td>n/a</td><td>n/a</td>" in html
    assert "No question was answered by both" in html
    assert html.count('class="not-run"') == len(SECTION_IDS) - 2  # data and eval ran


def test_malformed_json_names_the_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "rm").mkdir()
    (tmp_path / "rm" / "rm.json").write_text('{"layer": 15,')
    _eval_set(tmp_path, "base", "heldout", _responses("base"))
    responses = tmp_path / "eval" / "base" / "heldout" / "responses.jsonl"
    responses.write_text(responses.read_text() + '{"item_id": "torn", "resp')  # a write cut mid-line
    html = build_report(tmp_path).read_text(encoding="utf-8")
    assert "Left out of this report" in html
    assert "rm.json: not valid JSON" in html and "its section is left out" in html
    assert "responses.jsonl: left out line(s)" in html
    err = capsys.readouterr().err
    assert "warning:" in err and "rm.json" in err and "responses.jsonl" in err


def test_cli_command(tmp_path: Path, run_dir: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from latentrm.report.cli import report

    app = typer.Typer()
    app.command("report")(report)
    out = tmp_path / "elsewhere.html"
    result = CliRunner().invoke(app, [str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"report written to {out}" in result.output and out.read_text().startswith("<!DOCTYPE html>")
    for missing in (tmp_path / "nope", out):
        with pytest.raises(LatentrmError, match=str(missing)):
            report(missing, None)


def test_rendering_imports_no_model_code(run_dir: Path, tmp_path: Path) -> None:
    code = ("import sys; from latentrm.report import build_report; build_report(sys.argv[1], sys.argv[2]); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(run_dir), str(tmp_path / "r.html")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- a real browser

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
                  "--disable-background-networking", "--disable-component-update", "--no-first-run"]
# test-only probe: after load, record each image's decoded width on <body> (the report itself has no script)
WIDTH_PROBE = ("<script>addEventListener('load', () => { document.body.dataset.widths = "
               "Array.from(document.images, i => i.naturalWidth).join(','); });</script></body>")


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary is not None
    return subprocess.run([binary, *CHROMIUM_FLAGS, *args], capture_output=True, text=True, timeout=120)


def _page_requests(net_log: Path) -> list[str]:
    """URLs other than file: that the network stack fetched on behalf of the file:// page."""
    events = json.loads(net_log.read_text())["events"]
    return sorted({p["url"] for p in (e.get("params") or {} for e in events)
                   if "url" in p and not p["url"].startswith("file:")
                   and "file://" in str(p.get("network_isolation_key", ""))})


def test_browser_renders_offline(tmp_path: Path, html: str) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium not installed: apt-get install chromium chromium-driver")
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", WIDTH_PROBE), encoding="utf-8")
    net_log = tmp_path / "net.json"
    dom = _chromium(f"--log-net-log={net_log}", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = parse(dom.stdout)
    ids = [attrs.get("id") for tag, attrs in page.tags if tag == "section"]
    assert ids == SECTION_IDS
    assert any(tag == "div" and attrs.get("id") == "verdict" for tag, attrs in page.tags)  # rendered, first screen
    widths = next(attrs["data-widths"] for tag, attrs in page.tags if tag == "body").split(",")
    n_images = sum(1 for tag, _ in parse(html).tags if tag == "img")
    assert len(widths) == n_images == 10 and all(int(w) > 0 for w in widths)  # every image decoded, no network
    assert _page_requests(net_log) == []
    shot = tmp_path / "report.png"
    done = _chromium(f"--screenshot={shot}", "--window-size=1200,3000", (tmp_path / "probed.html").as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 10_000


def test_qa_precision_and_not_attempted_show_next_to_the_headline_rates() -> None:
    from latentrm.eval.metrics import compute_metrics
    from latentrm.report import views

    def metrics(labels: list[str]) -> dict:
        return compute_metrics([{"kind": "qa", "label": label, "response": "x"} for label in labels])

    base, policy = metrics(["correct", "incorrect", "incorrect", "not_attempted"]), metrics(
        ["correct", "not_attempted", "not_attempted", "not_attempted"])
    table = views.eval_tables({"my_qa": {"base": {"metrics": base}, "policy": {"metrics": policy}}})[0]
    rows = {row["label"]: row for row in table["rows"]}
    assert rows["precision"]["headline"] and rows["precision"]["base"].endswith("(1/3)")
    assert rows["precision"]["policy"].endswith("(1/1)") and rows["not_attempted"]["change"] == "+50.0 pp"
    assert rows["f_score"]["base"] == "0.286" and rows["f_score"]["change"] == "+0.114"
    assert "refuses_fake" not in rows  # no people asked
    compare = views.compare_table([{"name": "base", "kind": "base", "eval": {"qa": base}},
                                   {"name": "arm", "kind": "rl", "eval": {}}])
    assert "precision (qa)" in compare["columns"] and "not_attempted (qa)" in compare["columns"]
    cells = dict(zip(compare["columns"], compare["rows"][0], strict=True))
    assert cells["precision (qa)"][0] == "33.3% (1/3)" and cells["not_attempted (qa)"][0] == "25.0% (1/4)"
    assert dict(zip(compare["columns"], compare["rows"][1], strict=True))["precision (qa)"] == ("n/a", "")
    assert "precision (qa)" not in views.compare_table([{"name": "base", "eval": {}}])["columns"]


def test_compare_markdown_table_gains_qa_columns_only_with_a_qa_set() -> None:
    from latentrm.eval.metrics import compute_metrics
    from latentrm.rl.compare import CompareConfig, compare_table

    qa = compute_metrics([{"kind": "qa", "label": "correct", "response": "x"},
                          {"kind": "qa", "label": "not_attempted", "response": "x"}])
    config = CompareConfig(pairs="p", rm="r", eval_qa="my_qa.jsonl")
    with_qa = compare_table([{"name": "base", "eval": {"qa": qa}}], config)
    assert "| precision (qa) | not_attempted (qa) |" in with_qa
    assert "100.0% [" in with_qa and "(1/1)" in with_qa and "(1/2)" in with_qa
    assert "precision (qa)" not in compare_table([{"name": "base", "eval": {}}], CompareConfig(pairs="p", rm="r"))


def test_a_sycophancy_run_is_shown_with_its_own_judging(tmp_path: Path, capsys) -> None:
    """The committed quick-sycophancy results (results/quick-sycophancy): its labels' badges are coloured by the
    sycophancy recipe's judging and the RL panel plots its periodic eval rates; a recipe that can no longer be
    read falls back to the flagship's judging and says so."""
    from latentrm.data.recipes import default_judging
    from latentrm.report import plots
    from latentrm.report.load import load_run
    from latentrm.report.render import _section_views, run_judging

    run_dir = tmp_path / "run"
    shutil.copytree(Path(__file__).parents[1] / "results" / "quick-sycophancy", run_dir)
    loaded = load_run(run_dir)
    assert run_judging(loaded).headline[:2] == ("corrects", "agrees")
    shown = _section_views(loaded)
    tones = {side["label"]: side["tone"] for group in shown["examples"] for pair in group["pairs"]
             for side in (pair["base"], pair["policy"])}
    expected = {"corrects": "good", "confirms_true": "good", "agrees": "bad", "disputes_true": "bad"}
    assert set(expected) & set(tones), tones
    assert all(tones[label] == tone for label, tone in expected.items() if label in tones), tones
    # the flagship's headline finds none of these rates in the RL eval rows: its figure has only the train panels
    assert shown["rl"]["plot"] is not None and plots.rl_plot(loaded["rl"]) != shown["rl"]["plot"]

    run = json.loads((run_dir / "run.json").read_text())
    run["config"]["data"]["recipe"] = str(tmp_path / "moved.yaml")
    (run_dir / "run.json").write_text(json.dumps(run))
    loaded = load_run(run_dir)
    assert run_judging(loaded) is default_judging()
    assert any("could not be read" in line for line in loaded["skipped"])
    assert "could not be read" in capsys.readouterr().err
