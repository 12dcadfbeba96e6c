"""API keys: what a key looks like, how it is stored (hashed), and the roles it can carry.

A key is ``tt_<id>_<secret>``: the id is public (it names the key in logs, listings and
``revoke``), the secret is 32 random bytes. Only a SHA-256 hash of the whole key is stored.
A slow password hash would add nothing here: the secret is random and long, so no
dictionary of likely keys exists to try against a stolen hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from datetime import UTC, datetime

from twotier.key_records import KeyRecord, KeyStore, Role

__all__ = ["KeyRecord", "KeyStore", "Role"]  # what the tiers keep of a key, defined there

PREFIX = "tt"
_ID_BYTES = 6  # 12 hex characters
_SECRET_BYTES = 32


#: A key's name is shown to operators in terminals and pages: no control characters (C0,
#: DEL, C1: escape sequences, bells) and no invisible format characters that reorder or hide
#: text (bidirectional overrides and isolates, zero-width characters). The published schema
#: carries the same pattern, so what it calls valid is accepted.
NAME_MAX = 100
_HIDDEN = (
    "\\x00-\\x1f\\x7f-\\x9f\\xad\\u061c\\u180e\\u200b-\\u200f\\u2028-\\u202e"
    "\\u2060-\\u2069\\ufeff\\ufff9-\\ufffb"
)
NAME_PATTERN = f"^[^{_HIDDEN}]*$"
_HIDDEN_CHARACTER = re.compile(f"[{_HIDDEN}]")


def check_key_name(name: str) -> str:
    """``name`` if it may name a key; ValueError saying why not."""
    if not name or len(name) > NAME_MAX:
        raise ValueError(f"a key name has 1 to {NAME_MAX} characters")
    if not name.isprintable() and any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise ValueError("a key name must be valid Unicode text (a lone surrogate)")
    hidden = _HIDDEN_CHARACTER.search(name)
    if hidden is not None:
        raise ValueError(
            "a key name cannot hold control or invisible formatting characters "
            f"(found U+{ord(hidden.group()):04X})"
        )
    return name


def printable(text: str) -> str:
    """``text`` with control, format and other invisible characters written as escapes,
    for a terminal (names stored before they were checked)."""
    return "".join(
        c if unicodedata.category(c)[0] != "C" else c.encode("unicode_escape").decode()
        for c in text
    )


def new_key() -> tuple[str, str, str]:
    """A fresh key: (id, the key to give the user once, the hash to store)."""
    key_id = secrets.token_hex(_ID_BYTES)
    token = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return key_id, token, hash_key(token)


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def key_id_of(token: str) -> str | None:
    """The public id inside a presented key, or None if it is not shaped like one."""
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(key_id) != 2 * _ID_BYTES or not secret:
        return None
    return key_id


def matches(token: str, record: KeyRecord) -> bool:
    """Whether ``token`` is the key ``record`` was made for, in time independent of where
    the two differ."""
    return hmac.compare_digest(hash_key(token), record.secret_hash)


async def create_key(store: KeyStore, name: str, role: Role) -> tuple[KeyRecord, str]:
    """Make and store a key: (its record, the key itself, which is never stored).
    ValueError if ``name`` cannot name a key."""
    check_key_name(name)
    key_id, token, secret_hash = new_key()
    record = KeyRecord(key_id, name, role, secret_hash, datetime.now(UTC))
    await store.add_key(record)
    return record, token
