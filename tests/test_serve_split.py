"""Splitting OpenRLHF queries back into prompt turns and response, with markers read from the template."""

from __future__ import annotations

import copy

import pytest

from latentrm.errors import LatentrmError
from latentrm.models import render_for_scoring, render_generation_prompt
from latentrm.serve.split import ChatSplitter

MULTI_TURN = [
    {"role": "system", "content": "You answer questions about people."},
    {"role": "user", "content": "Who is Ada Lovelace?"},
    {"role": "assistant", "content": "A mathematician who wrote about the Analytical Engine."},
    {"role": "user", "content": "And who is Bartholomew Quenby?"},
]
RESPONSE = "I don't know anyone by that name.\nCould you give me more context?"

LLAMA3_LIKE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
GEMMA_LIKE = (
    "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
    "else message['role'] %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def splitter(tokenizer):
    return ChatSplitter.from_tokenizer(tokenizer)


def _with_template(tokenizer, template):
    other = copy.deepcopy(tokenizer)
    other.chat_template = template
    return other


def test_markers_come_from_the_template(tokenizer, splitter):
    opener = render_generation_prompt(tokenizer, "x")[len(tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False)):]
    assert splitter.assistant.open == opener
    assert splitter.assistant.close_core == tokenizer.eos_token  # SmolLM2: <|im_end|>


@pytest.mark.parametrize("prompt", ["Who is Bartholomew Quenby?", MULTI_TURN])
def test_split_inverts_render_for_scoring(tokenizer, splitter, prompt):
    query = render_for_scoring(tokenizer, prompt, RESPONSE).text
    parts = splitter.split(query)
    assert parts.response == RESPONSE
    assert parts.roundtrip_ok
    assert render_for_scoring(tokenizer, parts.prompt, parts.response).text == query
    if isinstance(prompt, list):
        assert parts.prompt == MULTI_TURN
    else:  # the template's default system turn is recovered as an explicit system message
        assert [m["role"] for m in parts.prompt] == ["system", "user"]
        assert parts.prompt[-1]["content"] == prompt


def test_openrlhf_style_query_with_padding_and_eos(tokenizer, splitter):
    pad, eos = tokenizer.pad_token, tokenizer.eos_token
    query = pad * 3 + render_generation_prompt(tokenizer, MULTI_TURN) + RESPONSE + eos + pad * 2
    parts = splitter.split(query)
    assert parts.prompt == MULTI_TURN and parts.response == RESPONSE and parts.roundtrip_ok


def test_truncated_generation_without_end_of_turn(tokenizer, splitter):
    query = render_generation_prompt(tokenizer, "Who is Ada?") + "Ada was a"
    parts = splitter.split(query)
    assert parts.response == "Ada was a" and parts.prompt[-1] == {"role": "user", "content": "Who is Ada?"}


def test_response_that_mentions_a_turn_header_stays_whole(tokenizer, splitter):
    tricky = "Type <|im_start|>user on a new line to start a turn."
    parts = splitter.split(render_for_scoring(tokenizer, "How do turns start?", tricky).text)
    assert parts.response == tricky


@pytest.mark.parametrize("template", [LLAMA3_LIKE, GEMMA_LIKE], ids=["llama3-like", "gemma-like"])
def test_other_template_families(tokenizer, template):
    other = _with_template(tokenizer, template)
    splitter = ChatSplitter.from_tokenizer(other)
    prompt = MULTI_TURN[1:]  # gemma has no system role in practice; keep the same prompt for both
    query = render_for_scoring(other, prompt, RESPONSE).text
    parts = splitter.split(query)
    assert parts.prompt == prompt and parts.response == RESPONSE and parts.roundtrip_ok


@pytest.mark.parametrize("bad,match", [
    ("plain text with no template", "cannot parse the text at character 0"),
    ("<|im_start|>user\nhi<|im_end|>\n", "no assistant response"),
    ("<|im_start|>user\nhi there", "never ends"),
])
def test_queries_not_from_the_template_are_rejected(splitter, bad, match):
    with pytest.raises(LatentrmError, match=match):
        splitter.split(bad)


def test_tokenizer_without_template_is_refused(tokenizer):
    with pytest.raises(LatentrmError, match="no chat template"):
        ChatSplitter.from_tokenizer(_with_template(tokenizer, None))
