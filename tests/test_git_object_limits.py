"""The maximum object size, enforced from pack headers before anything is inflated.

Packs are built byte by byte here (a 1 GiB blob of zeros deflates to about 1 MB; a
delta of 16 KiB of copy instructions makes 1 GiB out of 64 KiB), so the bombs are real
packs that git would accept. Memory is measured with tracemalloc around the call, with
bounds that are generous but far below what inflating the bombs would take. Results
are checked with the real git (`cat-file`).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tracemalloc
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import pytest
from dulwich.object_format import SHA1
from dulwich.objects import Blob
from dulwich.pack import OFS_DELTA, REF_DELTA, pack_object_header

from adapters.git import GitStore, PackRejected, accept_peer_pack, receive_pack
from adapters.git.pack_view import PackView
from adapters.git.packs import ObjectTooLarge, accept_peer_pack_file
from commands.git_view import GitView, GitViewError, MemoryGitView
from tests.bombs import zero_blob_pack

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")

GIB = 1 << 30
MIB = 1 << 20
T = TypeVar("T")
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


# ---------------------------------------------------------------------------- building packs


def _size_varint(n: int) -> bytes:
    """A delta header size: little-endian groups of 7 bits."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def copy_op(offset: int, size: int) -> bytes:
    """A delta instruction copying `size` bytes (at most 0xFFFFFF; 0 means 64 KiB) from the base."""
    cmd, args = 0x80, bytearray()
    for i in range(4):
        if (offset >> (8 * i)) & 0xFF:
            cmd |= 1 << i
            args.append((offset >> (8 * i)) & 0xFF)
    for i in range(3):
        if (size >> (8 * i)) & 0xFF:
            cmd |= 1 << (4 + i)
            args.append((size >> (8 * i)) & 0xFF)
    return bytes([cmd]) + bytes(args)


def delta(base_size: int, target_size: int, ops: bytes) -> bytes:
    return _size_varint(base_size) + _size_varint(target_size) + ops


class PackBuilder:
    """Writes pack entries as git does: header, zlib stream; `finish` adds the SHA-1 trailer."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.count = 0

    def add(
        self,
        type_num: int,
        data: bytes | Iterable[bytes],
        size: int | None = None,
        base: int | bytes | None = None,
    ) -> int:
        """Append an entry; `base` is the base's offset (OFS_DELTA) or binary id (REF_DELTA)."""
        offset = 12 + len(self.body)
        chunks = [data] if isinstance(data, bytes) else data
        if size is None:
            assert isinstance(data, bytes)
            size = len(data)
        header_base = offset - base if isinstance(base, int) else base
        self.body += pack_object_header(type_num, header_base, size, SHA1)
        deflate = zlib.compressobj(1)
        for chunk in chunks:
            self.body += deflate.compress(chunk)
        self.body += deflate.flush()
        self.count += 1
        return offset

    def finish(self) -> bytes:
        data = b"PACK" + (2).to_bytes(4, "big") + self.count.to_bytes(4, "big") + bytes(self.body)
        return data + hashlib.sha1(data).digest()


@pytest.fixture(scope="module")
def zero_gib_pack() -> bytes:
    """One blob of 1 GiB of zeros (about 1 MB; see `tests.bombs`)."""
    return zero_blob_pack(1024)[0]


