"""Shared fixtures: a tiny random backbone with the embedded tokenizer; nothing is downloaded.

The embedded SmolLM2 tokenizer is parsed out of the GGUF once (10-20 s) and kept
in the user cache; the tiny model (4 layers, 64 wide, about 3 M parameters) is
built from a config with a fixed seed, saved once per session and reloaded
through the same `load_backbone` path users take.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    from latentrm.models import load_tokenizer

    return load_tokenizer("embedded")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_backbone(tiny_model_dir):
    from latentrm.models import load_backbone

    return load_backbone(str(tiny_model_dir), dtype="float32", device="cpu")


@pytest.fixture
def run_cli(capsys):
    """run_cli(argv) -> (exit code, stdout, stderr) of `latentrm argv`, in process."""
    from latentrm.cli import main

    def run(argv):
        code = 0
        try:
            main(argv)
        except SystemExit as exit_info:
            code = exit_info.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def person_pairs(tmp_path):
    """person_pairs(n, ...) -> a pairs.jsonl of `n` people: a hedge against an answer, chosen flipping by class
    (person i is made-up when i % 2 == fake_when), split by entity (train, train, train, val, test)."""
    import pandas as pd

    def write(n: int, hedge: str = "I am not familiar with person {i}.",
              answer: str = "Person {i} is a chemist in Lyon.", fake_when: int = 1) -> Path:
        rows = []
        for i in range(n):
            fake = i % 2 == fake_when
            said_hedge, said_answer = hedge.format(i=i), answer.format(i=i)
            rows.append({"prompt": f"Who is person {i}?", "chosen": said_hedge if fake else said_answer,
                         "rejected": said_answer if fake else said_hedge, "subset": "fake" if fake else "real",
                         "entity_id": f"p{i}", "split": ["train", "train", "train", "val", "test"][i % 5]})
        path = tmp_path / "pairs.jsonl"
        pd.DataFrame(rows).to_json(path, orient="records", lines=True)
        return path

    return write
