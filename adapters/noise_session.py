"""Noise XX sessions for the validator transport: key derivation, handshake and framing.

We never design our own handshake: peers run `Noise_XX_25519_ChaChaPoly_SHA256` from the
`noiseprotocol` library, with static keys derived from the validators' Ed25519 keys, so
authenticating the Noise static key authenticates the validator.

Wire format (after the handshake as well as during it) is a sequence of Noise messages,
each prefixed by its 2-byte big-endian length, as the Noise spec recommends. A Noise message
is at most 65535 bytes, so application frames (up to `max_frame_bytes`, e.g. 16 MiB) are
carried in a plaintext *stream*: each frame is written as `u32 length || frame`, and the
stream is cut into Noise messages of at most `MAX_PLAINTEXT` bytes. A large frame's length
header is therefore in its first chunk and the frame spans as many chunks as it needs; many
small frames share a single Noise message, which keeps the per-frame AEAD and syscall cost
low when thousands of votes per second are sent.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence
from typing import Any

from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519, crypto_sign_ed25519_sk_to_curve25519
from nacl.signing import SigningKey
from noise.connection import Keypair, NoiseConnection

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
PROLOGUE_PREFIX = b"stele/p2p/v1/"
MAX_NOISE_MESSAGE = 65535
AEAD_TAG_LEN = 16
# Largest plaintext whose ciphertext (plaintext + tag) still fits a Noise message.
MAX_PLAINTEXT = MAX_NOISE_MESSAGE - AEAD_TAG_LEN
FRAME_HEADER = struct.Struct(">I")
MSG_HEADER = struct.Struct(">H")
MAX_FRAME_CEILING = 2**32 - 1


class HandshakeError(Exception):
    """The peer did not complete a valid handshake as the validator we expected."""


class MalformedFrame(Exception):
    """A transport message failed to decrypt or was framed incorrectly; the session is unusable."""


def prologue(chain_id: str) -> bytes:
    """Binds the handshake to the chain, so nodes of different chains cannot connect."""
    return PROLOGUE_PREFIX + chain_id.encode("utf-8")


def x25519_private_from_seed(seed: bytes) -> bytes:
    """The node's Noise static private key, derived from its Ed25519 seed (one key to manage)."""
    sk = SigningKey(seed)
    # libsodium expects the 64-byte Ed25519 secret key: seed || public key.
    return bytes(crypto_sign_ed25519_sk_to_curve25519(bytes(sk) + bytes(sk.verify_key)))


def x25519_public_from_ed25519(pubkey: bytes) -> bytes:
    """The Noise static public key a validator must present, derived from its genesis key."""
    return bytes(crypto_sign_ed25519_pk_to_curve25519(pubkey))


def encode_message(msg: bytes) -> bytes:
    """Prefixes one Noise message with its 2-byte length."""
    return MSG_HEADER.pack(len(msg)) + msg


async def read_message(reader: asyncio.StreamReader) -> bytes:
    """Reads one length-prefixed Noise message (raises IncompleteReadError on EOF)."""
    header = await reader.readexactly(MSG_HEADER.size)
    (length,) = MSG_HEADER.unpack(header)
    return await reader.readexactly(length)


