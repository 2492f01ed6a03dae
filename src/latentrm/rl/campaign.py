"""`latentrm rl campaign`: the RL experiment as a campaign of units that outlives a machine.

    latentrm rl campaign prepare --run runs/quick --results results/rl-campaign      # inputs + their hashes
    latentrm rl campaign unit sft --results results/rl-campaign                       # one unit (skips when done)
    latentrm rl campaign unit calibrated-s0 --results results/rl-campaign
    latentrm rl campaign table --results results/rl-campaign                          # whatever has finished

A long experiment on 2 CPU cores (arms x seeds x ~50 GRPO steps at ~30 s a step) does not fit in one piece,
and a job still running when a machine goes away is lost. So the experiment is cut into *units*, each one arm
x seed (or one reference policy), each under ~40 minutes on 2 threads including its evals:

- `base`, `sft`: the base model and the start policy (the warm start), evaluated; `sft` also runs the on-policy
  check, the "before" of every RL unit's check;
- `bo8`: best-of-8 under the head, on the eval people (the on-policy check's best-of-n on the `eval` part);
- `<arm>-s<seed>` (`calibrated`, `raw`, `quantile_match`): GRPO from the start policy against the head,
  class-balanced; `base-<arm>-s<seed>`: the same from the base model (the method's no-hit-rate claim);
- `<rl unit>-p<k>` (k >= 2): part k of a chain, `steps` more GRPO steps from part k-1's trained policy (its
  weights; the optimizer state starts afresh, and the prompts are drawn with seed + 1000 (k - 1), so a part
  does not replay its predecessor's prompts). Part k-1's policy must still be in the work folder and hash as
  its unit recorded; otherwise the chain restarts (redo part k-1). A long run this way is a chain of units
  under ~40 minutes each, every one committed when it ends;
- `kto-s<seed>`, `dpo-s<seed>`: direct preference optimisation on the same pairs from the start policy.

Heavy files (weights, checkpoints, sample caches) go to a work folder (`runs/campaign/<unit>/`); each unit's
small results go to a tracked folder (`results/rl-campaign/<unit>/`: eval metrics and responses, the training
metrics, the on-policy report, a manifest of the inputs' hashes, written last). A unit whose manifest matches
is skipped; a killed RL unit resumes from its last complete checkpoint while the work folder is still there.

`prepare` copies the campaign's small inputs into `<results>/inputs/` (the pairs file, the head's rm.json, the
item lists of the eval and check sets) and records the hashes of the start policy's weights and the head. A unit
refuses to run against a start policy or head whose hash differs, so results from two starts never mix
silently: prepare a new results folder instead.

Every unit is evaluated on the same sets: `eval_n` made-up and `eval_n` real people from the `eval` part of the
held-out people (disjoint from training, from the head's selection and from the on-policy check), all 40 false
premises, and the on-policy check on the `check` part.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError

ARMS = {"calibrated": "calibrated", "raw": "raw", "quantile_match": "quantile_match"}
REFERENCES = ("base", "sft", "bo8")
BASELINES = ("kto", "dpo")
UNIT_PATTERN = re.compile(r"^(?:(?P<ref>base|sft|bo8)|(?P<from_base>base-)?(?P<arm>calibrated|raw|quantile_match)"
                          r"-s(?P<seed>\d+)(?:-p(?P<part>\d+))?|(?P<dpo>kto|dpo)-s(?P<dseed>\d+))$")


@dataclass(frozen=True)
class CampaignSettings:
    """What every unit shares; written by `prepare` into `<results>/inputs/manifest.json`."""

    steps: int = 48  # GRPO steps a unit
    learning_rate: float = 1e-5
    preset: str = "cpu-small"
    save_steps: int = 8
    eval_n: int = 50  # eval people per class
    eval_false_premise: int = 40
    eval_max_new_tokens: int = 48
    eval_batch_size: int = 20
    check_n: int = 10  # on-policy check: people per class on the `check` part
    check_false_premise: int = 10
    check_samples: int = 4
    bo_samples: int = 8  # the best-of-n reference
    baseline_steps: int = 30  # DPO / KTO units
    baseline_lr: float = 5e-6
    threads: int = 2
    rl_sets: dict[str, Any] = field(default_factory=dict)  # further RLConfig fields for every RL unit

    def validate(self) -> CampaignSettings:
        for name, value in asdict(self).items():
            if isinstance(value, int | float) and not isinstance(value, bool) and not value > 0:
                raise LatentrmError(f"campaign setting {name}={value}: must be > 0")
        return self


def parse_unit(name: str) -> dict[str, Any]:
    """`{kind: reference | rl | baseline, ...}` of a unit name; a bad name is a one-line error."""
    match = UNIT_PATTERN.match(name)
    if not match:
        raise LatentrmError(f"unit {name!r}: use base, sft, bo8, <arm>-s<seed> (arms: {', '.join(ARMS)}), "
                            "base-<arm>-s<seed> (RL from the base model), <rl unit>-p<k> (part k >= 2 of a "
                            "chain) or kto-s<seed> / dpo-s<seed>")
    if match["ref"]:
        return {"kind": "reference", "name": name}
    if match["arm"]:
        unit = {"kind": "rl", "name": name, "arm": match["arm"], "seed": int(match["seed"]),
                "start": "base" if match["from_base"] else "sft"}
        if match["part"] is not None:  # part 1 is the plain name (so the units run before chains keep their key)
            part = int(match["part"])
            if part < 2:
                raise LatentrmError(f"unit {name!r}: a chain's part 1 is {name.rsplit('-p', 1)[0]!r}; parts "
                                    "count from -p2")
            unit["part"] = part
        return unit
    return {"kind": "baseline", "name": name, "method": match["dpo"], "seed": int(match["dseed"])}


# --------------------------------------------------------------------------- inputs


def previous_part(unit: dict[str, Any]) -> str | None:
    """The unit a chain part continues from (`calibrated-s0` for `calibrated-s0-p2`), or None for a first part."""
    part = unit.get("part")
    if not part:
        return None
    first = unit["name"].rsplit("-p", 1)[0]
    return first if part == 2 else f"{first}-p{part - 1}"


def _chain_start(results: Path, unit: dict[str, Any]) -> tuple[str, str]:
    """Part k's start: part k-1's trained policy and its weights hash; refused when the chain is broken."""
    before = previous_part(unit)
    assert before is not None
    path = results / before / "manifest.json"
    if not path.is_file():
        raise LatentrmError(f"unit {unit['name']}: part {unit['part'] - 1} ({before}) is not done; run "
                            f"`latentrm rl campaign unit {before}` first")
    record = json.loads(path.read_text())
    policy = Path(record.get("policy", ""))
    if not (policy / "config.json").is_file():
        raise LatentrmError(f"unit {unit['name']}: {before}'s policy ({policy}) is not on this machine; the chain "
                            f"restarts: redo {before} with --force, then this part")
    now = _weights_hash(policy)
    if record.get("policy_hash") not in (None, now):
        raise LatentrmError(f"unit {unit['name']}: {before}'s policy at {policy} hashes {now}, its unit recorded "
                            f"{record['policy_hash']}; redo {before} with --force")
    return str(policy), now


def _weights_hash(folder: str | Path) -> str:
    """Hash of a policy's weights (`*.safetensors`, sorted) or of a model spec that is not a folder."""
    from latentrm.io import cached_file_hash, config_hash
    from latentrm.models import resolve_model

    path = Path(folder)
    if not path.is_dir():
        return resolve_model(str(folder)).revision
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise LatentrmError(f"{folder}: no *.safetensors weights; give a saved model folder")
    return config_hash({f.name: cached_file_hash(f) for f in files})


