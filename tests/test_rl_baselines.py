"""The SFT warm start: the chosen side of the train pairs, each once, and the policy learns it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from latentrm.errors import LatentrmError
from latentrm.rl.baselines import BaselineConfig, preference_rows, run

ROWS = [{"prompt": f"Who is person {i}?",
         "chosen": "I am not familiar with that person." if i % 2 else "They are a chemist.",
         "rejected": "They are a chemist." if i % 2 else "I am not familiar with that person.",
         "subset": "fake" if i % 2 else "real", "split": "train" if i < 16 else "test",
         "entity_id": f"e{i}"} for i in range(20)]


def _chosen_logprob(model_dir, tokenizer) -> float:
    """Mean log-probability per token of the train rows' chosen completions under the chat template."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    total, count = 0.0, 0
    for row in ROWS[:16]:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": row["prompt"]}], tokenize=False,
                                               add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(prompt + row["chosen"], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
        targets = torch.tensor(ids[1:])
        picked = logits[torch.arange(len(targets)), targets][len(prompt_ids) - 1:]
        total, count = total + float(picked.sum()), count + len(picked)
    return total / count


def test_sft_rows_are_the_distinct_chosen_completions_of_the_train_split():
    frame = pd.DataFrame(ROWS + [dict(ROWS[1], rejected="Another rejected answer.")])  # same chosen, new pair
    rows = preference_rows(frame, "sft")
    assert len(rows) == 16  # 16 train pairs; the duplicate chosen text of row 1 is not counted twice
    assert rows[1] == {"prompt": [{"role": "user", "content": "Who is person 1?"}],
                       "completion": [{"role": "assistant", "content": "I am not familiar with that person."}]}
    with pytest.raises(LatentrmError, match="no train rows"):
        preference_rows(frame.assign(split="test"), "sft")


def test_sft_raises_the_likelihood_of_the_chosen_side(tiny_model_dir, tokenizer, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    config = BaselineConfig(method="sft", pairs=str(pairs), policy=str(tiny_model_dir), run_dir=str(tmp_path),
                            steps=6, batch_size=4, learning_rate=1e-3, threads=1)
    out = run(config, log=lambda *_: None)
    before, after = _chosen_logprob(tiny_model_dir, tokenizer), _chosen_logprob(out / "policy", tokenizer)
    assert after > before + 0.5, (before, after)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "baseline-sft" and out.name == "baseline-sft"
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 6 and history[-1]["loss"] < history[0]["loss"]
