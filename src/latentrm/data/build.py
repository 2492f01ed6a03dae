"""`latentrm data build`: recipe + entities -> generations.parquet -> pairs.parquet.

What it does
1. picks real entities (notability-filtered) and made-up ones (collision-checked);
2. renders one or more questions per entity and class from the recipe templates;
3. generates `samples` completions per prompt for the class's chosen and rejected
   variants (grounding / few-shot / prefill steering in context), in shards
   under `OUT/shards/` so an interrupted build resumes without regenerating;
4. strips the steering: stored completions hold only the model's continuation
   (plus the answer opener, see below); completions that echo steering are dropped
   and counted, as are completions that miss the variant's behaviour;
5. pairs chosen x rejected completions of the same prompt (cap k per prompt),
   deduplicates, assigns `split` by entity and writes `pairs.parquet` (via
   `latentrm.pairs.save_pairs`), `generations.parquet`, `build.json` and `manifest.json` (last, see `latentrm.stages`).

Where it departs from the seed method
- Notability is Vital-Article membership, not page views (offline).
- SmolLM2-135M ignores steering notes (measured on made-up people: 0/6 samples
  hedged with the note-only prefill, 0/6 with a system instruction, 0/6 with an
  instruction in the user turn, ~3/8 loosely with few-shot hedges + note), so
  hedge variants also carry short *answer openers* ("I'm not familiar with X.")
  that are kept in the stored completion.
  The same openers are on the chosen side for fake people and the rejected side
  for real people, so they carry no label by themselves. `--no-openers` gives the
  paper's note-only prefill for capable policies.
- Variants may `require` / `reject_if` a behaviour regex (e.g. a "plain" answer
  that already hedges is dropped rather than labelled rejected).
- Length-truncated completions are trimmed back to their last full sentence.
- `--contrasts right_vs_wrong` adds a second contrast for real people: the grounded answer against a
  confident answer from perturbed notes (`latentrm.data.perturb`), kept only when it contradicts the true
  notes on a checkable fact (`latentrm.judges.grounding.contradictions`).
- `--policy CKPT` (the iterated update: policy k -> data -> rm k) samples every variant from that checkpoint;
  its spec and revision (`latentrm.models.resolve_model`) enter the shard keys and the `generator` column.

How to run
    latentrm data build --recipe knowledge_awareness --out runs/data
    latentrm data build --policy runs/quick/rl/policy --contrasts right_vs_wrong --out runs/data-round1
    latentrm data show runs/data/pairs.parquet
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentrm.data.entities import Entity, fold, load_real_entities
from latentrm.data.perturb import wrong_grounding
from latentrm.data.recipes import PromptClass, Recipe, Variant, fill, load_recipe, make_claim, usable
from latentrm.data.text import is_echo, join_opener, trim_to_sentence
from latentrm.errors import LatentrmError
from latentrm.io import config_hash
from latentrm.judges.grounding import contradictions
from latentrm.ranks import process_group
from latentrm.stages import Timer, begin, forget, is_done, stage_key, write_manifest


@dataclass(frozen=True)
class BuildConfig:
    recipe: str = "knowledge_awareness"
    out: str = "runs/data"
    pairs_out: str | None = None  # default OUT/pairs.parquet; a .jsonl path works too
    real: tuple[str, ...] = ("auto",)  # auto | builtin | wiki | nobel | path.jsonl
    notability: str = "vital"
    views_csv: str | None = None
    min_views: float = 0.0
    n_real: int = 130
    n_fake: int = 130
    fake_locales: tuple[str, ...] = ()
    prompts_per_entity: int = 1
    samples: int = 2  # completions per prompt per variant (the seed method used 64)
    pairs_per_prompt: int = 2  # cap k
    openers: bool = True
    trim_to_sentence: bool = True
    echo_ngram: int = 8
    behaviour_filter: bool = True  # drop completions that miss their variant's behaviour (require / reject_if)
    backend: str = "transformers"
    model: str = "embedded"
    # the iterated update: sample every variant from this checkpoint (folder, "embedded" or a cached hub id)
    # instead of `model`; its spec + revision enter the shard keys and the generator column
    policy: str | None = None
    contrasts: tuple[str, ...] = ()  # extra contrasts the recipe declares, e.g. ("right_vs_wrong",)
    backend_options: dict[str, Any] = field(default_factory=dict)
    max_new_tokens: int = 40
    temperature: float = 0.8
    top_p: float = 0.95
    batch_size: int = 16
    shard_size: int = 16  # requests (prompt x variant) per shard
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    progress: bool = True


def _rng(*parts: Any) -> random.Random:
    return random.Random(int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:16], 16))


def _hash(obj: Any) -> str:
    return config_hash(obj)


# --------------------------------------------------------------------------- entities and prompts


def select_entities(recipe: Recipe, config: BuildConfig) -> dict[str, list[Entity]]:
    """Real and fake entity pools for the recipe's classes."""
    from latentrm.data.entities import known_real_names
    from latentrm.data.fakes import fake_entities

    kinds = {c.entities for c in recipe.classes}
    pools: dict[str, list[Entity]] = {"real": [], "fake": []}
    real_all: list[Entity] = []
    if "real" in kinds:
        real_all = load_real_entities(config.real, notability=config.notability, views_csv=config.views_csv,
                                      min_views=config.min_views)
    if "real" in kinds:
        if not real_all or config.n_real <= 0:
            raise LatentrmError(f"no real entities to build from (sources {', '.join(config.real)}, notability "
                                f"{config.notability}); check the entity file / --min-views or raise --n-real")
        ordered = sorted(real_all, key=lambda e: e.entity_id)
        _rng(config.seed, "real").shuffle(ordered)
        pools["real"] = ordered[: config.n_real]
    if "fake" in kinds:
        if config.n_fake <= 0:
            raise LatentrmError("recipe needs made-up entities but --n-fake is 0")
        full, surnames = known_real_names()
        for entity in real_all:  # user-supplied real names count as well
            full.add(fold(entity.name))
        pools["fake"] = fake_entities(config.n_fake, real_full=full, real_surnames=surnames,
                                      seed=config.seed, locales=config.fake_locales or None)
    return pools


