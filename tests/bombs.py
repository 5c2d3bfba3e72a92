"""Decompression bombs for tests and benchmarks: a 1 GiB blob of zeros, packed, in milliseconds.

Deflate resets its state at a full flush, so the compressed form of 1 MiB of zeros after
a full flush is the same bytes every time: the stream for N MiB is its first piece, the
same middle piece N - 1 times and the end, with the Adler-32 of N MiB of zeros (which
is `(N * 2**20 mod 65521) << 16 | 1`). About 1 KiB per MiB at level 9, which is what
git makes of it too. `zero_blob_repo` puts such a pack, with its index, into a work
repository and commits it, so the real `git push` sends it (git reuses packed objects
as they are).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import zlib
from pathlib import Path

from dulwich.object_format import SHA1
from dulwich.pack import pack_object_header, write_pack_index

MIB = 1 << 20
#: `truncate -s 1G z && git hash-object z`
ZERO_GIB_BLOB = "4fce05a4e4ed8cefef2d99f32c519b2fd7841b74"


def zero_stream(mib: int) -> bytes:
    """A zlib stream of `mib` MiB of zeros, built from repeated full-flush pieces."""
    block = bytes(MIB)
    deflate = zlib.compressobj(9)
    first = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    middle = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert middle == again, "zlib's full flush no longer repeats"
    end = deflate.flush(zlib.Z_FINISH)[:-4]  # the last block, without the checksum
    adler = ((mib * MIB) % 65521) << 16 | 1
    stream = first + middle * (mib - 1) + end + adler.to_bytes(4, "big")
    if mib <= 8:  # the construction is the same for every size: check it where it is cheap
        assert zlib.decompress(stream) == bytes(mib * MIB)
    return stream


def zero_blob_pack(mib: int) -> tuple[bytes, int]:
    """A pack holding one blob of `mib` MiB of zeros; (pack bytes, crc32 of the entry)."""
    entry = bytes(pack_object_header(3, None, mib * MIB, SHA1)) + zero_stream(mib)
    data = b"PACK" + (2).to_bytes(4, "big") + (1).to_bytes(4, "big") + entry
    return data + hashlib.sha1(data).digest(), zlib.crc32(entry)


def blob_id_of_zeros(mib: int) -> str:
    if mib == 1024:
        return ZERO_GIB_BLOB
    h = hashlib.sha1(f"blob {mib * MIB}\0".encode())
    block = bytes(MIB)
    for _ in range(mib):
        h.update(block)
    return h.hexdigest()


def zero_blob_repo(work: Path, mib: int, env: dict[str, str], name: str = "zeros.bin") -> str:
    """A fresh repository at `work` whose `main` holds `name`: `mib` MiB of zeros; its commit id.

    The blob goes in as a ready-made pack, so nothing inflates or hashes the gigabyte.
    """

    def git(*args: str, stdin: bytes | None = None) -> str:
        proc = subprocess.run(["git", *args], cwd=work, env=env, input=stdin, capture_output=True, check=True)
        return proc.stdout.decode().strip()

    work.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", "main")
    pack, crc = zero_blob_pack(mib)
    blob = blob_id_of_zeros(mib)
    base = work / ".git" / "objects" / "pack" / f"pack-{pack[-20:].hex()}"
    base.with_suffix(".pack").write_bytes(pack)
    with open(base.with_suffix(".idx"), "wb") as f:
        write_pack_index(f, [(bytes.fromhex(blob), 12, crc)], pack[-20:], version=2)
    tree = git("mktree", stdin=f"100644 blob {blob}\t{name}\n".encode())
    commit = git("commit-tree", tree, "-m", f"{mib} MiB of zeros")
    git("update-ref", "refs/heads/main", commit)
    return commit


def git_env(home: str = "/nonexistent") -> dict[str, str]:
    """An environment for the git CLI in tests: no user or system config, a fixed identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="T",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="T",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        HOME=home,
    )
    return env