def _remote_static(handshake_state: Any) -> bytes:
    """The peer's static key from the handshake state.

    noiseprotocol 0.3.1 (pinned) has no public getter and deletes the handshake state from the
    connection when the last message is processed, so callers keep their own reference to it.
    """
    public = getattr(handshake_state.rs, "public_bytes", None)
    if not isinstance(public, bytes) or len(public) != 32:
        raise HandshakeError("peer sent no static key")
    return public


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    static_private: bytes,
    prologue_bytes: bytes,
    initiator: bool,
    accept_remote: Callable[[bytes], bool],
) -> tuple[Any, bytes]:
    """Runs Noise XX and returns (connection, remote static key) once `accept_remote` approves it.

    The initiator checks the responder's key before sending its own third message, so it never
    authenticates itself to an impostor. Library errors are mapped to HandshakeError.
    """
    try:
        noise = NoiseConnection.from_name(PROTOCOL_NAME)
        noise.set_keypair_from_private_bytes(Keypair.STATIC, static_private)
        noise.set_prologue(prologue_bytes)
        if initiator:
            noise.set_as_initiator()
        else:
            noise.set_as_responder()
        noise.start_handshake()
        state = noise.noise_protocol.handshake_state
        if initiator:
            writer.write(encode_message(bytes(noise.write_message())))
            await writer.drain()
            noise.read_message(await read_message(reader))
            remote = _remote_static(state)
            if not accept_remote(remote):
                raise HandshakeError("unexpected remote static key")
            writer.write(encode_message(bytes(noise.write_message())))
            await writer.drain()
        else:
            noise.read_message(await read_message(reader))
            writer.write(encode_message(bytes(noise.write_message())))
            await writer.drain()
            noise.read_message(await read_message(reader))
            remote = _remote_static(state)
            if not accept_remote(remote):
                raise HandshakeError("unexpected remote static key")
        if not noise.handshake_finished:
            raise HandshakeError("handshake did not finish")
    except HandshakeError:
        raise
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise HandshakeError(f"connection closed during handshake: {exc!r}") from exc
    except Exception as exc:  # any library error on peer input is a failed handshake
        raise HandshakeError(f"invalid handshake message: {exc!r}") from exc
    return noise, remote


class FrameDecoder:
    """Reassembles length-prefixed frames from the decrypted plaintext stream.

    Frames longer than `max_frame_bytes` are skipped without being buffered, so a peer cannot
    make us allocate more than one maximum frame plus one Noise message.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self._max = max_frame_bytes
        self._buf = bytearray()
        self._skip = 0

    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        """Returns the frames completed by `data` and the number of oversized frames skipped."""
        frames: list[bytes] = []
        oversized = 0
        start = 0
        if self._skip:
            start = min(self._skip, len(data))
            self._skip -= start
            if self._skip:
                return frames, oversized
        buf = self._buf
        if start:
            buf += memoryview(data)[start:]
        else:
            buf += data
        off = 0
        end = len(buf)
        while end - off >= FRAME_HEADER.size:
            (length,) = FRAME_HEADER.unpack_from(buf, off)
            if length > self._max:
                oversized += 1
                off += FRAME_HEADER.size
                skipped = min(length, end - off)
                off += skipped
                self._skip = length - skipped
                if self._skip:
                    break
                continue
            body = off + FRAME_HEADER.size
            if end - body < length:
                break
            frames.append(bytes(buf[body : body + length]))
            off = body + length
        if off:
            del buf[:off]
        return frames, oversized


class NoiseTransport:
    """Encrypts outgoing frame batches and decrypts incoming messages for one established session."""

    def __init__(self, noise: Any, max_frame_bytes: int) -> None:
        self._noise = noise
        self._decoder = FrameDecoder(max_frame_bytes)

    def seal(self, frames: Sequence[bytes]) -> list[bytes]:
        """Returns the wire pieces (length prefixes and ciphertexts) carrying `frames` in order."""
        parts: list[bytes] = []
        for frame in frames:
            parts.append(FRAME_HEADER.pack(len(frame)))
            parts.append(frame)
        plain = b"".join(parts)
        out: list[bytes] = []
        encrypt = self._noise.encrypt
        for off in range(0, len(plain), MAX_PLAINTEXT):
            ciphertext: bytes = encrypt(plain[off : off + MAX_PLAINTEXT])
            out.append(MSG_HEADER.pack(len(ciphertext)))
            out.append(ciphertext)
        return out

    def open(self, message: bytes) -> tuple[list[bytes], int]:
        """Decrypts one Noise message; returns (completed frames, oversized frames skipped)."""
        if len(message) <= AEAD_TAG_LEN:
            # Every message we send carries at least one plaintext byte.
            raise MalformedFrame(f"noise message too short ({len(message)} bytes)")
        try:
            plain: bytes = self._noise.decrypt(message)
        except Exception as exc:  # any decrypt failure means a corrupt or forged stream
            raise MalformedFrame(f"decrypt failed: {exc!r}") from exc
        return self._decoder.feed(plain)