def make_prompts(recipe: Recipe, pools: dict[str, list[Entity]], config: BuildConfig) -> list[dict[str, Any]]:
    """One row per prompt: prompt_id, subset, entity, question text and the fields used to fill variants."""
    claim_pools: dict[str, list[str]] = {}
    for entity in pools["real"]:
        for key, value in entity.fields().items():
            claim_pools.setdefault(key, []).append(value)
    rows: list[dict[str, Any]] = []
    for kind in ("real", "fake"):
        classes = [c for c in recipe.classes if c.entities == kind]
        for index, entity in enumerate(pools[kind]):
            # classes of the same kind share the pool round-robin (sycophancy: half true, half false claims)
            prompt_class: PromptClass = classes[index % len(classes)] if classes else None  # type: ignore[assignment]
            if prompt_class is None:
                continue
            rng = _rng(config.seed, recipe.name, prompt_class.name, entity.entity_id)
            fields = entity.fields()
            if prompt_class.claim is not None:
                claim = make_claim(recipe.claims, fields, claim_pools, rng)
                if claim is None:
                    continue
                fields = {**fields, "true_claim": claim[0], "claim": claim[0] if prompt_class.claim else claim[1]}
            templates = [t for t in recipe.templates_for(prompt_class) if usable(t, fields)]
            rng.shuffle(templates)
            for template in templates[: config.prompts_per_entity]:
                text = fill(template, fields)
                prompt_id = "q" + _hash([recipe.name, prompt_class.name, entity.entity_id, template])[:12]
                rows.append({"prompt_id": prompt_id, "subset": prompt_class.name, "entity_id": entity.entity_id,
                             "entity_name": entity.name, "entity_source": entity.source, "prompt": text,
                             "template": template, "fields": fields})
    if not rows:
        raise LatentrmError(f"recipe {recipe.name}: no template fits any selected entity; check the entity facts")
    return rows


def build_contrasts(prompt_class: PromptClass, config: BuildConfig) -> list[tuple[str, str, str]]:
    """The (name, chosen variant, rejected variant) contrasts a build makes for a class: the class's own
    (named "") first, then the extra ones `config.contrasts` asks for."""
    return [("", prompt_class.chosen, prompt_class.rejected)] + [
        c for c in prompt_class.contrasts if c[0] in config.contrasts]


