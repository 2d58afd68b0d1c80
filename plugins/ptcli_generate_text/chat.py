"""A conversation as one prompt: the tokenizer's own chat template where the model has one,
else a plain one for models trained without (GPT-2 and its fine-tunes)::

    System: You are terse.
    User: Hello
    Assistant:

The plain template also ends a reply where the model starts the user's next turn ("\\nUser:")."""

from __future__ import annotations

from ptcli.errors import InputError

ROLES = ("system", "user", "assistant")
PLAIN_STOP = "\nUser:"


def read_messages(messages) -> list[dict]:
    """OpenAI's messages: [{"role", "content": text or [{"type": "text", "text"}, ...]}, ...]."""
    if not isinstance(messages, list) or not messages:
        raise InputError('messages must be a non-empty list of {"role": ..., "content": ...}')
    checked = []
    for number, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InputError(f"messages[{number}]: role must be one of {', '.join(ROLES)}")
        content = message.get("content")
        if isinstance(content, list):
            parts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
            if len(parts) != len(content) or not all(isinstance(part, str) for part in parts):
                raise InputError(f"messages[{number}]: this model reads text parts only")
            content = "".join(parts)
        if not isinstance(content, str):
            raise InputError(f"messages[{number}]: content must be a text")
        checked.append({"role": message["role"], "content": content})
    return checked


def has_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(tokenizer, messages: list[dict]) -> str:
    if has_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    lines = [f"{message['role'].capitalize()}: {message['content']}" for message in messages]
    return "\n".join(lines) + "\nAssistant:"
