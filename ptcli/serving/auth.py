"""API keys: ``Authorization: Bearer KEY`` (the header OpenAI's clients send), checked in
constant time against every key so that neither a key's length nor its first wrong character
shows in the answer's timing. Keys are never logged."""

from __future__ import annotations

import hashlib
import hmac


class Keys:
    def __init__(self, keys) -> None:
        # Digests: compare_digest on equal lengths, whatever length a key or a guess has.
        self._digests = [hashlib.sha256(key.encode()).digest() for key in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def allows(self, header: str | None) -> bool:
        scheme, _, token = (header or "").strip().partition(" ")
        given = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
        matched = False
        for digest in self._digests:  # no early exit: the time does not say which key matched
            matched |= hmac.compare_digest(digest, given)
        return matched and scheme.lower() == "bearer"


def parse_keys(values, environment: str | None) -> tuple[str, ...]:
    """Keys from --api-key (repeatable) and PTCLI_SERVE_API_KEYS (comma-separated)."""
    from ptcli.errors import UsageError

    given = [*(values or ()), *([environment] if environment is not None else [])]
    pieces = [piece for value in given for piece in value.split(",")]
    if any(not piece.strip() for piece in pieces):
        # An unset shell variable in a script (`--api-key "$KEY"`) must not serve without keys.
        raise UsageError("an API key is empty (--api-key \"\" or an empty entry in PTCLI_SERVE_API_KEYS): that would "
                         "serve without authentication; give keys of at least 8 characters, or no --api-key at all")
    keys = [piece.strip() for piece in pieces]
    for key in keys:
        if len(key) < 8 or any(ch.isspace() or not ch.isprintable() for ch in key):
            raise UsageError("an API key must be at least 8 printable characters, without spaces")
    return tuple(dict.fromkeys(keys))