def make_requests(recipe: Recipe, prompts: list[dict[str, Any]], config: BuildConfig) -> list[dict[str, Any]]:
    """One request per prompt and variant its contrasts need, with the context to strip later: first the
    class's chosen and rejected variant for every prompt, then the variants only an extra contrast needs (so
    asking for a contrast later leaves the earlier shards, and their keys, as they were)."""
    classes = {c.name: c for c in recipe.classes}
    # other real people's facts: the swaps of a perturbed grounding text (sorted inside `wrong_grounding`)
    real_fields = {row["entity_id"]: row["fields"] for row in prompts if classes[row["subset"]].entities == "real"}
    main, extra = [], []
    for row in prompts:
        (_, chosen, rejected), *others = build_contrasts(classes[row["subset"]], config)
        main += [_request(recipe, row, chosen, "chosen", config, real_fields),
                 _request(recipe, row, rejected, "rejected", config, real_fields)]
        seen = {chosen, rejected}
        for _, other_chosen, other_rejected in others:
            for name, side in ((other_chosen, "chosen"), (other_rejected, "rejected")):
                if name not in seen:
                    seen.add(name)
                    extra.append(_request(recipe, row, name, side, config, real_fields))
    return [r for r in main + extra if r is not None]


def _request(recipe: Recipe, row: dict[str, Any], variant_name: str, side: str, config: BuildConfig,
             real_fields: dict[str, dict[str, str]]) -> dict[str, Any] | None:
    variant: Variant = recipe.variants[variant_name]
    fields = row["fields"]
    if variant.wrong:
        others = [f for entity_id, f in real_fields.items() if entity_id != row["entity_id"]]
        wrong = wrong_grounding(fields.get("grounding", ""), fields, others,
                                _rng(config.seed, "wrong_grounding", row["entity_id"]))
        if wrong is None:
            return None  # nothing in this person's notes can be made wrong: no such request
        fields = {**fields, "wrong_grounding": wrong}
    messages = [{"role": "system", "content": fill(variant.system, fields)}] if variant.system else []
    messages += [{"role": role, "content": fill(content, fields)} for role, content in variant.shots]
    messages.append({"role": "user", "content": row["prompt"]})
    opener = ""
    if config.openers and variant.openers:
        opener = fill(_rng(config.seed, row["prompt_id"], variant_name).choice(variant.openers), fields)
    return {"request_id": f"{row['prompt_id']}/{variant_name}", "prompt_id": row["prompt_id"],
            "variant": variant_name, "side": side, "messages": messages, "note": fill(variant.prefill, fields),
            "opener": opener, "steering": variant.steering_texts(fields),
            "reference": truth_text(row["fields"]) if variant.contradicts_grounding else ""}


def truth_text(fields: dict[str, Any]) -> str:
    """What a real person's answers are checked against: the lifespan line and the true grounding notes (the
    grounding alone often lacks the birth year, so a misstated year would pass unseen)."""
    born, died = fields.get("born"), fields.get("died")
    life = f"{fields.get('name', '')} ({born}-{died})." if born and died else (
        f"{fields.get('name', '')} (born {born})." if born else "")
    return f"{life} {fields.get('grounding', '')}".strip()


# --------------------------------------------------------------------------- post-processing


def make_pairs(generations: Any, prompts: list[dict[str, Any]], recipe: Recipe, config: BuildConfig,
               generator: str) -> Any:
    """Chosen x rejected completions of the same prompt, cap k per prompt, deduplicated."""
    import pandas as pd

    by_prompt = {row["prompt_id"]: row for row in prompts}
    classes = {c.name: c for c in recipe.classes}
    kept = generations[generations["keep"]]
    rows = []
    for prompt_id, group in kept.groupby("prompt_id", sort=True):
        prompt = by_prompt[prompt_id]
        for name, chosen_variant, rejected_variant in build_contrasts(classes[prompt["subset"]], config):
            chosen = list(dict.fromkeys(group.loc[group["variant"] == chosen_variant, "completion"]))
            if recipe.variants[rejected_variant].contradicts_grounding:
                # right vs wrong: the chosen side must not itself misstate a fact of the true notes (a grounded
                # answer that gets a year wrong is no "right" answer). The same regex check as the rejected side's,
                # so what it cannot see (a wrong claim outside the checkable facts) passes on both sides.
                truth = truth_text(prompt.get("fields") or {})
                chosen = [c for c in chosen if not contradictions(c, truth)]
            rejected = list(dict.fromkeys(group.loc[group["variant"] == rejected_variant, "completion"]))
            combos = [(c, r) for c in chosen for r in rejected if fold(c) != fold(r)]
            _rng(config.seed, "pairs", prompt_id, *([name] if name else [])).shuffle(combos)
            for c, r in combos[: config.pairs_per_prompt]:  # the cap k is per prompt and contrast
                rows.append({
                    "pair_id": "p" + _hash([prompt_id, c, r])[:12], "prompt": prompt["prompt"], "chosen": c,
                    "rejected": r, "subset": prompt["subset"], "entity_id": prompt["entity_id"],
                    "entity_name": prompt["entity_name"], "prompt_id": prompt_id, "recipe": recipe.name,
                    "variants": f"{chosen_variant}>{rejected_variant}", "generator": generator,
                    "seed": config.seed,
                })
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise LatentrmError("no pairs survived filtering (every prompt lost its chosen or rejected side); "
                            "raise --samples or check the steering with `latentrm data show`")
    return frame.drop_duplicates(subset=["prompt", "chosen", "rejected"]).reset_index(drop=True)


