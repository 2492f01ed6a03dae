"""`latentrm run` end to end on a tiny random model (fake generation for the data): every stage runs and writes
its manifest, a rerun skips everything, a change redoes only what follows it, `--from` forces, bad presets and
overrides fail in one line. The shipped presets resolve."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from latentrm.errors import LatentrmError

STAGE_FOLDERS = ["data", "features", "rm_sweep", "rm", "audit", "warm_start/baseline-sft", "eval/model/heldout",
                 "eval/base/heldout",
                 "onpolicy/base", "rl", "rounds/2/data", "rounds/2/rm", "rounds/2/rl", "eval/policy/heldout",
                 "onpolicy/policy"]


def _preset(tmp_path: Path, model: Path) -> Path:
    preset = {
        "name": "tiny", "model": str(model), "threads": 1,
        "data": {"backend": "fake", "n_real": 12, "n_fake": 12, "samples": 2, "progress": False},
        "features": {"layers": [1, 2], "max_length": 256},
        "sweep": {"heads": ["linear", "mlp"], "select": "onpolicy"},
        "rm": {"epochs": 20},
        "warm_start": {"method": "sft", "steps": 1, "batch_size": 4, "learning_rate": 1e-4},
        "audit": {"max_pairs": 40, "max_edits": 4, "probes": ["surface", "counterfactual", "cross_class"]},
        "rl": {"steps": 2, "prompts_per_step": 2, "num_generations": 2, "max_completion_length": 6,
               "learning_rate": 1e-3, "eval_n": 2, "eval_false_premise": 1, "eval_max_new_tokens": 4,
               "save_steps": 2, "rounds": 2},
        "eval": {"sets": ["heldout"], "n_real": 3, "n_fake": 3, "max_new_tokens": 4},
        "onpolicy": {"n_real": 2, "n_fake": 2, "n_false_premise": 1, "samples": 2, "max_new_tokens": 4,
                     "bootstrap": 50},
        "estimates": {"data": 1.0, "rl": 5.0},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(preset))
    return path


def _stamps(run_dir: Path) -> dict[str, str]:
    return {folder: json.loads((run_dir / folder / "manifest.json").read_text())["created_at"] + ":" +
            str((run_dir / folder / "manifest.json").stat().st_mtime_ns) for folder in STAGE_FOLDERS}


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    from latentrm.pipeline import plan
    from latentrm.pipeline.run import run

    root = tmp_path_factory.mktemp("pipeline")
    preset = _preset(root, tiny_model_dir)
    config = plan.resolve(str(preset), runs_root=str(root / "runs"))
    calls: list[tuple[str, bool]] = []
    folder = run(config, on_stage=lambda i, name, record: calls.append((name, "seconds" in record)), log=print)
    return preset, root, config, folder, calls


def test_every_stage_runs_and_writes_its_manifest(tiny_run):
    preset, root, config, folder, calls = tiny_run
    assert folder == root / "runs" / "tiny"
    assert [name for name, done in calls if done] == ["data", "warm_start", "features", "sweep", "rm", "audit",
                                                      "eval_model", "eval_base", "onpolicy_base", "rl", "rounds", "eval_policy",
                                                      "onpolicy_policy", "report"]
    for stage in STAGE_FOLDERS:
        assert (folder / stage / "manifest.json").is_file(), stage
    record = json.loads((folder / "run.json").read_text())
    assert set(record["stages"]) == {name for name, _ in calls}
    assert "pairs" in record["stages"]["data"]["summary"] and record["versions"]["python"]
    sweep = json.loads((folder / "rm_sweep" / "sweep.json").read_text())
    rm = json.loads((folder / "rm" / "rm.json").read_text())
    assert (rm["layer"], rm["head"]["type"]) == (sweep["best_layer"], sweep["best_head"])  # the sweep's choice
    judged = [json.loads(line) for line in (folder / "onpolicy" / "select" / "judged.jsonl").read_text().splitlines()]
    assert len(judged) == (2 + 2 + 1) * 2 and all(row["reward"] is None for row in judged)  # the start policy's
    assert sweep["onpolicy"]["samples"] == sum(row["side"] in ("wanted", "unwanted") for row in judged)
    assert (folder / "rl" / "policy" / "config.json").is_file()
    # round 2: pairs from round 1's policy, merged with round 1's; rm 2 on them; RL from that policy against rm 2
    round2 = folder / "rounds" / "2"
    build = json.loads((round2 / "data" / "config.json").read_text())["config"]
    assert build["policy"] == str(folder / "rl" / "policy")
    merged = pd.read_parquet(round2 / "pairs.parquet")
    first, second = pd.read_parquet(folder / "data" / "pairs.parquet"), pd.read_parquet(round2 / "data" / "pairs.parquet")
    assert set(second["generator"]) != set(first["generator"])  # sampled from round 1's policy
    assert len(merged) == len(pd.concat([first, second]).drop_duplicates(["prompt", "chosen", "rejected"]))
    assert json.loads((round2 / "rm" / "rm.json").read_text())["training"]["pairs_file"] == str(round2 / "pairs.parquet")
    rl2 = json.loads((round2 / "rl" / "config.json").read_text())["config"]
    assert (rl2["policy"], rl2["rm"]) == (str(folder / "rl" / "policy"), str(round2 / "rm"))
    policy = json.loads((folder / "eval" / "policy" / "heldout" / "metrics.json").read_text())
    assert policy["policy"].startswith(str(round2 / "rl" / "policy"))  # the last round's policy is evaluated
    html = (folder / "report.html").read_text()  # its content is tested in test_report.py
    warm = str(folder / "warm_start" / "baseline-sft" / "policy")  # every start-policy stage reads the warm start
    base = json.loads((folder / "onpolicy" / "base" / "onpolicy.json").read_text())
    assert base["policy"] == warm and set(base["classes"]) >= {"fake", "real"}
    assert json.loads((folder / "rl" / "config.json").read_text())["config"]["policy"] == warm
    assert json.loads((folder / "eval" / "base" / "heldout" / "metrics.json").read_text())["policy"].startswith(warm)
    untouched = json.loads((folder / "eval" / "model" / "heldout" / "metrics.json").read_text())
    assert untouched["policy"].startswith(str(config.model))  # the warm start's cost shows against the model
    assert "model (untouched) rate" in html
    trained = json.loads((folder / "onpolicy" / "policy" / "onpolicy.json").read_text())
    assert trained["policy"] == str(folder / "rounds" / "2" / "rl" / "policy")
    assert trained["rm"] == str(folder / "rounds" / "2" / "rm")  # scored by the head round 2 trained against
    assert base["rm"] == str(folder / "rm")
    for section in ("rm", "rm-sweep", "audit", "onpolicy", "rl", "eval", "examples", "reproduce"):
        assert f'id="{section}"' in html
    sweep_section = html.split('id="rm-sweep"')[1].split("</section>")[0]
    assert "not run" not in sweep_section and "on-policy AUROC (report half)" in sweep_section  # filled


def test_a_rerun_skips_every_stage(tiny_run):
    from latentrm.pipeline.run import run

    _, _, config, folder, _ = tiny_run
    before = _stamps(folder)
    built = json.loads((folder / "run.json").read_text())["stages"]
    run(config, log=print)
    assert _stamps(folder) == before
    stages = json.loads((folder / "run.json").read_text())["stages"]
    assert all(stages[name].get("skipped") for name in stages if name != "report"), stages
    assert stages["rl"]["built_seconds"] == built["rl"]["seconds"]  # the report shows how long it took to build


def test_a_kill_in_round_two_resumes_without_redoing_round_one(tiny_run):
    from latentrm.pipeline.run import run

    _, _, config, folder, _ = tiny_run
    before = _stamps(folder)
    (folder / "rounds" / "2" / "rl" / "manifest.json").unlink()  # killed in round 2's RL (its manifest is last)
    lines: list[str] = []
    run(config, log=lines.append)
    assert any("resuming the unfinished run from" in line and "checkpoint-2" in line for line in lines), lines
    after = _stamps(folder)
    changed = [s for s in STAGE_FOLDERS if after[s] != before[s]]
    assert changed[0] == "rounds/2/rl"  # round 2's RL ran again; round 1 and round 2's data and rm did not
    assert set(changed) <= {"rounds/2/rl", "eval/policy/heldout", "onpolicy/policy"}


def test_a_change_redoes_only_the_stages_after_it(tiny_run):
    from latentrm.pipeline import plan
    from latentrm.pipeline.run import run

    preset, root, _, folder, _ = tiny_run
    before = _stamps(folder)
    changed = plan.resolve(str(preset), runs_root=str(root / "runs"), sets=["audit.max_edits=3"])
    run(changed, log=print)
    after = _stamps(folder)
    assert [s for s in STAGE_FOLDERS if after[s] != before[s]] == ["audit"]  # audit feeds no later stage
    run(plan.resolve(str(preset), runs_root=str(root / "runs")), log=print)  # back to the module's config


def test_a_changed_rl_config_replaces_the_stale_run_instead_of_refusing_it(tiny_run):
    """The pipeline owns its folders: an RL run of another config is stale, as any stage's outputs are, and is
    replaced (a bare `rl train` refuses it instead)."""
    from latentrm.pipeline import plan
    from latentrm.pipeline.run import run

    preset, root, _, folder, _ = tiny_run
    before = _stamps(folder)
    run(plan.resolve(str(preset), runs_root=str(root / "runs"), sets=["rl.learning_rate=2e-3"]), log=print)
    after = _stamps(folder)
    assert after["rl"] != before["rl"] and after["data"] == before["data"]
    assert json.loads((folder / "rl" / "config.json").read_text())["config"]["learning_rate"] == 2e-3
    run(plan.resolve(str(preset), runs_root=str(root / "runs")), log=print)  # back to the module's config


def test_from_forces_a_stage_and_every_later_one(tiny_run):
    from latentrm.pipeline.run import run

    _, _, config, folder, _ = tiny_run
    before = _stamps(folder)
    run(config, from_stage="eval_base", log=print)
    after = _stamps(folder)
    assert [s for s in STAGE_FOLDERS if after[s] != before[s]] == ["eval/base/heldout", "onpolicy/base", "rl",
                                                                   "rounds/2/data", "rounds/2/rm", "rounds/2/rl",
                                                                   "eval/policy/heldout", "onpolicy/policy"]


@pytest.mark.parametrize("sets, message", [
    (["data.bogus=1"], "data: unknown field(s) bogus"),
    (["rl.pairs=x.parquet"], "rl.pairs is set by the pipeline itself"),
    (["rl.steps=0"], "--steps 0"),
    (["sweep.heads=[nope]"], "unknown head(s) nope"),
    (["data.n_real=many"], "n_real='many' should be int"),
    (["datan_real=3"], "unknown section"),
    (["data.n_real"], "write section.field=value"),
    (["onpolicy.samples=0"], "--samples 0"),
    (["onpolicy.samples=2", "onpolicy.n_max=4"], "--n-max 4"),
    (["onpolicy.enabled=maybe"], "onpolicy.enabled"),
    (["warm_start.method=banana"], "warm_start.method: 'banana'; use one of none, sft, kto, dpo, ipo"),
    (["warm_start.steps=0"], "--steps must be >= 1"),
    (["warm_start.policy=x"], "warm_start.policy is set by the pipeline itself"),
    (["sweep.select=banana"], "sweep.select 'banana': use pairs"),
    (["rl.rounds=0"], "rl.rounds: 0 must be a whole number >= 1"),
    (["features.layers=[1, 2, 999]"], "features.layers: 999 does not exist; "),  # before any stage runs
    (["eval.sets=[banana]"], "eval.sets: unknown set 'banana'"),
    (["eval.max_new_tokens=0"], "max_new_tokens, batch_size and samples must be >= 1"),
    (["threads=0"], "threads=0: give a whole number of CPU threads >= 1"),
])
def test_bad_overrides_fail_in_one_line(tiny_model_dir, tmp_path, sets, message):
    from latentrm.pipeline import plan

    with pytest.raises(LatentrmError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        plan.resolve(str(_preset(tmp_path, tiny_model_dir)), sets=sets)


@pytest.mark.parametrize("name, message", [
    ("", "--name '': give a run name"),
    ("../../escape", "--name '../../escape': a run name is one folder name"),
    ("a/b", "not a path"),
])
def test_a_run_name_is_a_name_not_a_path(tiny_model_dir, tmp_path, name, message):
    from latentrm.pipeline import plan

    with pytest.raises(LatentrmError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan.resolve(str(_preset(tmp_path, tiny_model_dir)), name=name)


def test_an_empty_preset_is_refused(tmp_path):
    from latentrm.pipeline import plan

    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(LatentrmError, match="the preset is empty"):
        plan.resolve(str(empty))


def test_cli_errors(run_cli, tmp_path):
    code, _, err = run_cli(["run", "--preset", "no-such-preset"])
    assert code == 2 and "no such preset" in err and "quick" in err
    code, _, err = run_cli(["run", "--from", "everything"])
    assert code == 2 and "--from 'everything'" in err


@pytest.mark.parametrize("name", ["quick", "cpu-full", "gpu-qwen3-8b"])
def test_shipped_presets_resolve(name):
    from latentrm.pipeline import plan

    config = plan.resolve(name)
    assert config.preset == name and config.run_dir.name == name
    assert plan.rl_config(config, "pairs.parquet").steps >= 1


def test_gpu_preset_runs_when_its_model_is_cached():
    from latentrm.models import resolve_model
    from latentrm.pipeline import plan

    config = plan.resolve("gpu-qwen3-8b")
    try:
        resolve_model(config.model)
    except LatentrmError:
        pytest.skip(f"{config.model} is not in the local Hugging Face cache (nothing is downloaded)")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("the gpu-qwen3-8b preset needs a CUDA GPU")
    from latentrm.pipeline.run import run

    folder = run(config, log=print)
    assert (folder / "report.html").is_file()


def test_run_prints_the_resolved_rl_config_and_precision(tiny_run, run_cli):
    preset, root, config, folder, _ = tiny_run
    code, out, err = run_cli(["run", "--preset", str(preset), "--runs-root", str(root / "runs")])  # all stages skip
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("rl (resolved"))
    # the rl preset's values appear beside the section's: what GRPO will use, not only the overrides
    assert "steps=2" in line and "num_generations=2" in line and "shaper=calibrated" in line and "algorithm=grpo" in line
    assert "precision: float32 on cpu" in out


NEW_RECIPE = """
name: who_is_who
description: say so when a person is unknown; describe a known one from notes
templates:
  - "Who is {name}?"
  - "Tell me about {name}."
