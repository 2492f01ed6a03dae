"""Feature extraction: truncated forward, pooling under padding, cache behaviour, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentrm.errors import LatentrmError
from latentrm.features import FeatureCache, extract_features, get_hiddens, resolve_layers
from latentrm.models import render_for_scoring

PROMPTS = ["Who is Dr. Ola Vintersen?", "Tell me about Marie Curie and her work on radioactivity, in detail."]
COMPLETIONS = ["I'm not familiar with that name.", "She was a physicist and chemist who won two Nobel prizes."]


def _texts(tokenizer):
    return [render_for_scoring(tokenizer, p, c) for p, c in zip(PROMPTS, COMPLETIONS)]


def test_truncated_forward_matches_full_model(tiny_backbone):
    model, tok = tiny_backbone.model, tiny_backbone.tokenizer
    texts = _texts(tok)
    hiddens = get_hiddens(model, tok, texts, [0, 1, 2, 4], "last", batch_size=2)
    for row, text in enumerate(texts):
        ids = tok(text.text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            full = model(**ids, output_hidden_states=True).hidden_states
        for layer in (0, 1, 2):
            # Batched, padded rows and an unbatched forward run different kernels (other matmul
            # shapes, other reduction orders), so fp32 results agree to rounding, not to the bit.
            # 1e-5 absolute is ~100x fp32 epsilon at these activation sizes; a wrong position
            # or layer differs by O(1).
            torch.testing.assert_close(hiddens[layer][row], full[layer][0, -1], atol=1e-5, rtol=1e-4)
        # HF's last entry has the final norm applied; ours is the raw output of block L.
        normed = model.model.norm(hiddens[4][row : row + 1])[0]
        assert torch.allclose(normed, full[4][0, -1], atol=1e-5)


def test_truncated_forward_stops_early(tiny_backbone):
    model, tok = tiny_backbone.model, tiny_backbone.tokenizer
    calls = []
    hooks_before = [len(layer._forward_hooks) for layer in model.model.layers]
    handle = model.model.layers[3].register_forward_hook(lambda *args: calls.append(1))
    try:
        get_hiddens(model, tok, _texts(tok), [2], "last")
    finally:
        handle.remove()
    assert calls == []
    assert [len(layer._forward_hooks) for layer in model.model.layers] == hooks_before  # ours were removed


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_last_pooling_picks_end_of_turn_under_padding(tiny_backbone, padding_side):
    model, tok = tiny_backbone.model, tiny_backbone.tokenizer
    texts = _texts(tok)
    batched = get_hiddens(model, tok, texts, [2], "last", batch_size=8, padding_side=padding_side)[2]
    for row, text in enumerate(texts):
        alone = get_hiddens(model, tok, [text], [2], "last")[2][0]
        assert torch.allclose(batched[row], alone, atol=1e-5)
    ids = tok(texts[0].text, add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids[-1]) == "<|im_end|>"


def test_mean_pooling_averages_completion_tokens_only(tiny_backbone):
    model, tok = tiny_backbone.model, tiny_backbone.tokenizer
    text = _texts(tok)[0]
    pooled = get_hiddens(model, tok, [text], [1], "mean")[1][0]
    enc = tok(text.text, add_special_tokens=False, return_offsets_mapping=True)
    start = next(i for i, (_, end) in enumerate(enc["offset_mapping"]) if end > text.completion_start)
    with torch.no_grad():
        full = model(torch.tensor([enc["input_ids"]]), output_hidden_states=True).hidden_states[1][0]
    assert torch.allclose(pooled, full[start:].mean(0), atol=1e-5)
    assert not torch.allclose(pooled, full.mean(0), atol=1e-3)


def test_layer_validation(tiny_backbone):
    assert resolve_layers([-1, 2, 2], 4) == [2, 4]
    with pytest.raises(LatentrmError, match="layer 9 does not exist"):
        get_hiddens(tiny_backbone.model, tiny_backbone.tokenizer, _texts(tiny_backbone.tokenizer), [9])


def test_overlong_prompt_is_cut_from_the_left_with_warning(tiny_backbone):
    tok = tiny_backbone.tokenizer
    long_prompt = "background " * 200 + "Who is Marie Curie?"
    text = render_for_scoring(tok, long_prompt, "A physicist.")
    with pytest.warns(UserWarning, match="1 text"):
        cut = get_hiddens(tiny_backbone.model, tok, [text], [1], max_length=64)[1]
    assert cut.shape == (1, 64)
    with pytest.raises(LatentrmError, match="completion alone"):
        get_hiddens(tiny_backbone.model, tok, [render_for_scoring(tok, "q", "word " * 100)], [1], max_length=32)


def test_cache_hit_does_not_touch_the_model(tiny_backbone, tmp_path):
    first = extract_features(tiny_backbone, PROMPTS, COMPLETIONS, [1, 3], cache_dir=tmp_path)

    def must_not_load():
        raise AssertionError("the model was loaded on a cache hit")

    second = extract_features(must_not_load, PROMPTS, COMPLETIONS, [1, 3], cache_dir=tmp_path,
                              tokenizer=tiny_backbone.tokenizer, revision=tiny_backbone.revision,
                              dtype=tiny_backbone.dtype_name, num_layers=tiny_backbone.num_layers)
    for layer in (1, 3):
        np.testing.assert_array_equal(first[layer], second[layer])
    # a different batch size hits the same cache entry
    third = extract_features(must_not_load, PROMPTS, COMPLETIONS, [3], cache_dir=tmp_path, batch_size=1,
                             tokenizer=tiny_backbone.tokenizer, revision=tiny_backbone.revision,
                             dtype=tiny_backbone.dtype_name, num_layers=tiny_backbone.num_layers)
    np.testing.assert_array_equal(first[3], third[3])


def test_interrupted_cache_is_not_taken_as_done(tiny_backbone, tmp_path):
    extract_features(tiny_backbone, PROMPTS, COMPLETIONS, [1], cache_dir=tmp_path)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (folder / "manifest.json").unlink()  # as if the run died before writing the manifest
    cache = FeatureCache(tmp_path)
    assert not cache.has(folder.name, [1])


def test_nan_in_cached_features_is_reported(tiny_backbone, tmp_path):
    extract_features(tiny_backbone, PROMPTS, COMPLETIONS, [1], cache_dir=tmp_path)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    array = np.load(folder / "layer_001.npy")
    array[0, 0] = np.nan
    np.save(folder / "layer_001.npy", array)
    with pytest.raises(LatentrmError, match="NaN"):
        extract_features(tiny_backbone, PROMPTS, COMPLETIONS, [1], cache_dir=tmp_path)