# --------------------------------------------------------------------------- the stage


def policy_identity(config: BuildConfig) -> str | None:
    """`spec@revision` of `config.policy` (None without one), as the transformers backend records it;
    resolved before anything is generated, so a folder that is no model is a one-line error."""
    if config.policy is None:
        return None
    from latentrm.models import resolve_model

    if config.backend == "openai":
        raise LatentrmError("--policy samples the checkpoint in process: use --backend transformers or vllm "
                            "(an endpoint serves its own model, named with --backend-opt model=...)")
    try:
        resolved = resolve_model(config.policy)
    except LatentrmError as exc:
        raise LatentrmError(f"--policy: {exc}") from None
    return f"{resolved.spec}@{resolved.revision}"


def _make_backend(config: BuildConfig, policy_id: str | None) -> Any:
    from latentrm.generation import get_backend

    options = dict(config.backend_options)
    if config.policy is not None and policy_id is not None:  # the policy replaces the default generator
        options.pop("model", None)
        if config.backend == "fake":
            options["model_id"] = policy_id
        else:
            options["model"] = config.policy
    if config.backend in ("transformers", "openai", "vllm"):
        options.setdefault("model", config.model)
    if config.backend in ("transformers", "openai"):
        options.setdefault("progress", False)
    return get_backend(config.backend, **options)


