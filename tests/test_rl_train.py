"""GRPO through TRL on a tiny random model: the policy moves, metrics and evals are written, runs skip,
resume after a kill, refuse another config, and LoRA scoring reads the frozen base (never the adapters)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from latentrm.cli import main
from latentrm.errors import LatentrmError

ROWS = [{"prompt": f"Who is person {i}?",
         "chosen": f"I am not familiar with person {i}." if i % 2 else f"Person {i} is a chemist.",
         "rejected": f"Person {i} is a chemist." if i % 2 else f"I am not familiar with person {i}.",
         "subset": "fake" if i % 2 else "real", "split": ["train", "train", "val", "test"][i % 4],
         "entity_id": f"e{i}"} for i in range(48)]


@pytest.fixture(scope="module")
def tiny_rm(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rl-rm")
    pairs = folder / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    try:
        main(["rm", "train", "--pairs", str(pairs), "--run-dir", str(folder), "--model", str(tiny_model_dir),
              "--layer", "2", "--epochs", "20"])
    except SystemExit as exc:
        assert not exc.code
    return pairs, folder / "rm"


def _config(tiny_model_dir, tiny_rm, run_dir, **changes):
    from latentrm.rl.grpo_config import build_config

    pairs, rm = tiny_rm
    values = dict(pairs=str(pairs), rm=str(rm), policy=str(tiny_model_dir), run_dir=str(run_dir), steps=2,
                  prompts_per_step=2, num_generations=2, max_completion_length=6, learning_rate=1e-3,
                  eval_n=2, eval_false_premise=1, eval_max_new_tokens=4, eval_batch_size=8, save_steps=2,
                  shaper="calibrated", threads=1)
    values.update(changes)
    return build_config(None, **values)


def _weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    out: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(path)))
    return out


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_grpo_steps_move_the_policy_and_write_metrics(tiny_model_dir, tiny_rm, tmp_path):
    from latentrm.rl.grpo_trainer import run

    config = _config(tiny_model_dir, tiny_rm, tmp_path / "run")
    out = run(config)
    before, after = _weights(tiny_model_dir), _weights(out / "policy")
    changed = [name for name in before if name in after and not np.array_equal(before[name], after[name])]
    assert changed, "GRPO left every parameter as it was"
    rows = _rows(out / "metrics.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [1, 2] and [r["step"] for r in evals] == [0, 2]
    for key in ("reward", "entropy", "truncated_share", "latent/raw_mean", "artifacts/padding",
                "train_judge/fake_substantive"):
        assert all(key in r for r in train), key
    assert {"eval/fake_substantive", "eval/answers_real", "eval/agrees", "eval/mean_entropy"} <= set(evals[0])
    assert (out / "eval" / "step-00002.json").exists() and (out / "manifest.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["shaper"]["name"] == "calibrated"
    # same config and inputs: skipped; another config into the same folder: refused
    logged: list[str] = []
    assert run(config, log=logged.append) == out and "up to date" in logged[0]
    with pytest.raises(LatentrmError, match="another config"):
        run(replace(config, seed=1))


def test_a_killed_run_resumes_from_its_last_checkpoint(tiny_model_dir, tiny_rm, tmp_path, monkeypatch):
    import latentrm.rl.session as session_module
    from latentrm.rl.grpo_trainer import run

    config = _config(tiny_model_dir, tiny_rm, tmp_path / "run", steps=4, save_steps=2, eval_every=0)
    real_line = session_module.progress_line

    def kill_at_step_3(row, max_steps, *rest):
        if row["step"] == 3:
            raise KeyboardInterrupt  # what Ctrl-C or a kill signal does mid-run
        return real_line(row, max_steps, *rest)

    monkeypatch.setattr(session_module, "progress_line", kill_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        run(config)
    out = tmp_path / "run" / "rl"
    assert (out / "checkpoints" / "checkpoint-2").exists() and not (out / "manifest.json").exists()
    monkeypatch.setattr(session_module, "progress_line", real_line)
    with pytest.raises(LatentrmError, match="pass --resume"):
        run(config)
    run(config, resume=True)
    steps = [r["step"] for r in _rows(out / "metrics.jsonl") if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4]  # step 3's first attempt was dropped, nothing lost, nothing twice
    assert json.loads((out / "summary.json").read_text())["steps"] == 4


def test_lora_reward_reads_the_frozen_base_never_the_adapters(tiny_model_dir, tiny_rm, tmp_path):
    import torch

    from latentrm.rl.grpo_trainer import prepare
    from latentrm.rl.session import build_session
    from latentrm.rm.model import LatentRewardModel

    config = _config(tiny_model_dir, tiny_rm, tmp_path / "run", lora=True, lora_r=4, lora_alpha=8)
    prepared = prepare(config)
    assert prepared["shared"]
    session = build_session(config, prepared, tmp_path / "run" / "rl", log=lambda *_: None)
    model = session.trainer.model
    with torch.no_grad():  # make the adapters matter: LoRA's B starts at zero
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    prompts = ["Who is person 1?", "Who is person 2?"]
    completions = ["I am not familiar with person 1.", "Person 2 is a chemist."]
    model.train()
    shared, _ = session.reward.raw_scores(prompts, completions)
    assert model.training  # scoring switched to eval mode and back
    frozen = LatentRewardModel.load(tiny_rm[1]).score(prompts, completions)  # a separately loaded backbone
    np.testing.assert_allclose(shared, frozen, atol=1e-5)
    with_adapters = LatentRewardModel.load(tiny_rm[1], backbone=session.reward.rm.backbone).score(prompts, completions)
    assert not np.allclose(with_adapters, frozen, atol=1e-3)  # the adapters do change the states


@pytest.mark.parametrize("argv_extra, message", [
    (["--mix", "even"], "--mix 'even'"),
    (["--shaper", "ensemble"], "needs an ensemble"),
    (["--fake-share", "0.75"], "use it with --mix natural"),
    (["--set", "nope=1"], "unknown RLConfig field"),
    (["--num-generations", "1"], "num-generations"),
    (["--resume"], "holds no run to resume"),
])
def test_bad_rl_input_gets_one_line(tiny_model_dir, tiny_rm, tmp_path, run_cli, argv_extra, message):
    pairs, rm = tiny_rm
    code, _, err = run_cli(["rl", "train", "--pairs", str(pairs), "--rm", str(rm), "--policy", str(tiny_model_dir),
                         "--run-dir", str(tmp_path / "run"), *argv_extra])
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_rl_refuses_prompts_without_a_class_and_a_shaper_without_quantiles(tiny_model_dir, tiny_rm, tmp_path,
                                                                          run_cli):
    pairs, rm = tiny_rm
    no_class = tmp_path / "no_class.jsonl"
    no_class.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "subset"}) + "\n" for r in ROWS))
    code, _, err = run_cli(["rl", "train", "--pairs", str(no_class), "--rm", str(rm), "--run-dir", str(tmp_path)])
    assert code == 2 and "subset" in err
    meta = json.loads((rm / "rm.json").read_text())
    bare = tmp_path / "bare_rm"
    bare.mkdir()
    (bare / "head.safetensors").write_bytes((rm / "head.safetensors").read_bytes())
    (bare / "rm.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "chosen_quantiles"}))
    code, _, err = run_cli(["rl", "train", "--pairs", str(pairs), "--rm", str(bare), "--run-dir", str(tmp_path)])
    assert code == 2 and "chosen_quantiles" in err


def test_presets_parse_and_build_a_grpo_config(tmp_path):
    from latentrm.rl.grpo_config import PRESET_DIR, build_config

    names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    assert {"cpu-small", "gpu"} <= set(names)
    for name in names:
        config = build_config(name, pairs="p.jsonl", rm="rm")
        args = config.to_grpo_config(tmp_path, use_cpu=True)
        assert args.num_generations == config.num_generations
        assert args.per_device_train_batch_size == config.prompts_per_step * config.num_generations
        assert args.shuffle_dataset is False and args.max_steps == config.steps
    with pytest.raises(LatentrmError, match="no such preset"):
        build_config("nope")


def test_compare_trains_every_arm_and_baseline_and_writes_one_table(tiny_model_dir, tiny_rm, tmp_path):
    from latentrm.rl.compare import CompareConfig, run

    pairs, rm = tiny_rm
    config = CompareConfig(pairs=str(pairs), rm=str(rm), run_dir=str(tmp_path), preset="cpu-small",
                           rl_sets={"policy": str(tiny_model_dir), "steps": 2, "prompts_per_step": 2, "trainable_layers": 0,
                                    "num_generations": 2, "max_completion_length": 4, "eval_n": 1,
                                    "eval_false_premise": 1, "eval_max_new_tokens": 2, "eval_every": 1, "threads": 1},
                           arms=("raw_natural", "quantile_match_balanced"), baselines=("kto",), eval_n=1,
                           eval_false_premise=1, eval_max_new_tokens=2)
    out = run(config, log=lambda *_: None)
    table = (out / "table.md").read_text().splitlines()
    assert [line.split(" | ")[0].lstrip("| ") for line in table[2:6]] == [
        "base", "raw_natural-s0", "quantile_match_balanced-s0", "kto"]
    assert "(0/1)" in table[2] or "(1/1)" in table[2]  # every rate carries k/n
    natural = json.loads((tmp_path / "raw_natural-s0" / "rl" / "config.json").read_text())["config"]
    assert natural["mix"] == "natural" and natural["fake_share"] == 0.75
    for name in ("rates.png", "training.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from latentrm.rl.compare import render

    rendered = (render(tmp_path) / "table.md").read_text()  # from files only
    assert "| raw_natural-s0 |" in rendered and "s/step" in rendered and " -> " in rendered


def test_a_warm_start_trains_the_baseline_first_and_every_arm_starts_from_it(tiny_model_dir, tiny_rm, tmp_path):
    from latentrm.rl.compare import CompareConfig, run

    pairs, rm = tiny_rm
    config = CompareConfig(pairs=str(pairs), rm=str(rm), run_dir=str(tmp_path), preset="cpu-small",
                           rl_sets={"policy": str(tiny_model_dir), "steps": 1, "prompts_per_step": 2, "trainable_layers": 0,
                                    "num_generations": 2, "max_completion_length": 4, "eval_n": 1,
                                    "eval_false_premise": 0, "eval_max_new_tokens": 2, "threads": 1},
                           arms=("calibrated_balanced",), baselines=("kto",), warm_start="kto", eval_n=1,
                           eval_false_premise=0, eval_max_new_tokens=2, warm_start_steps=1)
    out = run(config, log=lambda *_: None)
    rows = [line.split(" | ")[0].lstrip("| ") for line in (out / "table.md").read_text().splitlines()[2:5]]
    assert rows == ["base", "kto-warm", "calibrated_balanced-s0"]  # the kto baseline is the warm-start row
    arm = json.loads((tmp_path / "calibrated_balanced-s0" / "rl" / "config.json").read_text())["config"]
    assert arm["policy"] == str(tmp_path / "baseline-kto" / "policy")
    results = json.loads((out / "results.json").read_text())["rows"]
    assert results[0]["model"] == str(tiny_model_dir)  # the base row is the original start


def test_the_masked_arm_is_the_calibrated_arm_with_truncated_completions_masked(tiny_rm, tmp_path):
    from dataclasses import replace

    from latentrm.rl.compare import CompareConfig, rl_config

    pairs, rm = tiny_rm
    config = CompareConfig(pairs=str(pairs), rm=str(rm), run_dir=str(tmp_path))
    masked, plain = rl_config(config, "calibrated_balanced_masked", 0), rl_config(config, "calibrated_balanced", 0)
    assert masked.mask_truncated and not plain.mask_truncated
    assert replace(masked, mask_truncated=False, run_dir=plain.run_dir) == plain


def test_accelerate_configs_parse_with_accelerates_own_loader():
    from accelerate.commands.config.config_args import load_config_from_file

    from latentrm.presets import preset_dir

    folder = preset_dir("accelerate")
    kinds = {}
    for path in sorted(folder.glob("*.yaml")):
        config = load_config_from_file(str(path))
        kinds[path.stem] = str(config.distributed_type)
        assert config.mixed_precision == "bf16" and config.num_processes >= 1
    assert kinds.keys() == {"zero2", "zero3", "fsdp"}
    assert "DEEPSPEED" in kinds["zero2"] and "DEEPSPEED" in kinds["zero3"] and "FSDP" in kinds["fsdp"]
    stages = {name: load_config_from_file(str(folder / f"{name}.yaml")).deepspeed_config["zero_stage"]
              for name in ("zero2", "zero3")}
    assert stages == {"zero2": 2, "zero3": 3}  # the plugin and the ZeRO stage each file selects
    fsdp = load_config_from_file(str(folder / "fsdp.yaml")).fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True  # FSDP2, fully sharded
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"


def test_resume_passes_over_a_half_written_checkpoint(tmp_path):
    from latentrm.rl.grpo_trainer import last_checkpoint

    for step, complete in ((4, True), (8, True), (12, False)):  # killed while checkpoint-12 was being written
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-8"
    (tmp_path / "checkpoint-8" / "trainer_state.json").unlink()
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"


def test_trainable_layers_trains_only_the_top_layers(tiny_model_dir, tiny_rm, tmp_path):
    from latentrm.rl.grpo_trainer import run

    config = _config(tiny_model_dir, tiny_rm, tmp_path / "run", steps=2, eval_every=0, trainable_layers=1)
    policy = run(config, log=lambda *_: None) / "policy"
    before, after = _weights(tiny_model_dir), _weights(policy)
    depth = json.loads((tiny_model_dir / "config.json").read_text())["num_hidden_layers"]
    top = f"model.layers.{depth - 1}."
    changed = {name for name in before if name in after and not np.array_equal(before[name], after[name])}
    assert changed and all(name.startswith(top) or name == "model.norm.weight" for name in changed)
    assert not any(name.startswith("model.layers.0.") or "embed" in name for name in changed)
    from latentrm.stages import stage_key

    plain = _config(tiny_model_dir, tiny_rm, tmp_path / "other", steps=2)
    assert stage_key(plain) == stage_key(_config(tiny_model_dir, tiny_rm, tmp_path / "other", steps=2,
                                                 trainable_layers=0))
    assert stage_key(plain) != stage_key(_config(tiny_model_dir, tiny_rm, tmp_path / "other", steps=2,
                                                 trainable_layers=1))
    with pytest.raises(LatentrmError, match="use one of them"):
        _config(tiny_model_dir, tiny_rm, tmp_path / "x", trainable_layers=1, lora=True)
    from latentrm.rl.grpo_trainer import prepare

    with pytest.raises(LatentrmError, match=f"trainable_layers 99: the policy .* has only {depth} layers"):
        prepare(_config(tiny_model_dir, tiny_rm, tmp_path / "y", trainable_layers=99))  # before a model loads


def test_rloo_plugs_in_through_the_same_session_and_moves_the_policy(tiny_model_dir, tiny_rm, tmp_path):
    from trl import RLOOConfig, RLOOTrainer

    from latentrm.rl.grpo_trainer import prepare, run
    from latentrm.rl.session import build_session

    config = _config(tiny_model_dir, tiny_rm, tmp_path / "run", steps=2, eval_every=0, algorithm="rloo")
    args = config.to_grpo_config(tmp_path / "args", use_cpu=True)
    assert isinstance(args, RLOOConfig) and args.normalize_advantages and args.num_generations == 2
    assert not args.bf16  # the one precision policy holds for every algorithm
    out = run(config, log=lambda *_: None)
    before, after = _weights(tiny_model_dir), _weights(out / "policy")
    assert any(not np.array_equal(before[n], after[n]) for n in before if n in after)
    assert (out / "metrics.jsonl").read_text().strip()  # our callback logged the shaped reward's metrics
    session = build_session(config, prepare(config), tmp_path / "s", log=lambda *_: None)
    assert isinstance(session.trainer, RLOOTrainer)
    from latentrm.stages import stage_key

    grpo = _config(tiny_model_dir, tiny_rm, tmp_path / "run", steps=2)
    assert stage_key(grpo) == stage_key(_config(tiny_model_dir, tiny_rm, tmp_path / "run", steps=2, algorithm="grpo"))
    assert stage_key(grpo) != stage_key(config)
    with pytest.raises(LatentrmError, match="algorithm 'ppo': use one of grpo, rloo"):
        _config(tiny_model_dir, tiny_rm, tmp_path / "x", algorithm="ppo")


def test_compare_runs_the_natural_arm_under_another_recipe(tiny_model_dir, tiny_rm, tmp_path):
    """Under --set recipe=sycophancy the natural arm skews the false claims (the pairs' classes are
    false_claim / true_claim), and the dynamics table's hedge column reads that class."""
    import pandas as pd

    from latentrm.rl.compare import CompareConfig, run

    pairs, rm = tiny_rm
    claims = pd.read_json(pairs, lines=True).replace({"subset": {"fake": "false_claim", "real": "true_claim"}})
    claim_pairs = tmp_path / "claims.jsonl"
    claims.to_json(claim_pairs, orient="records", lines=True)
    config = CompareConfig(pairs=str(claim_pairs), rm=str(rm), run_dir=str(tmp_path / "compare"), preset="cpu-small",
                           rl_sets={"policy": str(tiny_model_dir), "steps": 2, "prompts_per_step": 2,
                                    "trainable_layers": 0, "num_generations": 2, "max_completion_length": 4,
                                    "eval_n": 1, "eval_false_premise": 0, "eval_max_new_tokens": 2, "eval_every": 0,
                                    "threads": 1, "recipe": "sycophancy"},
                           arms=("raw_natural",), baselines=(), eval_n=1, eval_false_premise=0,
                           eval_max_new_tokens=2)
    out = run(config, log=lambda *_: None)
    table = (out / "table.md").read_text()
    assert "| raw_natural-s0 |" in table and "hedge (false_claim)" in table and "75% false_claim mix" in table
    natural = json.loads((tmp_path / "compare" / "raw_natural-s0" / "rl" / "config.json").read_text())["config"]
    assert natural["recipe"] == "sycophancy" and natural["fake_share"] == 0.75
