"""The RL stage: GRPO through TRL against a saved latent reward model.

    latentrm rl train --preset cpu-small --pairs runs/data/pairs.parquet --rm runs/ka/rm --run-dir runs/rl-cal

What it does
- Prompts: the pairs file's `train` split (user turns only), ordered so that every batch has
  the class mix asked for (`rl/prompts.py`); the eval people stay unseen.
- Reward: `ShapedReward(rm, shaper)` (`rl/reward.py`), a plain TRL reward function; the
  prompt's class reaches it as the `subset` dataset column.
- Policy gradient: `trl.GRPOTrainer`. We write no PPO/GRPO loop of our own.
- LoRA (`lora: true`): when the reward model's backbone is the policy's own base model, the
  reward reads the policy's base weights with the adapters disabled (peft's
  `disable_adapter()`), in eval mode, so one copy of the weights serves both. The reward
  therefore reads a frozen backbone, and the policy can move it only through its text, not
  by changing the activations the head reads (the failure mode of detectors that read the
  policy's own activations, arXiv 2505.13787). Without LoRA the reward backbone is a separate
  frozen copy.
- Logs: TRL's metrics (reward, entropy, completion length, clipped ratio = the truncated share,
  KL) plus ours (raw and shaped reward, artifact shares, the rules judge's live rates), and a
  periodic held-out evaluation (start, every `eval_every` steps, end), all appended to
  `<run_dir>/rl/metrics.jsonl` and sent to TRL's `report_to`.
- Files: `<run_dir>/rl/` holds `config.json`, `metrics.jsonl`, `eval/step-*.json`,
  `checkpoints/` (TRL's, the resume points), `policy/` (the final model: LoRA merged, so any
  stage can load it as a plain model folder), and `manifest.json`, written last.
- Skipping and resuming: a finished run with the same key (config + input hashes) is skipped;
  a killed run continues with `resume=True` from its last checkpoint (metrics logged after that
  checkpoint are dropped and recomputed); a run folder of another config is refused.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.ranks import world_size
from latentrm.rl.grpo_config import RLConfig, is_main_process
from latentrm.stages import begin, begun, forget, input_hashes, is_done, stage_key, write_manifest

STAGE = "rl"


def stage_dir(config: RLConfig) -> Path:
    return Path(config.run_dir) / STAGE


def rl_inputs(config: RLConfig, policy_revision: str) -> dict[str, str]:
    """The run's inputs by content: the pairs' rows, the reward-model folder (`stages.input_hashes`) and the
    start policy's revision."""
    from latentrm.pairs import frame_hash, load_pairs

    return {"pairs": frame_hash(load_pairs(config.pairs)), **input_hashes({"rm": config.rm}),
            "policy": policy_revision}


def last_checkpoint(folder: Path) -> Path | None:
    """The last *complete* checkpoint: TRL writes `trainer_state.json` last, so a folder without it was cut off
    mid-write (a kill while saving) and is passed over for the one before."""
    checkpoints = sorted((p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
                          and (p / "trainer_state.json").is_file()), key=lambda p: int(p.name.split("-")[-1]))
    return checkpoints[-1] if checkpoints else None


def _truncate_metrics(path: Path, after_step: int) -> None:
    """Drop rows logged after `after_step` (a resumed run recomputes them)."""
    from latentrm.io import atomic_write_text

    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from the kill
        if int(row.get("step", 0)) <= after_step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def prepare(config: RLConfig) -> dict[str, Any]:
    """Everything that can fail on user input, checked before any model loads."""
    from latentrm.models import resolve_model
    from latentrm.pairs import load_pairs
    from latentrm.rl.prompts import ordered_prompts, train_prompts
    from latentrm.rm.model import HEAD_FILE, LatentRewardModel
    from latentrm.rm.shaping import get_shaper, needs_subsets

    config.validate()
    if not config.pairs:
        raise LatentrmError("--pairs is required: RL prompts come from a pairs file's train split")
    if not config.rm:
        raise LatentrmError("--rm is required: the reward-model folder written by `latentrm rm train`")
    meta = LatentRewardModel.read_meta(config.rm)
    if not (Path(config.rm) / HEAD_FILE).is_file():
        raise LatentrmError(f"--rm {config.rm}: no {HEAD_FILE}; pass a folder written by `latentrm rm train`")
    shaper = get_shaper(config.shaper, meta, **dict(config.shaper_params))  # missing quantiles fail here
    if shaper.needs_std and meta.get("head", {}).get("type") != "ensemble":
        raise LatentrmError(f"--shaper {config.shaper} needs an ensemble reward model (`latentrm rm train "
                            f"--ensemble K`); {config.rm} has a single head")
    frame = load_pairs(config.pairs)
    needs_class = config.mix == "balanced" or needs_subsets(config.shaper)
    prompts = train_prompts(frame, where=str(config.pairs), need_subset=needs_class)
    from latentrm.data.recipes import load_recipe

    order = ordered_prompts(prompts, config.mix, config.steps, config.prompts_per_step, seed=config.seed,
                            fake_share=config.fake_share, skewed=load_recipe(config.recipe).skewed_class)
    policy = resolve_model(config.policy or meta["backbone"]["spec"])
    shared = config.lora and config.share_backbone
    if shared and policy.revision != meta["backbone"]["revision"]:
        raise LatentrmError(
            f"--lora shares the reward backbone with the policy, but {config.rm} was trained on "
            f"{meta['backbone']['spec']} ({meta['backbone']['revision']}) and the policy is {policy.spec} "
            f"({policy.revision}); train the reward model on the policy's base model, or pass "
            "--no-share-backbone to score with a separate frozen copy")
    if config.trainable_layers:  # before any model loads: the policy's depth from its config.json
        path = Path(policy.path) / "config.json"
        settings = json.loads(path.read_text()) if path.is_file() else {}
        depth = (settings.get("text_config") or settings).get("num_hidden_layers")
        if isinstance(depth, int) and config.trainable_layers > depth:
            raise LatentrmError(f"trainable_layers {config.trainable_layers}: the policy {policy.spec} has only "
                                f"{depth} layers; give 1..{depth}, or 0 to train every weight")
    return {"meta": meta, "shaper": shaper, "prompts": prompts, "order": order, "policy": policy,
            "shared": shared, "key": stage_key(config, rl_inputs(config, policy.revision))}