def delta_bomb() -> bytes:
    """A 64 KiB blob and a 16 KiB delta over it whose result is 1 GiB."""
    p = PackBuilder()
    base = p.add(Blob.type_num, bytes(64 * 1024))
    p.add(OFS_DELTA, delta(64 * 1024, GIB, b"\x80" * (GIB // 0x10000)), base=base)
    return p.finish()


def traced(work: Callable[[], T]) -> tuple[T, int]:
    """`work()` and the peak of memory Python allocated while it ran."""
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def store(tmp_path: Path) -> GitStore:
    return GitStore(tmp_path / "git")


def left_behind(store: GitStore) -> list[str]:
    return sorted(p.name for d in (store.packs_dir, store.tmp_dir) for p in d.iterdir())


def git_sizes(store: GitStore, repo_id: str) -> dict[str, int]:
    """Every object of the repository with its size, as C git reads them."""
    out = subprocess.run(
        ["git", "cat-file", "--batch-check=%(objectname) %(objectsize)", "--batch-all-objects"],
        cwd=store.repo_path(repo_id),
        env=ENV,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return {sha: int(size) for sha, size in (line.split() for line in out.splitlines())}


# ---------------------------------------------------------------------------- the size scan


def test_a_gigabyte_of_zeros_is_refused_from_its_header(store: GitStore, zero_gib_pack: bytes) -> None:
    assert len(zero_gib_pack) < 8 * MIB
    with pytest.raises(ObjectTooLarge) as info:
        traced(lambda: receive_pack(store, "r1", zero_gib_pack))
    assert str(info.value) == (
        "a blob (object 1 of 1 in the pack) is 1.00 GiB; this exceeds the maximum object size of 100 MiB"
    )
    _, peak = traced(lambda: _refused(lambda: receive_pack(store, "r1", io.BytesIO(zero_gib_pack))))
    assert peak < 4 * MIB  # the pack's bytes in pieces, never the blob
    assert left_behind(store) == []


def _refused(work: Callable[[], object]) -> str:
    with pytest.raises(PackRejected) as info:
        work()
    return str(info.value)


def test_a_peer_offering_a_bomb_is_refused_too(store: GitStore, zero_gib_pack: bytes, tmp_path: Path) -> None:
    digest = hashlib.sha256(zero_gib_pack).hexdigest()
    message, peak = traced(lambda: _refused(lambda: accept_peer_pack(store, digest, zero_gib_pack)))
    assert "exceeds the maximum object size of 100 MiB" in message
    assert peak < 4 * MIB
    downloaded = tmp_path / "download.pack"
    downloaded.write_bytes(zero_gib_pack)
    message, peak = traced(lambda: _refused(lambda: accept_peer_pack_file(store, digest, downloaded)))
    assert "a blob (object 1 of 1 in the pack) is 1.00 GiB" in message
    assert peak < 4 * MIB
    assert left_behind(store) == [] and store.quarantined() == []


def test_a_delta_counts_with_the_size_of_its_result(store: GitStore) -> None:
    bomb = delta_bomb()
    assert len(bomb) < 64 * 1024
    message, peak = traced(lambda: _refused(lambda: receive_pack(store, "r1", bomb)))
    assert message == (
        "a delta (object 2 of 2 in the pack) makes an object of 1.00 GiB; "
        "this exceeds the maximum object size of 100 MiB"
    )
    assert peak < 4 * MIB
    # Over a small limit, the delta's own data counts too.
    small = GitStore(store.root, max_object_bytes=8 * 1024)
    message = _refused(lambda: receive_pack(small, "r1", bomb))
    assert "a blob (object 1 of 2 in the pack) is 64.00 KiB" in message
    assert left_behind(store) == []


def test_at_the_limit_is_accepted_one_byte_over_is_not(store: GitStore) -> None:
    limit = MIB
    packs = []
    for size in (limit, limit + 1):
        p = PackBuilder()
        p.add(Blob.type_num, os.urandom(size))
        packs.append(p.finish())
    assert receive_pack(store, "r1", packs[0], max_object_bytes=limit).object_count == 1
    message = _refused(lambda: receive_pack(store, "r1", packs[1], max_object_bytes=limit))
    assert message.endswith("is 1.00 MiB; this exceeds the maximum object size of 1 MiB")
    # The store's limit is the default for every entry point.
    assert GitStore(store.root).max_object_bytes == 100 * MIB


def test_a_thin_pack_deltas_against_the_repository_within_the_limit(store: GitStore) -> None:
    base_data = os.urandom(256 * 1024)
    first = PackBuilder()
    first.add(Blob.type_num, base_data)
    store.import_pack("r1", receive_pack(store, "r1", first.finish()).digest)
    base_id = Blob.from_string(base_data).sha().digest()
    thin = PackBuilder()  # a REF_DELTA to an object the pack does not hold
    thin.add(
        REF_DELTA,
        delta(len(base_data), len(base_data) + 3, copy_op(0, len(base_data)) + b"\x03new"),
        base=base_id,
    )
    received = receive_pack(store, "r1", thin.finish(), max_object_bytes=len(base_data) + 3)
    assert received.object_count == 2  # completed with its base
    store.import_pack("r1", received.digest)
    assert sorted(git_sizes(store, "r1").values()) == [len(base_data), len(base_data) + 3]
    bomb = PackBuilder()
    bomb.add(
        REF_DELTA,
        delta(len(base_data), GIB, copy_op(0, len(base_data)) * (GIB // len(base_data))),
        base=base_id,
    )
    message = _refused(lambda: receive_pack(store, "r1", bomb.finish()))
    assert "a delta (object 1 of 1 in the pack) makes an object of 1.00 GiB" in message


# ---------------------------------------------------------------------------- indexing in bounded memory


@pytest.mark.parametrize("root", ["in the pack", "in the repository"])
def test_a_branching_delta_tree_keeps_about_one_object(store: GitStore, root: str) -> None:
    """A comb of deltas over one object: dulwich alone would hold a copy per level."""
    size, levels = 2 * MIB, 16
    spine_data = os.urandom(size - 1) + b"\xff"  # a last byte no marker below uses
    p = PackBuilder()
    base_id = Blob.from_string(spine_data).sha().digest()
    if root == "in the pack":
        spine: int | bytes = p.add(Blob.type_num, spine_data)
    else:
        first = PackBuilder()
        first.add(Blob.type_num, spine_data)
        store.import_pack("r1", receive_pack(store, "r1", first.finish()).digest)
        spine = base_id
    for level in range(levels):
        # Each object replaces the last byte of its base. The leaf comes first in the pack,
        # so dulwich's depth-first walk leaves it waiting with its base while it goes down.
        kind = OFS_DELTA if isinstance(spine, int) else REF_DELTA
        for marker, is_spine in ((level, False), (128 + level, True)):
            ops = copy_op(0, size - 1) + b"\x01" + bytes([marker])
            offset = p.add(kind, delta(size, size, ops), base=spine)
            if is_spine:
                next_spine = offset
        spine = next_spine
    received, peak = traced(lambda: receive_pack(store, "r1", p.finish(), max_object_bytes=size))
    assert peak < 8 * size, f"{peak / MIB:.1f} MiB for {size / MIB:.0f} MiB objects"
    store.import_pack("r1", received.digest)
    sizes = git_sizes(store, "r1")
    assert len(sizes) == 2 * levels + 1 and set(sizes.values()) == {size}


# ---------------------------------------------------------------------------- the ledger's size query


def sizes_pack() -> tuple[bytes, dict[str, int]]:
    """Blobs of several sizes and a delta whose result is larger than its base."""
    small, middle, large = os.urandom(1000), os.urandom(300_000), os.urandom(700_000)
    grown = large + large[:200_000]
    p = PackBuilder()
    p.add(Blob.type_num, small)
    p.add(Blob.type_num, middle)
    base = p.add(Blob.type_num, large)
    p.add(OFS_DELTA, delta(len(large), len(grown), copy_op(0, len(large)) + copy_op(0, 200_000)), base=base)
    return p.finish(), {Blob.from_string(x).id.decode(): len(x) for x in (small, middle, large, grown)}


def test_oversized_objects_gives_every_node_the_same_answer(tmp_path: Path) -> None:
    data, sizes = sizes_pack()
    digest = hashlib.sha256(data).hexdigest()
    answers = []
    for node in ("a", "b"):
        store = GitStore(tmp_path / node)
        if node == "a":
            assert receive_pack(store, "r1", data).digest == digest
        else:
            accept_peer_pack(store, digest, data)  # a validator that fetched it from a peer
        view: GitView = PackView(store)
        answers.append([view.oversized_objects(digest, limit) for limit in (500_000, 0, 10**9, 500_000)])
        if node == "a":
            store.import_pack("r1", digest)
            assert git_sizes(store, "r1") == sizes  # the sizes C git reads
    assert answers[0] == answers[1]
    over, everything, nothing, again = answers[0]
    assert over == sorted((sha, n) for sha, n in sizes.items() if n > 500_000)
    assert sorted(n for _, n in over) == [700_000, 900_000]  # the delta's result counts
    assert everything == sorted(sizes.items())
    assert nothing == [] and again == over


def test_oversized_objects_raises_rather_than_answering_from_a_damaged_pack(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "git")
    with pytest.raises(GitViewError, match="not held"):
        PackView(store).oversized_objects("0" * 64, 0)
    data, sizes = sizes_pack()
    digest = receive_pack(store, "r1", data).digest
    path = store.pack_base(digest).with_suffix(".pack")
    intact = path.read_bytes()
    flipped = bytearray(intact)
    flipped[len(intact) // 2] ^= 0x01  # inside the compressed data: the headers still parse
    for damaged in (intact[:-100], bytes(flipped), intact[:40]):
        path.write_bytes(damaged)
        with pytest.raises(GitViewError, match="cannot read the sizes"):
            PackView(store).oversized_objects(digest, 0)
    path.write_bytes(intact)
    assert PackView(store).oversized_objects(digest, 0) == sorted(sizes.items())


def test_memory_git_view_answers_declared_sizes() -> None:
    view = MemoryGitView()
    view.add_pack("p1")
    view.set_size("p1", "b" * 40, 200 * MIB)
    view.set_size("p1", "a" * 40, 101 * MIB)
    view.set_size("p1", "c" * 40, 5)
    view.add_pack("p2")
    checked: GitView = view
    assert checked.oversized_objects("p1", 100 * MIB) == [("a" * 40, 101 * MIB), ("b" * 40, 200 * MIB)]
    assert checked.oversized_objects("p2", 0) == []
    with pytest.raises(GitViewError):
        checked.oversized_objects("p3", 0)
