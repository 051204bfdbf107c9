"""rotorshm.note: C2SP signed notes, checked against another implementation's published note."""

from __future__ import annotations

import base64

import pytest

pytest.importorskip("cryptography", reason="the tiles extra (in dev) installs cryptography")

from rotorshm.errors import RotorError  # noqa: E402
from rotorshm.note import (  # noqa: E402
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    InvalidSignature,
    Signer,
    Verifier,
    key_id,
    open,
    sign,
    split,
)

# Interoperability fixture: the example of Go's golang.org/x/mod/sumdb/note package (the
# reference implementation the C2SP signed-note specification grew from), as published in
# its package documentation, https://pkg.go.dev/golang.org/x/mod/sumdb/note ("Here is a
# well-formed signed note" / "It can be constructed and displayed using"), with its signer
# key, verifier key and signed note.
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = (GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIu"
           "GUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")

# The example note of the C2SP signed-note specification (c2sp.org/signed-note); its key is
# not published, so it can only be parsed, never verified.
C2SP_NOTE = ("Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\n"
             "ed \u00e8 subito sera.\n\n\u2014 quasimodo.example/salvatore NnugSzTjtVAewIS+Z/"
             "iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n")


def test_go_reference_note_verifies() -> None:
    assert open(GO_NOTE, GO_VERIFIER) == GO_TEXT
    assert open(GO_NOTE.encode(), [Verifier.from_text(GO_VERIFIER)]) == GO_TEXT


def test_go_reference_note_is_reproduced_byte_for_byte() -> None:
    signer = Signer.from_text(GO_SIGNER)
    assert signer.to_text() == GO_SIGNER
    assert signer.verifier.to_text() == GO_VERIFIER
    assert sign(GO_TEXT, signer) == GO_NOTE  # Ed25519 is deterministic (RFC 8032)


def test_go_reference_note_tampered_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        open(GO_NOTE.replace("cryptography", "cryptographY"), GO_VERIFIER)


def test_c2sp_example_parses_and_its_text_keeps_blank_lines() -> None:
    text, sigs = split(C2SP_NOTE)
    assert text.endswith("sera.\n") and "\n\ned" in text
    assert [(n, len(s)) for n, _, s in sigs] == [("quasimodo.example/salvatore", 64)]
    with pytest.raises(InvalidSignature, match="no signature by a known key"):
        open(C2SP_NOTE, GO_VERIFIER)


def test_round_trip_and_key_id() -> None:
    a = Signer.generate("example.com/log")
    b = Signer.generate("example.com/other")
    v = a.verifier
    assert Verifier.from_text(v.to_text()) == v
    assert Signer.from_text(a.to_text()).seed == a.seed
    assert v.key_id == key_id("example.com/log", a.public_key)
    note = sign("hello\n", [a, b])
    assert open(note, v.to_text()) == "hello\n"
    assert open(note, [b.verifier]) == "hello\n"
    # A signature by an unknown key is ignored; one by the known key suffices.
    assert open(sign("hello\n", [b, a]), [v]) == "hello\n"
    assert issubclass(InvalidSignature, RotorError)


def test_same_name_other_key_is_ignored_and_failing_known_key_rejects() -> None:
    a = Signer.generate("example.com/log")
    impostor = Signer.generate("example.com/log")  # same name, another key ID
    with pytest.raises(InvalidSignature, match="no signature by a known key"):
        open(sign("x\n", impostor), a.verifier)
    good = sign("x\n", a)
    text, sigs = split(good)
    forged_blob = base64.b64encode(a.key_id.to_bytes(4, "big") + bytes(64)).decode()
    forged = good + f"\u2014 example.com/log {forged_blob}\n"
    with pytest.raises(InvalidSignature, match="does not verify"):
        open(forged, a.verifier)


@pytest.mark.parametrize("mangle", [
    lambda n: n.replace("\u2014", "-"),                    # hyphen instead of the em dash
    lambda n: n.replace("\n\n", "\n"),                     # no blank line
    lambda n: n[:-1],                                      # no final newline
    lambda n: n.replace("PeterNeumann x08", "PeterNeumann  x08"),
    lambda n: n.replace("x08go", "x08g*"),                 # not base64
    lambda n: n.replace("problem,", "problem,\r"),         # control character
    lambda n: n + "\u2014 PeterNeumann\n",                 # signature line without a signature
    lambda n: n + "trailing garbage\n",
    lambda n: n.replace("\u2014 PeterNeumann", "\u2014 Peter+Neumann"),
])
def test_malformed_notes_are_rejected(mangle: object) -> None:
    with pytest.raises(InvalidSignature):
        open(mangle(GO_NOTE), GO_VERIFIER)  # type: ignore[operator]


def test_caps() -> None:
    s = Signer.generate("k")
    with pytest.raises(InvalidSignature):
        open(b"x" * (MAX_NOTE_BYTES + 1), s.verifier)
    many = sign("t\n", [s] * (MAX_SIGNATURES + 1))
    with pytest.raises(InvalidSignature):
        open(many, s.verifier)
    with pytest.raises(InvalidSignature):
        open(b"\xff\xfe\n\n", s.verifier)


@pytest.mark.parametrize("text", [
    "", "x", "PeterNeumann+c74f20a3",
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",
])
def test_bad_verifier_keys(text: str) -> None:
    with pytest.raises(InvalidSignature):
        Verifier.from_text(text)


def test_sign_refuses_bad_text() -> None:
    s = Signer.generate("k")
    for bad in ("no newline", "bell\a\n"):
        with pytest.raises(InvalidSignature):
            sign(bad, s)
    with pytest.raises(InvalidSignature):
        Signer.generate("has space")
