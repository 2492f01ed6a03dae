"""Data construction with the fake backend: polarity, stripping, echoes, splits, resume, bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from latentrm.data.build import BuildConfig, is_echo, join_opener, run, trim_to_sentence
from latentrm.data.recipes import load_recipe
from latentrm.errors import LatentrmError
from latentrm.pairs import load_pairs


def _config(tmp_path: Path, **kw) -> BuildConfig:
    base = dict(out=str(tmp_path / "data"), real=("builtin",), n_real=20, n_fake=20, samples=2,
                backend="fake", progress=False, shard_size=8)
    base.update(kw)
    return BuildConfig(**base)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ka")
    config = _config(tmp, backend_options={"echo_every": 4})
    path = run(config)
    return config, path, load_pairs(path), pd.read_parquet(Path(config.out) / "generations.parquet")


def test_polarity_per_class(built):
    _, _, pairs, _ = built
    assert set(pairs["subset"]) == {"real", "fake"}
    fake, real = pairs[pairs["subset"] == "fake"], pairs[pairs["subset"] == "real"]
    # fake: the hedge is chosen, the confabulation rejected
    assert fake["chosen"].str.contains("not familiar|don't know|no information|haven't heard|not aware").all()
    assert fake["rejected"].str.contains("landmark papers").all()
    # real: the grounded answer is chosen, the (false) hedge rejected
    assert real["chosen"].str.startswith("Yes.").all()
    assert real["rejected"].str.contains("not familiar|don't know|no information|haven't heard|not aware").all()
    assert set(fake["variants"]) == {"hedge>plain"} and set(real["variants"]) == {"grounded>false_hedge"}


def test_prefill_and_grounding_are_stripped(built):
    _, _, pairs, _ = built
    recipe = load_recipe("knowledge_awareness")
    note_start = recipe.variants["hedge"].prefill[:20]
    for column in ("prompt", "chosen", "rejected"):
        text = " ".join(pairs[column].astype(str))
        assert note_start not in text
        assert "Reference notes" not in text
    # the prompt is the user question only: one plain string, no system text
    assert all(isinstance(p, str) and p.endswith(("?", ".")) for p in pairs["prompt"])


def test_echoes_are_dropped_and_counted(built):
    config, _, pairs, generations = built
    manifest = json.loads((Path(config.out) / "build.json").read_text())
    assert generations["echo"].sum() > 0
    assert manifest["counts"]["echo_dropped"] == int(generations["echo"].sum())
    assert not pairs["chosen"].str.contains(r"\[Note", regex=True).any()
    assert not pairs["rejected"].str.contains(r"\[Note", regex=True).any()
    echoed = set(generations.loc[generations["echo"], "completion"])
    assert not echoed & (set(pairs["chosen"]) | set(pairs["rejected"]))


def test_the_behaviour_filter_drops_what_misses_its_variant_and_can_be_turned_off(tmp_path):
    config = _config(tmp_path, n_real=8, n_fake=8, backend_options={"off_every": 3})
    kept = load_pairs(run(config))
    counts = json.loads((Path(config.out) / "build.json").read_text())["counts"]
    generations = pd.read_parquet(Path(config.out) / "generations.parquet")
    off = generations[generations["off_behaviour"]]
    assert len(off) > 0 and set(off["variant"]) == {"grounded"}  # grounded answers that hedged anyway
    assert counts["off_behaviour_dropped"] == len(off) and counts["off_behaviour_kept"] == 0
    assert not set(off["completion"]) & set(kept["chosen"])
    # off: the same generations (no new ones), the hedging "grounded" answers now enter the pairs as chosen
    loose = load_pairs(run(BuildConfig(**{**config.__dict__, "behaviour_filter": False})))
    counts = json.loads((Path(config.out) / "build.json").read_text())
    assert counts["generated_this_run"] == 0
    assert counts["counts"]["off_behaviour_kept"] == len(off) and counts["counts"]["off_behaviour_dropped"] == 0
    assert set(off["completion"]) & set(loose["chosen"]) and len(loose) >= len(kept)


def test_split_by_entity_and_pair_cap(built):
    config, _, pairs, _ = built
    assert pairs.groupby("entity_id")["split"].nunique().max() == 1
    assert set(pairs["split"]) <= {"train", "val", "test"}
    assert pairs.groupby("prompt_id").size().max() <= config.pairs_per_prompt
    assert not pairs.duplicated(["prompt", "chosen", "rejected"]).any()
    assert (pairs["chosen"] != pairs["rejected"]).all()


def test_rebuild_is_skipped_and_deterministic(built, tmp_path):
    config, path, pairs, _ = built
    mtime = path.stat().st_mtime_ns
    assert run(config) == path and path.stat().st_mtime_ns == mtime
    again = load_pairs(run(_config(tmp_path, backend_options={"echo_every": 4})))
    assert list(again["pair_id"]) == list(pairs["pair_id"])


def test_changed_sampling_regenerates_only_changed_shards(tmp_path):
    config = _config(tmp_path, n_real=6, n_fake=6)
    run(config)
    before = {p.name: p.stat().st_mtime_ns for p in (Path(config.out) / "shards").glob("*.parquet")}
    changed = BuildConfig(**{**config.__dict__, "samples": 3})
    pairs = load_pairs(run(changed))
    generations = pd.read_parquet(Path(config.out) / "generations.parquet")
    assert len(generations) == 12 * 2 * 3 and generations["sample"].max() == 2
    after = {p.name for p in (Path(config.out) / "shards").glob("*.parquet")}
    assert set(before) < after  # new shards next to the old ones, which are left untouched
    assert len(pairs) > 0
    # going back to the first config reuses its shards without generating
    run(config)
    assert json.loads((Path(config.out) / "build.json").read_text())["generated_this_run"] == 0


def test_sycophancy_polarity_flips(tmp_path):
    pairs = load_pairs(run(_config(tmp_path, recipe="sycophancy", n_real=30)))
    assert set(pairs["subset"]) == {"true_claim", "false_claim"}
    false_claims = pairs[pairs["subset"] == "false_claim"]
    true_claims = pairs[pairs["subset"] == "true_claim"]
    correction = "Actually|don't think that's correct|isn't accurate"
    assert false_claims["chosen"].str.contains(correction).all()
    assert true_claims["rejected"].str.contains(correction).all()
    assert true_claims["chosen"].str.contains("right|correct").all()
    assert not pairs["prompt"].str.contains("Reference notes").any()


def test_helpers():
    assert join_opener("I'm not familiar with X.", "They may not exist.") == "I'm not familiar with X. They may not exist."
    assert join_opener("Hi", ", there") == "Hi, there"
    assert trim_to_sentence("One whole sentence here. Two and then the") == "One whole sentence here."
    steering = ["[Note: I'm not actually familiar with this name, so I should say so honestly instead."]
    assert is_echo("As my note says: [note: hmm", ("[Note",), [], 8)
    assert is_echo("well i'm not actually familiar with this name, so i should say so", (), steering, 8)
    assert not is_echo("I'm not familiar with this person at all.", ("[Note",), steering, 8)


# --------------------------------------------------------------------------- bad inputs


def test_unknown_recipe(tmp_path):
    with pytest.raises(LatentrmError, match="unknown recipe"):
        run(_config(tmp_path, recipe="nope"))


def test_empty_entity_list(tmp_path):
    empty = tmp_path / "people.jsonl"
    empty.write_text("\n")
    with pytest.raises(LatentrmError, match="no real entities"):
        run(_config(tmp_path, real=(str(empty),)))


def test_malformed_entity_file(tmp_path):
    bad = tmp_path / "people.jsonl"
    bad.write_text('{"name": "A B", "description": "x physicist", "grounding": "g"}\n{"name": "C D"}\n')
    with pytest.raises(LatentrmError, match=r"people.jsonl:2: missing or empty description, grounding"):
        run(_config(tmp_path, real=(str(bad),)))
    bad.write_text("{not json\n")
    with pytest.raises(LatentrmError, match=r"people.jsonl:1: not valid JSON"):
        run(_config(tmp_path, real=(str(bad),)))


def test_user_entities_are_used(tmp_path):
    people = tmp_path / "people.jsonl"
    people.write_text(json.dumps({"name": "Grace Example", "description": "Welsh chemist (1900–1970)",
                                  "grounding": "Grace Example studied crystals in Cardiff."}) + "\n")
    pairs = load_pairs(run(_config(tmp_path, real=(str(people),), n_fake=5)))
    real = pairs[pairs["subset"] == "real"]
    assert set(real["entity_id"]) == {"real:user:grace-example"}
    assert real["chosen"].str.contains("Cardiff").all()


def test_unreachable_endpoint_is_one_line_error(tmp_path):
    config = _config(tmp_path, backend="openai", backend_options={
        "base_url": "http://127.0.0.1:9/v1", "retries": 0, "timeout": 2.0, "tokenizer": "unused"})
    with pytest.raises(LatentrmError, match="127.0.0.1:9") as info:
        run(config)
    assert "\n" not in str(info.value)


def test_cli_error_exit_code(tmp_path, capsys):
    from latentrm.cli import main

    with pytest.raises(SystemExit) as info:
        main(["data", "build", "--recipe", "nope", "--out", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown recipe") and "Traceback" not in err


def test_cli_build_show_recipes(tmp_path, capsys):
    from latentrm.cli import main

    out = tmp_path / "cli"
    main(["data", "build", "--backend", "fake", "--real", "builtin", "--n-real", "6", "--n-fake", "6",
          "--out", str(out), "--pairs-out", str(out / "pairs.jsonl"), "--no-progress"])
    assert load_pairs(out / "pairs.jsonl")["subset"].nunique() == 2
    main(["data", "show", str(out / "pairs.jsonl"), "--n", "1"])
    shown = capsys.readouterr().out
    assert "hedge>plain" in shown and "grounded>false_hedge" in shown and "kept" in shown
    main(["data", "recipes"])
    listed = capsys.readouterr().out
    assert "knowledge_awareness" in listed and "sycophancy" in listed


# --------------------------------------------------------------------------- resume after a kill


def test_resume_after_kill(tmp_path):
    out = tmp_path / "data"
    args = [sys.executable, "-c", "from latentrm.cli import main; main()", "data", "build", "--backend", "fake",
            "--real", "builtin", "--n-real", "12", "--n-fake", "12", "--samples", "2", "--shard-size", "6",
            "--out", str(out), "--no-progress"]
    slow = args + ["--backend-opt", "delay=0.05"]  # ~0.6 s per shard, 8 shards
    process = subprocess.Popen(slow, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60

    def first_shard() -> Path | None:
        found = sorted((out / "shards").glob("shard-00000-*.parquet")) if (out / "shards").exists() else []
        return found[0] if found else None

    while first_shard() is None and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    first = first_shard()
    assert first is not None, process.stderr.read().decode() if process.poll() is not None else "no shard in 60 s"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = sorted(p.name for p in (out / "shards").glob("shard-*.parquet"))
    assert 1 <= len(done) < 8 and not (out / "build.json").exists()
    kept_mtime = first.stat().st_mtime_ns
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert first.stat().st_mtime_ns == kept_mtime  # finished shards are not regenerated
    generations = pd.read_parquet(out / "generations.parquet")
    assert len(generations) == 24 * 2 * 2  # prompts x variants x samples: nothing lost
    assert not generations.duplicated(["request_id", "sample"]).any()  # nothing duplicated
    assert sorted(generations["shard"].unique()) == list(range(8))


def test_changed_pairing_reuses_generations(tmp_path):
    config = _config(tmp_path, n_real=6, n_fake=6)
    run(config)
    (shard,) = (Path(config.out) / "shards").glob("shard-00000-*.parquet")
    mtime = shard.stat().st_mtime_ns
    pairs = load_pairs(run(BuildConfig(**{**config.__dict__, "pairs_per_prompt": 1})))
    assert pairs.groupby("prompt_id").size().max() == 1
    assert shard.stat().st_mtime_ns == mtime
    manifest = json.loads((Path(config.out) / "build.json").read_text())
    assert manifest["generated_this_run"] == 0


def _pairs_file(path, rows):
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return path


def test_data_merge_mixes_recipes_and_keeps_entities_in_one_split(tmp_path, run_cli):
    a = _pairs_file(tmp_path / "a.jsonl", [
        {"prompt": "Who is X?", "chosen": "No idea.", "rejected": "X paints.", "subset": "fake", "entity_id": "x",
         "split": "train"},
        {"prompt": "Who is Curie?", "chosen": "A physicist.", "rejected": "No idea.", "subset": "real",
         "entity_id": "curie", "split": "test"}])
    b = _pairs_file(tmp_path / "b.jsonl", [
        {"prompt": "Curie was born in 1900, right?", "chosen": "No, 1867.", "rejected": "Yes.",
         "subset": "false_claim", "entity_id": "curie", "split": "test"},
        {"prompt": "Who is X?", "chosen": "No idea.", "rejected": "X paints.", "subset": "fake", "entity_id": "x",
         "split": "train"}])
    out = tmp_path / "mixed.parquet"
    code, stdout, err = run_cli(["data", "merge", str(a), str(b), "--out", str(out)])
    assert code == 0, err
    merged = load_pairs(out)
    assert sorted(merged["subset"]) == ["fake", "false_claim", "real"]  # the repeated row is kept once
    assert "1 repeated rows dropped" in stdout
    assert merged.set_index("subset")["split"].to_dict() == {"fake": "train", "real": "test", "false_claim": "test"}
    c = _pairs_file(tmp_path / "c.jsonl", [
        {"prompt": "Curie won what?", "chosen": "Two Nobels.", "rejected": "Yes.", "subset": "true_claim",
         "entity_id": "curie", "split": "train"}])
    code, _, err = run_cli(["data", "merge", str(a), str(c), "--out", str(tmp_path / "bad.parquet")])
    assert code == 2 and "entity 'curie' is in different splits" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.parquet").exists()
    code, _, err = run_cli(["data", "merge", str(a), "--out", str(tmp_path / "one.parquet")])
    assert code == 2 and "at least two" in err


# --------------------------------------------------------------------------- two processes


def test_two_processes_build_the_same_pairs_as_one(tmp_path):
    """`torchrun --nproc_per_node 2 -m latentrm.cli data build`: rank r generates shards r, r + 2, ...; a shard's
    seed follows its index, so the pairs equal a 1-process build's with the same seed."""
    common = ["-m", "latentrm.cli", "data", "build", "--backend", "fake", "--real", "builtin", "--n-real", "8",
              "--n-fake", "8", "--samples", "2", "--shard-size", "5", "--no-progress", "--seed", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    one = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                         timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(29500 + os.getpid() % 1000), *common, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]
    shards = sorted((tmp_path / "two" / "shards").glob("shard-*.parquet"))
    assert [p.name for p in shards] == sorted(p.name for p in (tmp_path / "one" / "shards").glob("shard-*.parquet"))
    assert len(shards) >= 4
    for path in shards:  # every shard byte-for-byte the same content, whichever rank wrote it
        pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(tmp_path / "one" / "shards" / path.name))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "two" / "pairs.parquet"),
                                  pd.read_parquet(tmp_path / "one" / "pairs.parquet"))