def _write_parquet(frame: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def _process(rows: list[dict[str, Any]], recipe: Recipe, config: BuildConfig) -> list[dict[str, Any]]:
    """Strip, trim, and flag echoes / off-behaviour completions (flags only; nothing is deleted here)."""
    for row in rows:
        continuation = row["continuation"]
        row["trimmed"] = False
        if config.trim_to_sentence and row["finish_reason"] == "length":
            trimmed = trim_to_sentence(continuation)
            row["trimmed"] = trimmed != continuation
            continuation = trimmed
        row["completion"] = join_opener(row["opener"], continuation).strip()
        variant = recipe.variants[row["variant"]]
        row["echo"] = is_echo(continuation, recipe.echo_markers, row.pop("steering"), config.echo_ngram)
        reference = row.pop("reference")
        off = False
        if variant.require and not recipe.behaviour(variant.require, row["completion"]):
            off = True
        if variant.reject_if and recipe.behaviour(variant.reject_if, row["completion"]):
            off = True
        if variant.contradicts_grounding and not contradictions(row["completion"], reference):
            off = True  # a "wrong" answer that states nothing the true notes contradict
        row["off_behaviour"] = off
        row["empty"] = not continuation.strip()
        row["keep"] = not (row["echo"] or (off and config.behaviour_filter) or row["empty"])
    return rows


def run(config: BuildConfig, *, force: bool = False) -> Path:
    """Build (or resume) the pairs file for `config`; returns the pairs path (the folder is `config.out`).

    The stage contract is `latentrm.stages`: done when `manifest.json`'s key (the generation plan and the
    filtering) matches; `force=True` (the CLI's `--overwrite`) discards this plan's shards and rebuilds.
    """
    import pandas as pd

    from latentrm.generation import GenerationRequest, SamplingConfig, completions_progress
    from latentrm.io import atomic_write_text
    from latentrm.pairs import assign_splits, save_pairs

    if config.samples < 1 or config.pairs_per_prompt < 1 or config.shard_size < 1:
        raise LatentrmError("--samples, --pairs-per-prompt and --shard-size must be at least 1")
    recipe = load_recipe(config.recipe)
    unknown = sorted(set(config.contrasts) - set(recipe.contrast_names()))
    if unknown:
        raise LatentrmError(f"recipe {recipe.name} declares no contrast {', '.join(unknown)}; it declares "
                            f"{', '.join(recipe.contrast_names()) or 'none'}")
    policy_id = policy_identity(config)  # before any generation: a bad checkpoint fails here
    out = Path(config.out)
    pairs_path = Path(config.pairs_out) if config.pairs_out else out / "pairs.parquet"
    pools = select_entities(recipe, config)
    prompts = make_prompts(recipe, pools, config)
    requests = make_requests(recipe, prompts, config)
    shards = [requests[i : i + config.shard_size] for i in range(0, len(requests), config.shard_size)]
    options = {k: v for k, v in config.backend_options.items() if k not in ("api_key", "delay", "progress")}
    # Each shard is keyed by a hash of exactly what it generates (requests + sampling), so a resumed or
    # changed build regenerates only the shards whose inputs changed; filters and pairing never regenerate.
    # a policy is keyed by spec and revision, so round k never reuses round k-1's shards; no policy: as before
    sampling_key = [config.samples, config.backend, config.model if policy_id is None else ["policy", policy_id],
                    options, config.max_new_tokens, config.temperature, config.top_p, config.seed]
    shard_keys = [_hash([index, sampling_key, [[r["request_id"], r["messages"], r["note"], r["opener"]]
                                               for r in shard]]) for index, shard in enumerate(shards)]
    plan_hash = _hash(shard_keys)
    post_hash = _hash([recipe.source, config.pairs_per_prompt, config.trim_to_sentence, config.echo_ngram,
                       config.val_fraction, config.test_fraction, str(pairs_path),
                       *([] if config.behaviour_filter else ["keep-off-behaviour"]),
                       *([["contrasts", sorted(config.contrasts)]] if config.contrasts else [])])  # old builds keep their key
    shard_dir = out / "shards"
    manifest_file = out / "build.json"
    key = stage_key(config, extra={"plan": plan_hash, "post": post_hash})  # what is generated, how it is paired
    if not force and is_done(out, key) and pairs_path.exists():
        return pairs_path  # already built for this exact plan and filtering
    rank, world, barrier = process_group()
    timer = Timer()
    shard_files = [shard_dir / f"shard-{index:05d}-{key}.parquet" for index, key in enumerate(shard_keys)]
    if rank == 0:  # rank 0 alone touches the folder; the others wait for it, then generate their shards
        forget(out)
        shard_dir.mkdir(parents=True, exist_ok=True)
        # Shard files of an earlier, different config stay on disk unread (a later run with that config reuses them).
        if force:
            for path in shard_files:
                path.unlink(missing_ok=True)
        manifest_file.unlink(missing_ok=True)
        atomic_write_text(out / "plan.json", json.dumps({"plan_hash": plan_hash, "n_requests": len(requests),
                                                         "n_shards": len(shards)}, indent=1))
        begin(out, "data", key, config)
        prompt_frame = pd.DataFrame([{**row, "fields": json.dumps(row["fields"], ensure_ascii=False)}
                                     for row in prompts])
        _write_parquet(prompt_frame, out / "prompts.parquet")
    barrier()

    # In N processes rank r generates shards r, r + N, ...: a shard's sampling seed follows its index, never
    # the rank, so the shards (and the pairs) equal a 1-process build's; each rank resumes its own shards.
    todo = [index for index, path in enumerate(shard_files) if not path.exists() and index % world == rank]
    generator = policy_id or f"{config.backend}:{config.model}"
    generated, gen_seconds = 0, 0.0
    if todo:
        backend = _make_backend(config, policy_id)
        generator = str(getattr(backend, "model_id", generator))
        total = len(requests) * config.samples
        done = sum(len(shards[i]) for i in range(len(shards)) if i not in set(todo)) * config.samples
        with completions_progress(config.progress) as bar:
            task = bar.add_task(f"{recipe.name}: generating", total=total, completed=min(done, total))
            backend.on_advance = lambda n: bar.advance(task, n)
            for index in todo:
                shard = shards[index]
                batch = [GenerationRequest(r["messages"], r["note"] + r["opener"]) for r in shard]
                sampling = SamplingConfig(config.max_new_tokens, config.temperature, config.top_p,
                                          config.seed * 100_003 + index, config.batch_size)
                start = time.perf_counter()
                results = backend.generate(batch, config.samples, sampling)
                gen_seconds += time.perf_counter() - start
                rows = []
                for request, samples in zip(shard, results, strict=True):
                    for k, g in enumerate(samples):
                        rows.append({"request_id": request["request_id"], "prompt_id": request["prompt_id"],
                                     "variant": request["variant"], "side": request["side"], "sample": k,
                                     "opener": request["opener"], "continuation": g.text,
                                     "n_tokens": g.n_tokens, "finish_reason": g.finish_reason,
                                     "mean_entropy": g.mean_entropy, "shard": index, "generator": generator})
                generated += len(rows)
                _write_parquet(pd.DataFrame(rows), shard_files[index])

    barrier()  # every shard is on disk; rank 0 merges and filters, the others are done
    if rank != 0:
        barrier()
        return pairs_path
    raw = pd.concat([pd.read_parquet(path) for path in shard_files], ignore_index=True)
    if raw.duplicated(["request_id", "sample"]).any():
        raise LatentrmError(f"{shard_dir}: duplicated generations; remove the folder and rebuild")
    generator = str(raw["generator"].iloc[0]) if len(raw) else generator
    by_request = {r["request_id"]: r for r in requests}
    rows = [{**row, "steering": by_request[row["request_id"]]["steering"],
             "reference": by_request[row["request_id"]]["reference"]} for row in raw.to_dict("records")]
    generations = pd.DataFrame(_process(rows, recipe, config))
    meta = pd.DataFrame(prompts)[["prompt_id", "subset", "entity_id", "entity_name", "prompt"]]
    generations = generations.merge(meta, on="prompt_id", how="left")
    _write_parquet(generations, out / "generations.parquet")

    pairs = make_pairs(generations, prompts, recipe, config, generator)
    pairs = assign_splits(pairs, config.val_fraction, config.test_fraction, seed=config.seed)
    save_pairs(pairs, pairs_path)

    counts = {
        "entities": {kind: len(pool) for kind, pool in pools.items()},
        "prompts": {c: int(n) for c, n in pd.Series([p["subset"] for p in prompts]).value_counts().items()},
        "completions": len(generations),
        "echo_dropped": int(generations["echo"].sum()),
        "echo_dropped_by_variant": {k: int(v) for k, v in generations.groupby("variant")["echo"].sum().items()},
        "off_behaviour_dropped": int((generations["off_behaviour"] & ~generations["echo"]).sum())
        if config.behaviour_filter else 0,
        "off_behaviour_kept": 0 if config.behaviour_filter else
        int((generations["off_behaviour"] & ~generations["echo"] & ~generations["empty"]).sum()),
        "off_behaviour_by_variant": {k: int(v) for k, v in
                                     generations.groupby("variant")["off_behaviour"].sum().items()},
        "empty_dropped": int(generations["empty"].sum()),
        "pairs": len(pairs),
        "pairs_by_subset": {k: int(v) for k, v in pairs["subset"].value_counts().items()},
        "prompts_with_pairs_by_subset": {k: int(v) for k, v in
                                         pairs.groupby("subset")["prompt_id"].nunique().items()},
        "pairs_by_split": {k: int(v) for k, v in pairs["split"].value_counts().items()},
    }
    if config.contrasts:  # only then: a default build's build.json keeps its keys
        counts["pairs_by_variants"] = {k: int(v) for k, v in pairs["variants"].value_counts().items()}
        # a wrong_grounded request is missing where the notes had nothing to perturb
        counts["requests_by_variant"] = dict(sorted(Counter(r["variant"] for r in requests).items()))
    manifest = {"plan_hash": plan_hash, "post_hash": post_hash, "recipe": recipe.name, "generator": generator,
                "pairs_file": str(pairs_path), "generations_file": str(out / "generations.parquet"),
                "counts": counts, "generated_this_run": generated,
                "generation_seconds_this_run": round(gen_seconds, 1),
                "completions_per_second": round(generated / gen_seconds, 3) if gen_seconds else None}
    atomic_write_text(manifest_file, json.dumps(manifest, indent=1))
    outputs = ["build.json", "generations.parquet", "config.json"]
    if pairs_path.parent.resolve() == out.resolve():
        outputs.append(pairs_path.name)
    write_manifest(out, "data", key, config, outputs=outputs, seconds=timer.seconds(),
                   summary={"pairs": len(pairs), "pairs_by_subset": counts["pairs_by_subset"],
                            "completions": len(generations), "pairs_file": str(pairs_path)})  # last
    barrier()  # the others return once the pairs file is written
    return pairs_path
