"""The HTTP request bodies of the reward server (pydantic): `/score` items and OpenRLHF's `/get_reward`.

Field checks live here so that every refusal is a 422 naming the field: unknown keys, a NUL character, a role
that is not a chat role, a completion without an assistant turn.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, field_validator

Number = StrictFloat | StrictInt


ROLES = ("system", "user", "assistant", "tool", "developer")


def _no_nul(value: str) -> str:
    """A NUL character is refused: no chat template or tokenizer gives it a meaning, and C-string code around a
    server (logs, proxies) may cut the text there, so the score would be of a text nobody sent."""
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000); remove it")
    return value


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: StrictStr
    content: StrictStr

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"role {value!r} is not a chat role; use one of {', '.join(ROLES)}")
        return value

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        return _no_nul(value)


Messages = Annotated[list[Message], Field(min_length=1)]


class ScoreItem(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key ("completions") is an error, not ignored
    prompt: StrictStr | Messages
    completion: StrictStr | Messages
    subset: StrictStr | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | list[Message]) -> str | list[Message]:
        return _no_nul(value) if isinstance(value, str) else value

    @field_validator("completion")
    @classmethod
    def _completion_has_an_answer(cls, value: str | list[Message]) -> str | list[Message]:
        if isinstance(value, str):
            return _no_nul(value)
        if not isinstance(value, str) and not any(m.role == "assistant" for m in value):
            raise ValueError("completion messages hold no assistant turn; send the answer as a string or as "
                             "[{\"role\": \"assistant\", \"content\": ...}]")
        return value


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt "shaper" would silently use the default
    items: list[ScoreItem] = Field(min_length=1)
    shaper: StrictStr | None = None
    shaper_params: dict[str, Number] | None = None


class GetRewardRequest(BaseModel):
    query: list[StrictStr] = Field(min_length=1)
    prompts: list[StrictStr] | None = None
    labels: list[Any] | None = None

    @field_validator("query", "prompts")
    @classmethod
    def _texts(cls, value: list[str] | None) -> list[str] | None:
        for text in value or []:
            _no_nul(text)
        return value


def _plain(value: str | list[Message]) -> str | list[dict[str, str]]:
    return value if isinstance(value, str) else [{"role": m.role, "content": m.content} for m in value]


