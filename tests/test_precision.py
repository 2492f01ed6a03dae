"""One precision policy: every TRL config the project builds on a CPU trains in fp32 unless the user asks."""

from __future__ import annotations

import pytest

from latentrm.errors import LatentrmError
from latentrm.models import cpu_has_bf16, precision
from latentrm.rl.baselines import METHODS, BaselineConfig, trainer_args


def test_cpu_is_fp32_even_with_bf16_instructions(monkeypatch):
    import latentrm.models as models

    for native in (False, True):  # the same answer on an AVX2-only CPU and on one with AVX-512 BF16
        monkeypatch.setattr(models, "cpu_has_bf16", lambda native=native: native)
        chosen = precision("auto", use_cpu=True)
        assert (chosen.dtype, chosen.bf16, chosen.fp16, chosen.cpu_bf16) == ("float32", False, False, native)
    asked = precision("bf16", use_cpu=True)  # asking is honoured, short names included
    assert (asked.dtype, asked.bf16, asked.fp16) == ("bfloat16", True, False)
    assert precision("float16", use_cpu=True).trainer_kwargs() == {"bf16": False, "fp16": True}
    with pytest.raises(LatentrmError, match="banana"):
        precision("banana")
    assert isinstance(cpu_has_bf16(), bool)


@pytest.mark.parametrize("method", METHODS)
def test_every_baseline_config_is_fp32_on_cpu(method, tmp_path):
    # TRL 1.x's SFTConfig, DPOConfig and KTOConfig default to bf16=True: the 14x slower warm start on AVX2
    args = trainer_args(BaselineConfig(method=method, pairs="p.jsonl"), tmp_path, use_cpu=True)
    assert args.bf16 is False and args.fp16 is False
    assert args.gradient_checkpointing is False
    assert args.model_init_kwargs["dtype"] == "float32"
    asked = trainer_args(BaselineConfig(method=method, pairs="p.jsonl", dtype="bfloat16"), tmp_path, use_cpu=True)
    assert asked.bf16 is True and asked.model_init_kwargs["dtype"] == "bfloat16"


def test_every_grpo_preset_is_fp32_on_cpu(tmp_path):
    from latentrm.rl.grpo_config import PRESET_DIR, build_config

    for path in sorted(PRESET_DIR.glob("*.yaml")):  # the gpu preset too, when it runs on a CPU
        config = build_config(path.stem, pairs="p.jsonl", rm="rm")
        if config.dtype != "auto":
            continue  # a preset that names its dtype asked for it
        args = config.to_grpo_config(tmp_path, use_cpu=True)
        assert args.bf16 is False and args.fp16 is False, path.stem