def _check_folder(config: RLConfig, key: str, resume: bool, fresh: bool) -> Path | None:
    """Refuse a folder of another config; return the checkpoint to resume from, if any."""
    out = stage_dir(config)
    if not is_main_process():  # rank 0 checks and clears the folder; the others only need the resume point
        return last_checkpoint(out / "checkpoints") if resume else None
    if fresh and out.exists():
        shutil.rmtree(out)
    checkpoint = last_checkpoint(out / "checkpoints")
    recorded = begun(out).get("key")
    if recorded is not None:
        if recorded != key:
            raise LatentrmError(f"{out} holds a run with another config or inputs (key {recorded}, now {key}); "
                                "pass --fresh to replace it or another --run-dir")
        if checkpoint is not None and not resume:
            raise LatentrmError(f"{out} holds an unfinished run (last checkpoint {checkpoint.name}); pass --resume "
                                "to continue it or --fresh to start over")
    elif resume:
        raise LatentrmError(f"--resume: {out} holds no run to resume; drop --resume")
    return checkpoint if resume else None


def run(config: RLConfig, *, resume: bool = False, fresh: bool = False, force: bool = False,
        log: Any = print, resume_unfinished: bool = False) -> Path:
    """Train (or resume, or skip) one GRPO run; returns `<run_dir>/rl`.

    `resume_unfinished` (the pipeline's choice): an unfinished run of the same config resumes from its last
    complete checkpoint instead of being refused, so a killed `latentrm run` goes on where it stopped; a run of
    another config or inputs is replaced, as a stale stage is (a bare `rl train` refuses it instead).
    """
    from latentrm.io import atomic_write_text

    prepared = prepare(config)
    key = prepared["key"]
    out = stage_dir(config)
    if not (force or fresh or resume) and is_done(out, key):
        log(f"{out} is up to date (same config and inputs); pass --force to retrain")
        return out
    recorded = begun(out).get("key")
    if resume_unfinished and not (force or fresh or resume) and recorded == key \
            and last_checkpoint(out / "checkpoints") is not None:
        log(f"{out}: resuming the unfinished run from {last_checkpoint(out / 'checkpoints')}")
        resume = True
    elif resume_unfinished and recorded not in (None, key) and not resume:
        # the pipeline owns its folder: a run of another config or inputs is stale, as any stage's outputs are
        log(f"{out}: replacing a run of another config or inputs (key {recorded}, now {key})")
        fresh = True
    if force and out.exists():
        fresh = True
    checkpoint = _check_folder(config, key, resume, fresh)
    main = is_main_process()  # in N processes (torchrun), rank 0 alone writes the run folder
    if checkpoint is not None and main:
        log(f"{out}: resuming from {checkpoint.name} (the last complete checkpoint)")
    if main:
        forget(out)
        out.mkdir(parents=True, exist_ok=True)
        begin(out, STAGE, key, config, shared_backbone=prepared["shared"], processes=world_size())
        metrics_path = out / "metrics.jsonl"
        if checkpoint is None:
            metrics_path.unlink(missing_ok=True)
        else:
            state = json.loads((checkpoint / "trainer_state.json").read_text())
            _truncate_metrics(metrics_path, int(state.get("global_step", 0)))

    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    from latentrm.rl.session import build_session

    started = time.time()
    session = build_session(config, prepared, out, log=log)
    session.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if not main:  # the other ranks trained their share; rank 0 evaluates, saves and writes the manifest
        session.trainer.accelerator.wait_for_everyone()
        return out
    session.final_eval()
    policy_dir = session.save_policy(out / "policy")
    summary = session.summary(time.time() - started)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=float))
    write_manifest(out, STAGE, key, config, inputs=rl_inputs(config, prepared["policy"].revision),
                   outputs=["config.json", "metrics.jsonl", "summary.json", policy_dir.name,
                            *(["eval"] if (out / "eval").is_dir() else [])],
                   summary={k: v for k, v in summary.items() if not isinstance(v, (dict, list))},
                   seconds=round(time.time() - started, 1))
    session.trainer.accelerator.wait_for_everyone()
    return out