def _inputs_dir(results: Path) -> Path:
    return results / "inputs"


def read_inputs(results: str | Path) -> dict[str, Any]:
    """The campaign manifest that `prepare` wrote; a missing or torn one is a one-line error."""
    path = _inputs_dir(Path(results)) / "manifest.json"
    if not path.is_file():
        raise LatentrmError(f"{results}: no campaign here ({path} is missing); run `latentrm rl campaign prepare "
                            f"--run RUN --results {results}` first")
    try:
        return dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LatentrmError(f"{path}: not a readable campaign manifest; prepare the campaign again") from None


def _item_rows(items: list[Any]) -> str:
    return "".join(json.dumps({"item_id": i.item_id, "kind": i.kind, "question": i.question, "entity": i.entity})
                   + "\n" for i in items)


def prepare(run: str | Path, results: str | Path, settings: CampaignSettings | None = None, *,
            base: str = "embedded", log: Any = print) -> Path:
    """Record a campaign's inputs from a finished `latentrm run` folder (its pairs, head and warm start)."""
    from latentrm.eval.sets import load_set
    from latentrm.io import atomic_write_text, cached_file_hash
    from latentrm.pairs import frame_hash, load_pairs

    settings = (settings or CampaignSettings()).validate()
    run, results = Path(run), Path(results)
    pairs, rm = run / "data" / "pairs.parquet", run / "rm"
    start = run / "warm_start" / "baseline-sft" / "policy"
    for path, what in ((pairs, "pairs file"), (rm / "head.safetensors", "reward head"), (start, "SFT start")):
        if not path.exists():
            raise LatentrmError(f"--run {run}: no {what} at {path}; finish `latentrm run --preset quick` first")
    meta = json.loads((rm / "rm.json").read_text())
    inputs = _inputs_dir(results)
    if (inputs / "manifest.json").exists():
        old = read_inputs(results)
        if old.get("hashes", {}).get("start") != _weights_hash(start) or \
                old.get("hashes", {}).get("head") != cached_file_hash(rm / "head.safetensors"):
            raise LatentrmError(f"{results} was prepared with another start policy or head; prepare a new results "
                                "folder (units from two starts never mix)")
    inputs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pairs, inputs / "pairs.parquet")
    shutil.copyfile(rm / "rm.json", inputs / "rm.json")
    frame = load_pairs(pairs)
    sets = {
        "eval_heldout": load_set("heldout", n_real=settings.eval_n, n_fake=settings.eval_n, seed=0,
                                 exclude_pairs=str(pairs), people="eval"),
        "eval_false_premise": load_set("false_premise", people="all")[: settings.eval_false_premise],
        "check_heldout": load_set("heldout", n_real=settings.check_n, n_fake=settings.check_n, seed=0,
                                  exclude_pairs=str(pairs), people="check"),
        "check_false_premise": load_set("false_premise", people="check"),
    }
    for name, items in sets.items():
        atomic_write_text(inputs / f"{name}.jsonl", _item_rows(items))
    hashes = {"pairs": frame_hash(frame), "head": cached_file_hash(rm / "head.safetensors"),
              "start": _weights_hash(start), "base": _weights_hash(base)}
    manifest: dict[str, Any] = {
        "run": str(run), "pairs": str(pairs), "rm": str(rm), "start": str(start), "base": base,
        "hashes": hashes,
        "head": {k: meta.get(k) for k in ("layer", "concat_layers", "pooling", "head", "seed") if k in meta}
        | {"train": meta.get("training", {}).get("config")},
        "settings": asdict(settings),
        "sets": {name: len(items) for name, items in sets.items()},
    }
    atomic_write_text(inputs / "manifest.json", json.dumps(manifest, indent=1, default=str))
    log(f"campaign inputs in {inputs}: start {hashes['start']}, head {hashes['head']}")
    return inputs


