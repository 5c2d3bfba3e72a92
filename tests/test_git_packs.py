"""Receiving packs into quarantine (thin ones completed), importing them, and the GitView queries.

Packs are made by the real `git pack-objects`; what the store writes is checked with the
real git too (`index-pack`, `fsck`, `cat-file`, `for-each-ref`).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from dulwich.object_format import SHA1
from dulwich.objects import Blob, Tree
from dulwich.pack import write_pack_objects

from adapters.git import GitStore, PackRejected, accept_peer_pack, receive_pack
from adapters.git.packs import PackTooLarge

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")

ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "T",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "T",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", *args], cwd=cwd, env=ENV, input=input, capture_output=True)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr.decode()}"
    return proc.stdout


def rev(work: Path, spec: str) -> str:
    return git("rev-parse", spec, cwd=work).decode().strip()


def commit(work: Path, name: str, content: str) -> str:
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    (work / name).write_text(content)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", f"edit {name}", cwd=work)
    return rev(work, "HEAD")


def pack_of(work: Path, *revs: str, thin: bool = False) -> bytes:
    """`git pack-objects --revs` of `revs` (use ^X to exclude)."""
    args = ["pack-objects", "--revs", "--stdout"] + (["--thin"] if thin else [])
    return git(*args, cwd=work, input="\n".join(revs).encode() + b"\n")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    w = tmp_path / "work"
    git("init", "-q", "-b", "main", str(w))
    # A file large enough, and edited, so that later packs carry deltas against it.
    commit(w, "big.txt", "".join(f"line {i} of the original text\n" for i in range(3000)))
    commit(w, "src/a.py", "print('a')\n")
    return w


@pytest.fixture
def store(tmp_path: Path) -> GitStore:
    return GitStore(tmp_path / "git")


def visible_files(store: GitStore) -> list[str]:
    """Everything in quarantine and in the work dir."""
    return sorted(p.name for d in (store.packs_dir, store.tmp_dir) for p in d.iterdir())


def test_normal_pack_is_quarantined_not_visible(store: GitStore, work: Path) -> None:
    head = rev(work, "HEAD")
    data = pack_of(work, head)
    received = receive_pack(store, "r1", data, max_bytes=1 << 20)
    assert received.object_count == 7  # 2 commits, 3 trees (root, root', src), 2 blobs
    stored = store.pack_bytes_for(received.digest)
    assert stored == data  # a self-contained pack is kept byte for byte
    assert hashlib.sha256(stored).hexdigest() == received.digest and received.size == len(data)
    assert store.quarantined() == [received.digest]
    # Quarantined: reachable through its digest only.
    assert store.has_commit("r1", received.digest, head)
    assert not store.has_commit("r1", "", head)
    assert not store.has_object("r1", "", head)
    proc = subprocess.run(["git", "cat-file", "-e", head], cwd=store.repo_path("r1"), env=ENV)
    assert proc.returncode != 0  # C git does not see it either
    # Receiving the same pack again is harmless, and says it did not create it: whoever sent
    # it the second time must not be able to discard the copy the ledger may depend on.
    again = receive_pack(store, "r1", io.BytesIO(data))
    assert received.created and not again.created
    assert (again.digest, again.object_count, again.size) == (received.digest, 7, len(data))
    assert store.pack_bytes_for("0" * 64) is None
    assert list(store.tmp_dir.iterdir()) == []


def test_thin_pack_is_completed_into_a_self_contained_pack(
    store: GitStore, work: Path, tmp_path: Path
) -> None:
    base = rev(work, "HEAD")
    store.import_pack("r1", receive_pack(store, "r1", pack_of(work, base)).digest)
    store.write_refs("r1", {"refs/heads/main": base})
    text = (work / "big.txt").read_text()
    new = commit(work, "big.txt", text.replace("line 1500 ", "LINE 1500 "))
    thin = pack_of(work, new, f"^{base}", thin=True)
    assert b"PACK" == thin[:4]

    received = receive_pack(store, "r1", thin)
    full = store.pack_bytes_for(received.digest)
    assert full is not None and len(full) > len(thin) and received.object_count > 3
    # C git indexes the completed pack alone, in a repository that has nothing else.
    empty = tmp_path / "empty.git"
    git("init", "-q", "--bare", str(empty))
    git("index-pack", "--stdin", cwd=empty, input=full)  # fails on an unresolved delta
    assert git("cat-file", "-t", new, cwd=empty).strip() == b"commit"
    # A peer with no repository objects accepts it by digest, and gets the same digest.
    peer = GitStore(tmp_path / "peer")
    assert accept_peer_pack(peer, received.digest, full) == received
    with pytest.raises(PackRejected, match="lacks"):  # the thin one is not self-contained
        accept_peer_pack(peer, hashlib.sha256(thin).hexdigest(), thin)
    with pytest.raises(PackRejected, match="SHA-256"):
        accept_peer_pack(peer, "1" * 64, full)


def test_thin_pack_without_its_bases_is_rejected(store: GitStore, work: Path) -> None:
    base = rev(work, "HEAD")
    new = commit(work, "big.txt", (work / "big.txt").read_text() + "one more line\n")
    thin = pack_of(work, new, f"^{base}", thin=True)
    with pytest.raises(PackRejected, match="deltas against objects this repository lacks"):
        receive_pack(store, "r1", thin)
    assert visible_files(store) == []


def _corruptions(data: bytes) -> dict[str, bytes]:
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    return {
        "empty": b"",
        "header only": data[:12],
        "cut in the middle": data[: len(data) // 2],
        "last byte missing": data[:-1],
        "no trailer": data[:-20],
        "flipped byte": bytes(flipped),
        "junk after": data + b"junk",
        "zeroed trailer": data[:-20] + b"\0" * 20,
        "not a pack": b"NOPE" + data[4:],
        "bad version": data[:7] + b"\x09" + data[8:],
        "too many objects": data[:8] + (int.from_bytes(data[8:12], "big") + 1).to_bytes(4, "big") + data[12:],
    }


@pytest.mark.parametrize("case", list(_corruptions(b"x" * 64)))
def test_malformed_or_truncated_packs_are_rejected_leaving_nothing(
    store: GitStore, work: Path, case: str
) -> None:
    head = rev(work, "HEAD")
    bad = _corruptions(pack_of(work, head))[case]
    with pytest.raises(PackRejected) as info:
        receive_pack(store, "r1", bad)
    assert str(info.value)
    if case in ("cut in the middle", "last byte missing", "header only", "empty", "no trailer"):
        assert "truncated" in str(info.value)
    assert visible_files(store) == []
    assert store.quarantined() == []
    assert not store.has_object("r1", "", head)


def test_fsck_rejects_a_tree_with_a_dot_git_entry(store: GitStore) -> None:
    blob = Blob.from_string(b"[core]\n\tfsmonitor = evil\n")
    tree = Tree()
    tree.add(b".git", 0o100644, blob.id)
    buf = io.BytesIO()
    write_pack_objects(buf, [(blob, None), (tree, None)], object_format=SHA1)
    with pytest.raises(PackRejected, match="malformed object.*invalid name"):
        receive_pack(store, "r1", buf.getvalue())
    assert visible_files(store) == []
    assert receive_pack(store, "r1", buf.getvalue(), fsck=False).object_count == 2


def test_size_limit(store: GitStore, work: Path) -> None:
    data = pack_of(work, rev(work, "HEAD"))
    with pytest.raises(PackTooLarge, match="maximum size of 100 bytes"):
        receive_pack(store, "r1", data, max_bytes=100)
    with pytest.raises(PackTooLarge, match="maximum size of 1 KiB"):
        receive_pack(store, "r1", io.BytesIO(data), max_bytes=1024)
    assert visible_files(store) == []
    small = GitStore(store.root, max_pack_bytes=200)
    with pytest.raises(PackTooLarge):
        receive_pack(small, "r1", data)
    assert receive_pack(store, "r1", data, max_bytes=len(data)).size == len(data)


def test_import_makes_objects_visible_to_git(store: GitStore, work: Path) -> None:
    first = rev(work, "HEAD~1")
    head = rev(work, "HEAD")
    received = receive_pack(store, "r1", pack_of(work, head))
    store.import_pack("r1", received.digest)
    store.import_pack("r1", received.digest)  # idempotent: replaying a block
    bare = store.repo_path("r1")
    assert git("cat-file", "-t", head, cwd=bare).strip() == b"commit"
    assert store.has_commit("r1", "", head) and store.has_commit("r1", "", first)
    store.write_refs("r1", {"refs/heads/main": head, "refs/tags/v1": first})
    store.set_head("r1", "main")
    git("fsck", "--strict", "--no-dangling", cwd=bare)
    refs = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare).decode().split("\n")
    assert f"refs/heads/main {head}" in refs and f"refs/tags/v1 {first}" in refs
    assert git("symbolic-ref", "HEAD", cwd=bare).strip() == b"refs/heads/main"
    assert store.refs("r1") == {"refs/heads/main": head, "refs/tags/v1": first}
    store.write_refs("r1", {"refs/heads/main": head, "refs/heads/dev": first})
    assert store.refs("r1") == {"refs/heads/dev": first, "refs/heads/main": head}
    store.set_head("r1", "dev")
    assert store.head("r1") == "refs/heads/dev"
    with pytest.raises(ValueError):
        store.write_refs("r1", {"refs/heads/bad name": head})
    with pytest.raises(ValueError):
        store.write_refs("r1", {"refs/heads/x": "not-a-sha"})
    with pytest.raises(ValueError):
        store.repo_path("../escape")
    with pytest.raises(FileNotFoundError):
        store.import_pack("r1", "a" * 64)


def test_ancestry_and_completeness_across_repo_and_quarantine(store: GitStore, work: Path) -> None:
    base = rev(work, "HEAD")
    root = rev(work, "HEAD~1")
    store.import_pack("r1", receive_pack(store, "r1", pack_of(work, base)).digest)
    store.write_refs("r1", {"refs/heads/main": base})
    c1 = commit(work, "src/b.py", "b = 1\n")
    c2 = commit(work, "big.txt", "rewritten\n")
    git("tag", "-a", "-m", "release", "v2", cwd=work)
    tag = rev(work, "v2")
    git("checkout", "-q", "-b", "side", root, cwd=work)
    side = commit(work, "side.txt", "side\n")
    digest = receive_pack(store, "r1", pack_of(work, c2, tag, side, f"^{base}", thin=True)).digest

    assert store.is_ancestor("r1", digest, base, c2)
    assert store.is_ancestor("r1", digest, root, c2)
    assert store.is_ancestor("r1", digest, c1, c2)
    assert store.is_ancestor("r1", digest, c2, c2)
    assert not store.is_ancestor("r1", digest, c2, base)  # the other way round
    assert not store.is_ancestor("r1", digest, side, c2)  # a sibling branch
    assert store.is_ancestor("r1", digest, root, side)
    assert not store.is_ancestor("r1", "", base, c2)  # without the pack, c2 is unknown
    assert store.is_ancestor("r1", "", root, base)

    assert store.has_commit("r1", digest, c2) and store.has_commit("r1", digest, side)
    assert not store.has_commit("r1", "", c2)
    assert not store.has_commit("r1", digest, tag)  # an annotated tag is not a commit
    assert store.has_object("r1", digest, tag)  # ... but it is there, with its commit
    assert store.object_type("r1", digest, tag) == "tag"
    assert store.object_type("r1", digest, c2) == "commit"
    assert store.object_type("r1", "", c2) is None
    assert not store.has_commit("r1", digest, "f" * 40)
    assert not store.has_commit("r1", digest, "not hex")
    assert not store.is_ancestor("r1", digest, "f" * 40, c2)


def test_a_commit_without_its_history_or_tree_is_not_complete(store: GitStore, work: Path) -> None:
    parent = rev(work, "HEAD~1")
    head = rev(work, "HEAD")
    # Only the tip commit, its trees and blobs: its parent is missing.
    listed = git("rev-list", "--objects", "--no-walk", head, cwd=work).decode().splitlines()
    shas = "".join(line.split()[0] + "\n" for line in listed)
    only_tip = git("pack-objects", "--stdout", cwd=work, input=shas.encode())
    digest = receive_pack(store, "r1", only_tip).digest
    assert store.object_type("r1", digest, head) == "commit"
    assert not store.has_commit("r1", digest, head)  # its parent is not there
    assert not store.is_ancestor("r1", digest, parent, head)

    # The parent commit alone, without its tree: present, not complete.
    bare_commit = git("pack-objects", "--stdout", cwd=work, input=f"{parent}\n".encode())
    digest2 = receive_pack(store, "r2", bare_commit).digest
    assert store.object_type("r2", digest2, parent) == "commit"
    assert not store.has_commit("r2", digest2, parent)


# -- the ledger's view: an explicit list of packs ---------------------------------------------


def test_pack_view_answers_from_the_listed_packs_only(store: GitStore, work: Path) -> None:
    """Whatever the bare repository holds, the answer depends on the list alone (determinism)."""
    from adapters.git.pack_view import PackView
    from commands.git_view import GitViewError

    first = rev(work, "HEAD")
    p1 = receive_pack(store, "r", pack_of(work, first)).digest
    store.import_pack("r", p1)  # the repository on disk now holds it too
    second = commit(work, "src/b.py", "print('b')\n")
    p2 = receive_pack(store, "r", pack_of(work, second, f"^{first}", thin=True)).digest
    store.import_pack("r", p2)
    view = PackView(store)
    try:
        assert view.has_commit("r", [p1], first)
        assert not view.has_commit("r", [], first)  # on disk, but in no listed pack
        assert not view.has_commit("r", [p2], second)  # p2's history is in p1
        assert view.has_commit("r", [p1, p2], second)
        assert view.has_commit("r", [p1, p2], second, complete={first})  # the walk stops at a tip
        assert view.is_ancestor("r", [p1, p2], first, second)
        assert not view.is_ancestor("r", [p1, p2], second, first)
        assert not view.is_ancestor("r", [p1], first, second)  # second is not in p1
        assert view.has_object("r", [p1], first)
        missing = "ab" * 32
        assert view.missing([p1, missing]) == [missing]
        with pytest.raises(GitViewError, match="not held"):
            view.has_commit("r", [p1, missing], first)
    finally:
        view.close()


def test_pack_view_keeps_a_bounded_number_of_packs_open(store: GitStore, work: Path) -> None:
    from adapters.git.pack_view import PackView

    digests = []
    previous = rev(work, "HEAD")
    digests.append(receive_pack(store, "r", pack_of(work, previous)).digest)
    for i in range(5):
        head = commit(work, f"f{i}.txt", f"{i}\n")
        digests.append(receive_pack(store, "r", pack_of(work, head, f"^{previous}")).digest)
        store.import_pack("r", digests[-1])
        previous = head
    view = PackView(store, max_open=2)
    try:
        assert view.has_commit("r", digests, previous)  # needs all six open during the walk
        assert len(view._open) == 2
        assert view.has_commit("r", digests, previous)
    finally:
        view.close()
