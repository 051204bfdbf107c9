"""Signed notes as specified by C2SP signed-note (https://c2sp.org/signed-note), Ed25519 only.

A note is UTF-8 text ending in a newline, a blank line, then one or more signature lines

    — <key name> <base64(4-byte big-endian key ID || signature)>

(U+2014 em dash, a space, the key name, a space, the base64, a newline). The text MUST be
ignored unless a trusted key's signature over it verifies: `open` returns it only then.

Keys use the text forms of Go's golang.org/x/mod/sumdb/note, so other ecosystems' tools
read them as they are:

    verifier key   <name>+<8 hex digits of the key ID>+<base64(0x01 || 32-byte public key)>
    signer key     PRIVATE+KEY+<name>+<8 hex digits>+<base64(0x01 || 32-byte seed)>

    key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4]

The cryptography (Ed25519, RFC 8032) is the `cryptography` package's; this module only
frames, parses and checks. Parsing is strict and capped: a note is at most
`MAX_NOTE_BYTES` and holds at most `MAX_SIGNATURES` signature lines, and any line that
does not parse rejects the whole note (`InvalidSignature`), never a crash of another kind.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import RotorError

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # em dash and a space
MAX_NOTE_BYTES = 256 * 1024  # the spec asks for at least 16 signatures; PQ ones are ~5 kB
MAX_SIGNATURES = 100
MAX_NAME_CHARS = 256
_ED25519_SIG = 64
_ED25519_KEY = 32
_PRIVATE_PREFIX = "PRIVATE+KEY+"


class InvalidSignature(RotorError, ValueError):
    """A note is malformed, carries no verifying signature by a known key, or a known key's
    signature on it fails; also a malformed key text."""


def _ed25519() -> tuple[Any, Any, type[Exception]]:
    try:
        from cryptography.exceptions import InvalidSignature as BadSig
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (
            Ed25519PrivateKey,
            Ed25519PublicKey,
        )
    except ImportError:  # pragma: no cover - depends on the installation
        raise RotorError("signed notes need the 'cryptography' package: "
                         "pip install 'rotorshm[tiles]'") from None
    return Ed25519PrivateKey, Ed25519PublicKey, BadSig


def check_key_name(name: object) -> str:
    """A key name: non-empty, no Unicode space, '+' or control character (InvalidSignature)."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise InvalidSignature(f"a key name is 1..{MAX_NAME_CHARS} characters, got {name!r:.80}")
    for ch in name:
        if ch.isspace() or ch == "+" or ord(ch) < 0x20 or ch == "\x7f":
            raise InvalidSignature(f"key name {name!r:.80} holds a space, '+' or a control "
                                   "character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSignature(f"key name {name!r:.80} is not valid UTF-8") from None
    return name


def key_id(name: str, public_key: bytes) -> int:
    """The key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4], as a big-endian uint32."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes((ALG_ED25519,)) + public_key)
    return int.from_bytes(digest.digest()[:4], "big")


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidSignature(f"{what} is not standard base64") from None


def _split_key(text: object, parts: int, what: str) -> list[str]:
    if not isinstance(text, str) or len(text) > 1024:
        raise InvalidSignature(f"a {what} is a short string, got {type(text).__name__}")
    text = text.strip()
    # The name has no '+', and neither has the hex ID: the base64 (which may) is the rest.
    fields = text.split("+", parts - 1)
    if len(fields) != parts:
        raise InvalidSignature(f"malformed {what}: {text[:80]!r}")
    return fields


def _parse_id(hex_id: str, what: str) -> int:
    if len(hex_id) != 8 or any(c not in "0123456789abcdefABCDEF" for c in hex_id):
        raise InvalidSignature(f"{what}: the key ID must be 8 hex digits, got {hex_id[:20]!r}")
    return int(hex_id, 16)


@dataclass(frozen=True)
class Verifier:
    """A public key that verifies a named signer's notes."""

    name: str
    key_id: int
    public_key: bytes = field(repr=False)

    @classmethod
    def from_text(cls, text: str) -> Verifier:
        """Parse `<name>+<hex key ID>+<base64(0x01 || public key)>` (InvalidSignature if bad)."""
        name, hex_id, data = _split_key(text, 3, "verifier key")
        check_key_name(name)
        kid = _parse_id(hex_id, "verifier key")
        raw = _b64decode(data, "verifier key data")
        if len(raw) != 1 + _ED25519_KEY or raw[0] != ALG_ED25519:
            raise InvalidSignature("verifier key data must be 0x01 and a 32-byte Ed25519 key")
        public = raw[1:]
        if key_id(name, public) != kid:
            raise InvalidSignature(f"verifier key of {name!r}: ID {hex_id} does not match its key")
        _ed25519()[1].from_public_bytes(public)  # rejects a malformed point early
        return cls(name, kid, public)

    def to_text(self) -> str:
        """The verifier key text."""
        data = base64.b64encode(bytes((ALG_ED25519,)) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id:08x}+{data}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True if `signature` (64 bytes, without the key ID) signs `message` under this key."""
        _, public_cls, bad_sig = _ed25519()
        if len(signature) != _ED25519_SIG:
            return False
        try:
            public_cls.from_public_bytes(self.public_key).verify(signature, message)
        except bad_sig:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key with its name; `verifier` is the matching public key."""

    name: str
    key_id: int
    seed: bytes = field(repr=False)
    public_key: bytes = field(repr=False)

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A fresh key named `name` (from the operating system's random source)."""
        return cls.from_seed(name, os.urandom(_ED25519_KEY))

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        """The key whose RFC 8032 private seed is `seed` (32 bytes)."""
        check_key_name(name)
        if len(seed) != _ED25519_KEY:
            raise InvalidSignature("an Ed25519 seed is 32 bytes")
        from cryptography.hazmat.primitives import serialization

        private_cls = _ed25519()[0]
        public = private_cls.from_private_bytes(seed).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(name, key_id(name, public), bytes(seed), public)

    @classmethod
    def from_text(cls, text: str) -> Signer:
        """Parse `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`."""
        if not isinstance(text, str) or not text.strip().startswith(_PRIVATE_PREFIX):
            raise InvalidSignature("a signer key starts with PRIVATE+KEY+")
        name, hex_id, data = _split_key(text.strip()[len(_PRIVATE_PREFIX):], 3, "signer key")
        kid = _parse_id(hex_id, "signer key")
        raw = _b64decode(data, "signer key data")
        if len(raw) != 1 + _ED25519_KEY or raw[0] != ALG_ED25519:
            raise InvalidSignature("signer key data must be 0x01 and a 32-byte Ed25519 seed")
        signer = cls.from_seed(name, raw[1:])
        if signer.key_id != kid:
            raise InvalidSignature(f"signer key of {name!r}: ID {hex_id} does not match its key")
        return signer

    def to_text(self) -> str:
        """The signer key text (secret: store it owner-only)."""
        data = base64.b64encode(bytes((ALG_ED25519,)) + self.seed).decode("ascii")
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id:08x}+{data}"

    @property
    def verifier(self) -> Verifier:
        """The matching verifier."""
        return Verifier(self.name, self.key_id, self.public_key)

    def sign_bytes(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`."""
        signature: bytes = _ed25519()[0].from_private_bytes(self.seed).sign(message)
        return signature


def _check_text(text: str, what: str) -> None:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise InvalidSignature(f"{what} is over {MAX_NOTE_BYTES} bytes")
    for ch in text:
        if ord(ch) < 0x20 and ch != "\n":
            raise InvalidSignature(f"{what} holds the control character {ch!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSignature(f"{what} is not valid UTF-8") from None


def sign(text: str, signer: Signer | Iterable[Signer]) -> str:
    """The signed note of `text` (which must end in a newline) by one or more signers."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise InvalidSignature("note text must be a string ending in a newline")
    _check_text(text, "note text")
    signers = [signer] if isinstance(signer, Signer) else list(signer)
    if not signers:
        raise InvalidSignature("a note needs at least one signer")
    message = text.encode("utf-8")
    lines = []
    for s in signers:
        blob = s.key_id.to_bytes(4, "big") + s.sign_bytes(message)
        lines.append(f"{SIG_PREFIX}{s.name} {base64.b64encode(blob).decode('ascii')}\n")
    note = text + "\n" + "".join(lines)
    if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
        raise InvalidSignature(f"the signed note would be over {MAX_NOTE_BYTES} bytes")
    return note


def _verifiers(keys: Verifier | str | Iterable[Verifier | str]) -> dict[tuple[str, int], Verifier]:
    items: Iterable[Verifier | str] = [keys] if isinstance(keys, (Verifier, str)) else keys
    out: dict[tuple[str, int], Verifier] = {}
    for k in items:
        v = k if isinstance(k, Verifier) else Verifier.from_text(k)
        out[(v.name, v.key_id)] = v
    if not out:
        raise InvalidSignature("no verifier keys given")
    return out


def split(note: str | bytes) -> tuple[str, list[tuple[str, int, bytes]]]:
    """Parse a signed note without verifying it: (text, [(name, key ID, signature), ...]).

    Strict: InvalidSignature for anything malformed, oversized or with too many signatures.
    """
    if isinstance(note, (bytes, bytearray, memoryview)):
        raw = bytes(note)
        if len(raw) > MAX_NOTE_BYTES:
            raise InvalidSignature(f"note is over {MAX_NOTE_BYTES} bytes")
        try:
            note = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSignature("note is not valid UTF-8") from None
    if not isinstance(note, str):
        raise InvalidSignature(f"a note is str or bytes, got {type(note).__name__}")
    _check_text(note, "note")
    if not note.endswith("\n"):
        raise InvalidSignature("malformed note: it does not end in a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise InvalidSignature("malformed note: no blank line before the signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    sig_lines = block[:-1].split("\n")  # the block ends with a newline (checked above)
    if not block or len(sig_lines) > MAX_SIGNATURES:
        raise InvalidSignature(f"a note carries 1..{MAX_SIGNATURES} signature lines")
    sigs = []
    for line in sig_lines:
        if not line.startswith(SIG_PREFIX):
            raise InvalidSignature(f"malformed signature line {line[:80]!r}")
        name, sep, data = line[len(SIG_PREFIX):].partition(" ")
        if not sep:
            raise InvalidSignature(f"malformed signature line {line[:80]!r}")
        check_key_name(name)
        blob = _b64decode(data, "a signature")
        if len(blob) < 5:
            raise InvalidSignature(f"signature of {name!r} is too short")
        sigs.append((name, int.from_bytes(blob[:4], "big"), blob[4:]))
    return text, sigs


def open(note: str | bytes, verifier_keys: Verifier | str | Iterable[Verifier | str]) -> str:  # noqa: A001
    """The text of `note` if a known key's signature on it verifies; else InvalidSignature.

    Signatures of unknown keys (another name, or another key ID) are ignored, as the
    specification requires; a known key's signature that fails rejects the whole note.
    """
    known = _verifiers(verifier_keys)
    text, sigs = split(note)
    message = text.encode("utf-8")
    good = 0
    for name, kid, signature in sigs:
        v = known.get((name, kid))
        if v is None:
            continue
        if not v.verify(message, signature):
            raise InvalidSignature(f"the signature of {name!r} ({kid:08x}) does not verify")
        good += 1
    if not good:
        names = ", ".join(f"{n}+{k:08x}" for n, k in known)
        raise InvalidSignature(f"no signature by a known key ({names}) on the note")
    return text