def _check_inputs(manifest: dict[str, Any], unit: str) -> None:
    """Refuse to run a unit against a start policy or head other than the one the campaign was prepared with."""
    from latentrm.io import cached_file_hash

    for key, path in (("start", manifest["start"]), ("head", Path(manifest["rm"]) / "head.safetensors")):
        if not Path(path).exists():
            raise LatentrmError(f"unit {unit}: the campaign's {key} ({path}) is not on this machine; rebuild it "
                                f"with `latentrm run --preset quick` (the table says if the rebuild differs)")
        now = _weights_hash(path) if key == "start" else cached_file_hash(Path(path))
        if now != manifest["hashes"][key]:
            raise LatentrmError(f"unit {unit}: the {key} at {path} hashes {now}, the campaign was prepared with "
                                f"{manifest['hashes'][key]}; prepare a new results folder for this start")


# --------------------------------------------------------------------------- units


def unit_key(manifest: dict[str, Any], unit: dict[str, Any]) -> str:
    from latentrm.io import config_hash

    return config_hash({"unit": unit, "settings": manifest["settings"], "hashes": manifest["hashes"]})


def is_unit_done(results: Path, unit: str, key: str) -> bool:
    path = results / unit / "manifest.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("key") == key
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def run_unit(results: str | Path, name: str, *, work: str | Path = "runs/campaign", log: Any = print,
             force: bool = False) -> Path:
    """Run one unit (or skip it when its manifest matches); returns `<results>/<unit>/`."""
    from latentrm.io import atomic_write_text

    results = Path(results)
    unit = parse_unit(name)
    manifest = read_inputs(results)
    settings = CampaignSettings(**manifest["settings"]).validate()
    key = unit_key(manifest, unit)
    out = results / name
    if not force and is_unit_done(results, name, key):
        log(f"unit {name}: done ({out}); pass --force to redo it")
        return out
    if (out / "manifest.json").exists() and not force:
        raise LatentrmError(f"unit {name}: {out} was written by another campaign config; move it away or pass "
                            "--force to redo it")
    _check_inputs(manifest, name)
    import torch

    torch.set_num_threads(settings.threads)
    workdir = Path(work) / name
    workdir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    started = time.time()
    record: dict[str, Any] = {"unit": unit}
    if unit["kind"] == "reference" and name == "bo8":
        record["onpolicy"] = _check(manifest, settings, manifest["start"], workdir, out, people="eval",
                                    best_of=True)
    else:
        if unit.get("part"):
            record["from"], record["from_hash"] = _chain_start(results, unit)
        policy = _train(manifest, settings, unit, workdir, out, log, start=record.get("from"))
        record["policy"] = policy
        if unit["kind"] == "rl":  # a chain's next part checks that it continues from these weights
            record["policy_hash"] = _weights_hash(policy)
        record["eval"] = _evaluate(manifest, settings, policy, workdir, out)
        if unit["kind"] == "rl" or name == "sft":
            record["onpolicy"] = _check(manifest, settings, policy, workdir, out, people="check")
    record["seconds"] = round(time.time() - started, 1)
    atomic_write_text(out / "manifest.json", json.dumps({"key": key, "unit": unit, "hashes": manifest["hashes"],
                                                         "settings": manifest["settings"], **record},
                                                        indent=1, default=str))
    log(f"unit {name}: done in {record['seconds'] / 60:.1f} min -> {out}")
    return out


