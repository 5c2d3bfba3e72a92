"""Ed25519 signing and verification of votes and certificates (PyNaCl)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from consensus.types import Certificate, Vote, VoteKind, vote_message


@dataclass(frozen=True)
class ValidatorSet:
    """The fixed validator set from genesis; index i is the i-th key in sorted order."""

    chain_id: str
    pubkeys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if list(self.pubkeys) != sorted(set(self.pubkeys)):
            raise ValueError("validator keys must be distinct and sorted")
        if not 1 <= len(self.pubkeys) <= 256:
            raise ValueError("between 1 and 256 validators are supported")

    @property
    def n(self) -> int:
        return len(self.pubkeys)

    @property
    def f(self) -> int:
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        return 2 * self.f + 1

    def index_of(self, pubkey: bytes) -> int | None:
        try:
            return self.pubkeys.index(pubkey)
        except ValueError:
            return None

    def leader(self, view: int) -> int:
        """Round-robin over the sorted keys: the same on every node."""
        return view % self.n


class Signer:
    """Holds one validator's private key and signs its votes."""

    def __init__(self, seed: bytes, validators: ValidatorSet) -> None:
        self._key = SigningKey(seed)
        self.pubkey = bytes(self._key.verify_key)
        idx = validators.index_of(self.pubkey)
        if idx is None:
            raise ValueError("this key is not a validator in genesis")
        self.index = idx
        self._chain_id = validators.chain_id

    def vote(self, kind: VoteKind, view: int, block: bytes) -> Vote:
        sig = self._key.sign(vote_message(self._chain_id, kind, view, block)).signature
        return Vote(kind, view, block, self.index, sig)


class Verifier:
    """Verifies votes and certificates against the validator set, caching successes.

    The cache matters: the same signature arrives in a vote and again inside every
    certificate that includes it, and Ed25519 verification dominates CPU time.
    """

    def __init__(self, validators: ValidatorSet, cache_size: int = 50_000) -> None:
        self.validators = validators
        self._keys = [VerifyKey(pk) for pk in validators.pubkeys]
        self._cache: OrderedDict[tuple[int, bytes, bytes], None] = OrderedDict()
        self._cache_size = cache_size

    def verify_signature(self, kind: VoteKind, view: int, block: bytes, signer: int, sig: bytes) -> bool:
        if not 0 <= signer < len(self._keys):
            return False
        msg = vote_message(self.validators.chain_id, kind, view, block)
        key = (signer, msg, sig)
        if key in self._cache:
            return True
        try:
            self._keys[signer].verify(msg, sig)
        except (BadSignatureError, ValueError, TypeError):
            return False
        self._cache[key] = None
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return True

    def verify_vote(self, vote: Vote) -> bool:
        return self.verify_signature(vote.kind, vote.view, vote.block, vote.signer, vote.signature)

    def verify_certificate(self, cert: Certificate) -> bool:
        sigs = cert.signatures
        signers = [s for s, _ in sigs]
        if len(sigs) < self.validators.quorum or signers != sorted(set(signers)):
            return False
        return all(self.verify_signature(cert.kind, cert.view, cert.block, s, sig) for s, sig in sigs)
