"""The transaction envelope: what a block carries, how it is signed, and strict decoding.

A transaction is canonical JSON (RFC 8785) of
`{chain_id, kind, payload, actor, nonce, submitted_by, auth}`; its id is the SHA-256 of
those bytes. `decode_transaction` refuses any other spelling of the same object, so one
logical transaction has exactly one id (replay protection depends on that).

`auth` is either a node attestation (validator `node` vouches that it authenticated
`actor` with API token `token_id`) or the actor's own Ed25519 signature with a key they
registered. Both sign `namespace + signing_bytes()`, where signing_bytes covers every
field except `auth`, so a signature is bound to the chain, the command and the nonce.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Annotated, Any, Literal

from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from domain.canonical import NonCanonicalValue, canonical_json

NODE_NAMESPACE = b"stele/tx/v1/node/"
USER_NAMESPACE = b"stele/tx/v1/user/"

_HEX_SIG = r"^[0-9a-f]{128}$"
_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)


class EnvelopeError(ValueError):
    """Bytes that are not a well-formed, canonically encoded transaction."""


class NodeAttestation(BaseModel):
    """Validator `node` authenticated the actor with API token `token_id`."""

    model_config = _STRICT
    type: Literal["node"] = "node"
    node: int = Field(ge=0, le=65535)
    token_id: str = Field(min_length=1, max_length=128)
    sig: str = Field(pattern=_HEX_SIG)


class UserSignature(BaseModel):
    """The actor signed the transaction with their registered key `key_id`."""

    model_config = _STRICT
    type: Literal["user"] = "user"
    key_id: str = Field(min_length=1, max_length=128)
    sig: str = Field(pattern=_HEX_SIG)


Auth = Annotated[NodeAttestation | UserSignature, Field(discriminator="type")]


class Transaction(BaseModel):
    model_config = _STRICT
    chain_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.]*$")
    payload: dict[str, Any]
    actor: str = Field(min_length=1, max_length=100)
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    submitted_by: int = Field(ge=0, le=65535)
    auth: Auth

    @field_validator("payload")
    @classmethod
    def _payload_is_canonical(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            canonical_json(value)
        except NonCanonicalValue as e:
            raise ValueError(f"payload has no canonical JSON form: {e}") from None
        return value

    def signing_bytes(self) -> bytes:
        """Canonical JSON of every field except `auth`: what the signature covers."""
        return canonical_json(_body_dict(self))

    def encode(self) -> bytes:
        """The canonical bytes that go into a block."""
        return canonical_json(_body_dict(self) | {"auth": self.auth.model_dump()})

    def id(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()


def _body_dict(tx: Transaction) -> dict[str, Any]:
    return {
        "chain_id": tx.chain_id,
        "kind": tx.kind,
        "payload": tx.payload,
        "actor": tx.actor,
        "nonce": tx.nonce,
        "submitted_by": tx.submitted_by,
    }


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """One readable line per problem: `field.path: message`."""
    parts = []
    for err in error.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{prefix}{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def decode_transaction(data: bytes) -> Transaction:
    """Parse and validate a transaction; EnvelopeError unless `data` is its canonical encoding.

    A pure function of the bytes, so the last few thousand answers are kept: a node decodes
    each transaction when it admits it, when it prechecks it and when it executes it.
    """
    return _decode(bytes(data))


@functools.lru_cache(maxsize=8192)
def _decode(data: bytes) -> Transaction:
    try:
        tx = Transaction.model_validate_json(data)
    except ValidationError as e:
        raise EnvelopeError(f"malformed transaction: {format_validation_error(e)}") from None
    try:
        encoded = tx.encode()
    except NonCanonicalValue as e:  # pragma: no cover - the payload validator already refuses these
        raise EnvelopeError(f"malformed transaction: {e}") from None
    if encoded != bytes(data):
        raise EnvelopeError("transaction is not canonically encoded (RFC 8785 JSON, keys sorted, no spaces)")
    return tx


def verify_signature(public_key: bytes, namespace: bytes, tx: Transaction) -> bool:
    """Whether `tx.auth.sig` is a valid Ed25519 signature by `public_key` over namespace + body."""
    try:
        VerifyKey(public_key).verify(namespace + tx.signing_bytes(), bytes.fromhex(tx.auth.sig))
    except (CryptoError, ValueError, TypeError):
        return False
    return True


def _unsigned(
    chain_id: str, kind: str, payload: dict[str, Any], actor: str, nonce: str, submitted_by: int, auth: Auth
) -> Transaction:
    return Transaction(
        chain_id=chain_id,
        kind=kind,
        payload=payload,
        actor=actor,
        nonce=nonce,
        submitted_by=submitted_by,
        auth=auth,
    )


_PLACEHOLDER_SIG = "0" * 128


def sign_as_node(
    *,
    chain_id: str,
    kind: str,
    payload: dict[str, Any],
    actor: str,
    nonce: str,
    seed: bytes,
    node_index: int,
    token_id: str,
) -> Transaction:
    """A transaction attested by validator `node_index` (also its `submitted_by`), signed with its seed."""
    draft = _unsigned(
        chain_id,
        kind,
        payload,
        actor,
        nonce,
        node_index,
        NodeAttestation(node=node_index, token_id=token_id, sig=_PLACEHOLDER_SIG),
    )
    sig = SigningKey(seed).sign(NODE_NAMESPACE + draft.signing_bytes()).signature.hex()
    return draft.model_copy(update={"auth": NodeAttestation(node=node_index, token_id=token_id, sig=sig)})


def sign_as_user(
    *,
    chain_id: str,
    kind: str,
    payload: dict[str, Any],
    actor: str,
    nonce: str,
    submitted_by: int,
    seed: bytes,
    key_id: str,
) -> Transaction:
    """A transaction signed by the actor's own Ed25519 key (`key_id` = `domain.ids.key_id_for(pub)`)."""
    draft = _unsigned(
        chain_id,
        kind,
        payload,
        actor,
        nonce,
        submitted_by,
        UserSignature(key_id=key_id, sig=_PLACEHOLDER_SIG),
    )
    sig = SigningKey(seed).sign(USER_NAMESPACE + draft.signing_bytes()).signature.hex()
    return draft.model_copy(update={"auth": UserSignature(key_id=key_id, sig=sig)})
