"""The transaction envelope: canonical encoding, strict decoding and signatures."""

from __future__ import annotations

import json

import pytest
from nacl.signing import SigningKey

from commands.envelope import (
    NODE_NAMESPACE,
    USER_NAMESPACE,
    EnvelopeError,
    NodeAttestation,
    Transaction,
    UserSignature,
    decode_transaction,
    sign_as_node,
    sign_as_user,
    verify_signature,
)

SEED = b"\x05" * 32
PUB = bytes(SigningKey(SEED).verify_key)


def _tx(**payload: object) -> Transaction:
    return sign_as_node(
        chain_id="c",
        kind="repo.create",
        payload={"owner": "alice", "name": "r", **payload},
        actor="alice",
        nonce="ab" * 16,
        seed=SEED,
        node_index=2,
        token_id="t1",
    )


def test_round_trip_and_id() -> None:
    tx = _tx()
    data = tx.encode()
    assert decode_transaction(data) == tx
    assert decode_transaction(data).id() == tx.id() and len(tx.id()) == 32
    assert tx.submitted_by == 2 and isinstance(tx.auth, NodeAttestation) and tx.auth.node == 2
    assert json.loads(tx.signing_bytes()).keys() == {
        "chain_id",
        "kind",
        "payload",
        "actor",
        "nonce",
        "submitted_by",
    }


def test_signatures_verify_only_under_their_namespace_and_key() -> None:
    tx = _tx()
    assert verify_signature(PUB, NODE_NAMESPACE, tx)
    assert not verify_signature(PUB, USER_NAMESPACE, tx)
    assert not verify_signature(b"\x01" * 32, NODE_NAMESPACE, tx)
    assert not verify_signature(b"short", NODE_NAMESPACE, tx)
    user_tx = sign_as_user(
        chain_id="c",
        kind="k",
        payload={},
        actor="alice",
        nonce="00" * 16,
        submitted_by=0,
        seed=SEED,
        key_id="k1",
    )
    assert isinstance(user_tx.auth, UserSignature)
    assert verify_signature(PUB, USER_NAMESPACE, user_tx)
    changed = user_tx.model_copy(update={"nonce": "11" * 16})
    assert not verify_signature(PUB, USER_NAMESPACE, changed)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b" " + b,
        lambda b: json.dumps(json.loads(b), indent=1).encode(),
        lambda b: json.dumps(json.loads(b), sort_keys=False).encode(),
        lambda b: b.replace(b'"name":"r"', b'"name":"\\u0072"'),
        lambda b: b.replace(b'"kind":', b'"kind":"x","kind":'),
    ],
)
def test_non_canonical_spellings_are_refused(mutate: object) -> None:
    data = _tx().encode()
    with pytest.raises(EnvelopeError, match="canonical"):
        decode_transaction(mutate(data))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "Invalid JSON"),
        (b"\xff", "Invalid JSON"),
        (b"[]", "object"),
        (b"{}", "chain_id"),
    ],
)
def test_malformed_transactions_have_clear_messages(data: bytes, fragment: str) -> None:
    with pytest.raises(EnvelopeError, match=fragment):
        decode_transaction(data)


def test_shape_errors_name_the_field() -> None:
    good = json.loads(_tx().encode())
    for field, value, fragment in (
        ("nonce", "xyz", "nonce"),
        ("submitted_by", True, "submitted_by"),
        ("auth", {"type": "robot"}, "auth"),
        ("extra", 1, "extra"),
        ("payload", {"n": 1.5}, "floats"),
        ("payload", {"n": 2**60}, "integer"),
    ):
        bad = dict(good, **{field: value})
        with pytest.raises(EnvelopeError, match=fragment):
            decode_transaction(json.dumps(bad, sort_keys=True, separators=(",", ":")).encode())


def test_deeply_nested_payload_is_an_error_not_a_crash() -> None:
    good = _tx().encode()
    deep = good.replace(b'"name":"r"', b'"name":' + b"[" * 5000 + b"]" * 5000)
    with pytest.raises(EnvelopeError):
        decode_transaction(deep)


def test_transaction_model_refuses_non_canonical_payloads() -> None:
    with pytest.raises(ValueError):
        _tx(n=0.5)