behaviours:
  hedge: "(?i)(not familiar|don't know|no information)"
echo_markers: ["[Note"]
classes:
  known: {entities: real, chosen: grounded, rejected: unsure}
  unknown: {entities: fake, chosen: unsure, rejected: plain}
variants:
  grounded: {system: "Notes about {name}: {grounding}", reject_if: hedge}
  unsure:
    prefill: "[Note: I do not know this person.]\\n\\n"
    openers: ["I'm not familiar with {name}."]
  plain: {reject_if: hedge}
judging:
  judge: rules
  eval_sets: [heldout]
  headline: [fake_substantive, answers_real]
  summary: [fake_substantive, answers_real]
  classes:
    fake: {wanted: [refuses_fake, fake_hedge], unwanted: [fake_substantive], best_of: [fake_substantive]}
    real: {wanted: [answers_real], unwanted: [real_denied, real_incorrect], best_of: [answers_real]}
"""


def test_a_new_recipe_file_runs_the_whole_pipeline_with_no_code_change(tiny_model_dir, tmp_path):
    """A recipe written from scratch in a temporary folder: data, features, sweep, head, audit, RL, eval and report
    all run on it, the pairs carry its classes, and the eval reports its own headline rates, in its order."""
    from latentrm.pipeline import plan
    from latentrm.pipeline.run import run

    recipe = tmp_path / "who_is_who.yaml"
    recipe.write_text(NEW_RECIPE)
    preset = yaml.safe_load(_preset(tmp_path, tiny_model_dir).read_text())
    preset["data"]["recipe"] = str(recipe)
    preset["rl"]["rounds"] = 1
    preset["sweep"] = {"heads": ["linear"]}
    preset["warm_start"] = {"method": "none"}
    preset["eval"].pop("sets")  # the recipe's eval_sets are the default
    path = tmp_path / "who.yaml"
    path.write_text(yaml.safe_dump(preset))
    config = plan.resolve(str(path), runs_root=str(tmp_path / "runs"))
    folder = run(config, log=lambda *_: None)
    pairs = pd.read_parquet(folder / "data" / "pairs.parquet")
    assert set(pairs["recipe"]) == {"who_is_who"} and len(pairs) > 0
    metrics = json.loads((folder / "eval" / "policy" / "heldout" / "metrics.json").read_text())
    assert list(metrics["headline"]) == ["fake_substantive", "answers_real"] and metrics["recipe"] == str(recipe)
    assert not (folder / "eval" / "policy" / "false_premise").exists()  # not among the recipe's eval sets
    # RL's live judge logs the recipe's headline rates, and only those
    logged = {k for line in (folder / "rl" / "metrics.jsonl").read_text().splitlines()
              for k in json.loads(line) if k.startswith("train_judge/")}
    assert logged == {"train_judge/fake_substantive", "train_judge/answers_real"}
    assert (folder / "report.html").is_file()