def _train(manifest: dict[str, Any], settings: CampaignSettings, unit: dict[str, Any], workdir: Path, out: Path,
           log: Any, *, start: str | None = None) -> str:
    """The unit's policy: the base model, the start policy, or a trained one (GRPO, DPO, KTO)."""
    if unit["kind"] == "reference":
        return str(manifest["base"]) if unit["name"] == "base" else str(manifest["start"])
    if unit["kind"] == "baseline":
        from latentrm.rl.baselines import BaselineConfig
        from latentrm.rl.baselines import run as run_baseline

        folder = run_baseline(BaselineConfig(method=unit["method"], pairs=manifest["pairs"],
                                             policy=str(manifest["start"]), run_dir=str(workdir),
                                             steps=settings.baseline_steps, learning_rate=settings.baseline_lr,
                                             seed=unit["seed"], threads=settings.threads), log=log)
        shutil.copyfile(folder / "history.json", out / "history.json")
        return str(folder / "policy")
    from latentrm.rl.grpo_config import build_config
    from latentrm.rl.grpo_trainer import run as run_rl

    if start is None:
        start = str(manifest["start"]) if unit["start"] == "sft" else str(manifest["base"])
    # a chain's part k draws other prompts than part k-1 (same sampler, another seed)
    seed = unit["seed"] + 1000 * (unit.get("part", 1) - 1)
    # the unit evaluates on its own sets afterwards; TRL's start and end evals shrink to a smoke test. The unit
    # key holds the preset's name, not its values, so what trains is pinned here: every unit so far trained all
    # layers, whatever the preset now says (a campaign that wants fewer sets rl_sets.trainable_layers)
    config = build_config(settings.preset, {"trainable_layers": 0, "eval_every": 0, "eval_n": 2, "eval_false_premise": 0,
                                            "eval_max_new_tokens": 16, "save_steps": settings.save_steps,
                                            "save_total_limit": 2, "threads": settings.threads,
                                            **settings.rl_sets},
                          pairs=manifest["pairs"], rm=manifest["rm"], policy=start, run_dir=str(workdir),
                          seed=seed, shaper=ARMS[unit["arm"]], mix="balanced", steps=settings.steps,
                          learning_rate=settings.learning_rate)
    folder = run_rl(config, log=log, resume_unfinished=True)
    for name in ("metrics.jsonl", "summary.json"):
        if (folder / name).exists():
            shutil.copyfile(folder / name, out / name)
    return str(folder / "policy")


def _evaluate(manifest: dict[str, Any], settings: CampaignSettings, policy: str, workdir: Path,
              out: Path) -> dict[str, Any]:
    from latentrm.eval.runner import EvalConfig
    from latentrm.eval.runner import run as run_eval

    metrics = {}
    for eval_set, extra in (("heldout", {"n_real": settings.eval_n, "n_fake": settings.eval_n,
                                         "exclude_pairs": manifest["pairs"], "people": "eval"}),
                            ("false_premise", {"limit": settings.eval_false_premise})):
        folder = run_eval(EvalConfig(model=policy, eval_set=eval_set, max_new_tokens=settings.eval_max_new_tokens,
                                     seed=0, batch_size=settings.eval_batch_size,
                                     folder=str(workdir / "eval" / eval_set), **extra))
        expected = [json.loads(line)["item_id"] for line in
                    (_inputs_dir(out.parent) / f"eval_{eval_set}.jsonl").read_text().splitlines()]
        asked = [json.loads(line)["item_id"] for line in (folder / "responses.jsonl").read_text().splitlines()]
        if sorted(set(asked)) != sorted(set(expected)):
            raise LatentrmError(f"{folder}: asked other {eval_set} items than the campaign's list; the entity "
                                "sources on this machine differ from the prepared campaign's")
        target = out / "eval" / eval_set
        target.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.json", "responses.jsonl"):
            shutil.copyfile(folder / name, target / name)
        metrics[eval_set] = json.loads((folder / "metrics.json").read_text())
    return {k: str(out / "eval" / k / "metrics.json") for k in metrics}


def _check(manifest: dict[str, Any], settings: CampaignSettings, policy: str, workdir: Path, out: Path, *,
           people: str, best_of: bool = False) -> str:
    from latentrm.audit.onpolicy import OnPolicyConfig, check_config
    from latentrm.audit.onpolicy import run as run_check

    n = settings.eval_n if best_of else settings.check_n
    config = OnPolicyConfig(rm=manifest["rm"], run_dir=str(workdir), name="bo" if best_of else "onpolicy",
                            policy=policy, pairs=manifest["pairs"], n_real=n, n_fake=n,
                            n_false_premise=settings.eval_false_premise if best_of else settings.check_false_premise,
                            samples=settings.bo_samples if best_of else settings.check_samples,
                            max_new_tokens=settings.eval_max_new_tokens, people=people,
                            batch_size=settings.eval_batch_size)
    check_config(config)
    folder = run_check(config)
    target = out / ("best_of" if best_of else "onpolicy")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("onpolicy.json", "onpolicy.png"):
        if (folder / name).exists():
            shutil.copyfile(folder / name, target / name)
    return str(target / "onpolicy.json")
