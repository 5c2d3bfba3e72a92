"""`adapters.git.browse` over commits built with dulwich in a temporary `GitStore` (no node).

The archive commands (`adapters.git.archive`) are run with the real git.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from dulwich.objects import S_IFGITLINK, Blob, Commit, ObjectID, Tag, Tree
from dulwich.repo import Repo

from adapters.git import browse
from adapters.git.archive import ArchiveFormat, archive_command, git_env
from adapters.git.browse import Entry
from adapters.git.store import GitStore

REPO_ID = "r-browse"
FILE = 0o100644
EXEC = 0o100755
LINK = 0o120000
#: path -> content (a regular file) or (mode, content); a submodule's content is its commit id.
Files = Mapping[str, bytes | tuple[int, bytes]]


@pytest.fixture
def store(tmp_path: Path) -> GitStore:
    return GitStore(tmp_path / "git")


@pytest.fixture
def repo(store: GitStore) -> Iterator[Repo]:
    with store.open(REPO_ID) as r:
        yield r


def _tree(repo: Repo, files: Files) -> bytes:
    """Write the files as nested trees; the root tree's id."""
    here: dict[str, tuple[int, bytes]] = {}
    subdirs: dict[str, dict[str, bytes | tuple[int, bytes]]] = {}
    for path, value in files.items():
        head, _, rest = path.partition("/")
        if rest:
            subdirs.setdefault(head, {})[rest] = value
        else:
            here[head] = value if isinstance(value, tuple) else (FILE, value)
    tree = Tree()
    for name, (mode, content) in here.items():
        if mode == S_IFGITLINK:
            tree.add(name.encode(), mode, ObjectID(content))
            continue
        blob = Blob.from_string(content)
        repo.object_store.add_object(blob)
        tree.add(name.encode(), mode, blob.id)
    for name, sub in subdirs.items():
        tree.add(name.encode(), stat.S_IFDIR, ObjectID(_tree(repo, sub)))
    repo.object_store.add_object(tree)
    return bytes(tree.id)


def commit(
    repo: Repo,
    files: Files,
    parents: tuple[str, ...] = (),
    message: str = "change",
    when: int = 1_700_000_000,
) -> str:
    c = Commit()
    c.tree = ObjectID(_tree(repo, files))
    c.parents = [ObjectID(p.encode()) for p in parents]
    c.author = c.committer = b"Ada Lovelace <ada@example.com>"
    c.author_time = c.commit_time = when
    c.author_timezone = c.commit_timezone = 3600
    c.message = message.encode()
    repo.object_store.add_object(c)
    return c.id.decode()


def tag(repo: Repo, target: str, name: str = "v1") -> str:
    t = Tag()
    t.name = name.encode()
    t.object = (Commit, ObjectID(target.encode()))
    t.tagger = b"Ada Lovelace <ada@example.com>"
    t.tag_time = 1_700_000_000
    t.tag_timezone = 0
    t.message = b"release\n"
    repo.object_store.add_object(t)
    return t.id.decode()


def history(repo: Repo, n: int) -> list[str]:
    """n commits in a line, each adding f<i>; returned oldest first."""
    shas: list[str] = []
    files: dict[str, bytes | tuple[int, bytes]] = {}
    for i in range(n):
        files[f"f{i}"] = f"{i}\n".encode()
        shas.append(commit(repo, files, tuple(shas[-1:]), f"c{i}", 1_700_000_000 + i))
    return shas


# ---------------------------------------------------------------------------- resolve


def test_resolve_branches_tags_refs_and_ids(repo: Repo) -> None:
    first, second = history(repo, 2)
    annotated = tag(repo, first)
    refs = {
        "refs/heads/main": second,
        "refs/heads/v1": first,
        "refs/tags/v1": annotated,
        "refs/tags/v2": first,
    }
    assert browse.resolve(repo, refs, "main") == second
    assert browse.resolve(repo, refs, "refs/heads/main") == second
    assert browse.resolve(repo, refs, "heads/main") == second
    assert browse.resolve(repo, refs, "tags/v1") == first  # the annotated tag is peeled
    assert browse.resolve(repo, refs, "v2") == first
    assert browse.resolve(repo, refs, first) == first
    assert browse.resolve(repo, refs, first.upper()) == first
    assert browse.resolve(repo, refs, second[:7]) == second
    assert browse.resolve(repo, refs, annotated) == first
    for unknown in ("nope", "", "refs/heads/nope", "0" * 40, "abc"):
        assert browse.resolve(repo, refs, unknown) is None


def test_a_finalized_ref_to_a_missing_object_is_an_error_not_a_404(repo: Repo) -> None:
    with pytest.raises(browse.MissingObject):
        browse.resolve(repo, {"refs/heads/main": "1" * 40}, "main")


def test_commit_info(repo: Repo) -> None:
    (sha,) = history(repo, 1)
    info = browse.get_commit(repo, sha)
    assert info is not None
    assert info.sha == sha and info.parents == () and info.message == "c0"
    assert (info.author.name, info.author.email, info.author.offset) == (
        "Ada Lovelace",
        "ada@example.com",
        3600,
    )
    assert info.committer.time == 1_700_000_000
    assert info.signature is None
    assert browse.get_commit(repo, info.tree) is None
    assert browse.object_type(repo, info.tree) == "tree"
    assert browse.object_type(repo, sha) == "commit"
    assert browse.object_type(repo, "2" * 40) is None


# ---------------------------------------------------------------------------- log


def test_log_newest_first_with_pages(repo: Repo) -> None:
    shas = history(repo, 7)
    newest = list(reversed(shas))
    page, more = browse.log(repo, shas[-1], limit=3)
    assert [c.sha for c in page] == newest[:3] and more
    page, more = browse.log(repo, shas[-1], skip=3, limit=3)
    assert [c.sha for c in page] == newest[3:6] and more
    page, more = browse.log(repo, shas[-1], skip=6, limit=3)
    assert [c.sha for c in page] == newest[6:] and not more
    page, more = browse.log(repo, shas[-1], skip=7, limit=3)
    assert page == [] and not more
    page, more = browse.log(repo, shas[-1], keep=lambda c: c.message in ("c1", "c4"))
    assert [c.message for c in page] == ["c4", "c1"] and not more


def test_log_stops_at_its_visit_limit(repo: Repo) -> None:
    shas = history(repo, 5)
    assert len(browse.log(repo, shas[-1], max_visit=5)[0]) == 5
    with pytest.raises(browse.HistoryTooLong):
        browse.log(repo, shas[-1], skip=10, max_visit=4)
    with pytest.raises(browse.MissingObject):
        browse.log(repo, "3" * 40)


def test_log_of_a_path_simplifies_merges(repo: Repo) -> None:
    base = commit(repo, {"a.txt": b"1\n", "docs/x.md": b"x\n"}, message="base", when=100)
    other = commit(repo, {"a.txt": b"1\n", "docs/x.md": b"y\n"}, (base,), "docs on a side branch", 200)
    main = commit(repo, {"a.txt": b"2\n", "docs/x.md": b"x\n"}, (base,), "a on main", 300)
    merge = commit(repo, {"a.txt": b"2\n", "docs/x.md": b"y\n"}, (main, other), "merge", 400)
    top = commit(repo, {"a.txt": b"2\n", "docs/x.md": b"y\n", "b": b""}, (merge,), "add b", 500)

    def messages(path: str) -> list[str]:
        return [c.message for c in browse.log(repo, top, path=path)[0]]

    assert messages("docs") == ["docs on a side branch", "base"]
    assert messages("docs/x.md") == ["docs on a side branch", "base"]
    assert messages("/a.txt") == ["a on main", "base"]
    assert messages("b") == ["add b"]
    assert messages("missing") == []
    assert len(messages("")) == 5


# ---------------------------------------------------------------------------- paths


def test_lookup_and_list_dir(repo: Repo) -> None:
    sub = "4" * 40
    sha = commit(
        repo,
        {
            "README.md": b"# hi\n",
            "bin/run": (EXEC, b"#!/bin/sh\n"),
            "src/a/b.py": b"print(1)\n",
            "link": (LINK, b"README.md"),
            "vendor/lib": (S_IFGITLINK, sub.encode()),
        },
    )
    info = browse.get_commit(repo, sha)
    assert info is not None
    root = browse.lookup(repo, info.tree, "")
    assert root is not None and root.kind == "dir" and root.path == ""
    entry = browse.lookup(repo, info.tree, "/src/a/b.py/")
    assert entry is not None and (entry.kind, entry.name, entry.path) == ("file", "b.py", "src/a/b.py")
    assert browse.read_blob_upto(repo, entry.sha, 9) == (9, b"print(1)\n")
    assert browse.read_blob_upto(repo, entry.sha, 8) == (9, None)  # known from the header, not read
    assert browse.read_blob_upto(repo, info.tree, 100) is None  # not a blob
    for missing in (
        "nope",
        "src/x",
        "README.md/x",
        "src/../README.md",
        "src//a",
        "./README.md",
        "vendor/lib/x",
    ):
        assert browse.lookup(repo, info.tree, missing) is None, missing
    listed, more = browse.list_dir(repo, root)
    assert not more
    assert [(x.entry.name, x.entry.kind, x.size) for x in listed] == [
        ("README.md", "file", 5),
        ("bin", "dir", 0),
        ("link", "symlink", 9),
        ("src", "dir", 0),
        ("vendor", "dir", 0),
    ]
    vendor = browse.lookup(repo, info.tree, "vendor")
    assert vendor is not None
    (lib,) = browse.list_dir(repo, vendor)[0]
    assert (lib.entry.path, lib.entry.kind, lib.entry.sha) == ("vendor/lib", "submodule", sub)
    listed, more = browse.list_dir(repo, root, limit=2)
    assert len(listed) == 2 and more


def test_symlinks_lead_to_regular_files_only(repo: Repo) -> None:
    sha = commit(
        repo,
        {
            "docs/guide.md": b"guide\n",
            "docs/up": (LINK, b"../top.txt"),
            "top.txt": b"top\n",
            "to-dir": (LINK, b"docs"),
            "escape": (LINK, b"../../etc/passwd"),
            "absolute": (LINK, b"/etc/passwd"),
            "chain": (LINK, b"docs/up"),
            "loop": (LINK, b"loop"),
            "dangling": (LINK, b"nope"),
        },
    )
    info = browse.get_commit(repo, sha)
    assert info is not None

    def follow(path: str) -> str | None:
        entry = browse.lookup(repo, info.tree, path)
        assert entry is not None
        found = browse.follow_symlink(repo, info.tree, entry)
        return None if found is None else found.path

    assert follow("docs/up") == "top.txt"
    assert follow("chain") == "top.txt"
    assert follow("top.txt") == "top.txt"
    for nowhere in ("to-dir", "escape", "absolute", "loop", "dangling"):
        assert follow(nowhere) is None, nowhere
    link = browse.lookup(repo, info.tree, "escape")
    assert link is not None and browse.symlink_target(repo, link) == "../../etc/passwd"


def test_submodule_url_from_gitmodules(repo: Repo) -> None:
    gitmodules = b'[submodule "lib"]\n\tpath = vendor/lib\n\turl = https://example.com/lib.git\n'
    sha = commit(repo, {".gitmodules": gitmodules, "vendor/lib": (S_IFGITLINK, b"5" * 40)})
    info = browse.get_commit(repo, sha)
    assert info is not None
    assert browse.submodule_url(repo, info.tree, "vendor/lib") == "https://example.com/lib.git"
    assert browse.submodule_url(repo, info.tree, "other") is None
    broken = commit(repo, {".gitmodules": b"[submodule\n", "x": (S_IFGITLINK, b"5" * 40)})
    broken_info = browse.get_commit(repo, broken)
    assert broken_info is not None
    assert browse.submodule_url(repo, broken_info.tree, "x") is None


def test_find_readme(repo: Repo) -> None:
    sha = commit(
        repo,
        {
            "README": b"plain\n",
            "readme.rst": b"rst\n",
            "docs/README.md": b"docs\n",
            ".github/Readme.markdown": b"github\n",
            "sub/readme.txt": (LINK, b"../README"),
            "other/README.md/x": b"a directory called README.md\n",
        },
    )
    info = browse.get_commit(repo, sha)
    assert info is not None

    def readme(*dirs: str) -> str | None:
        found = browse.find_readme(repo, info.tree, dirs)
        return None if found is None else found.path

    assert readme(".github", "", "docs") == ".github/Readme.markdown"
    assert readme("", "docs") == "readme.rst"  # a markup extension wins over none
    assert readme("docs") == "docs/README.md"
    assert readme("sub") == "README"  # through the link
    assert readme("other") is None
    assert readme("missing", "docs") == "docs/README.md"


# ---------------------------------------------------------------------------- diffs


def test_commit_diff_against_the_first_parent(repo: Repo) -> None:
    before = commit(repo, {"keep": b"k\n", "edit.txt": b"one\ntwo\nthree\n", "gone": b"bye\n"}, when=1)
    after = commit(
        repo,
        {"keep": b"k\n", "edit.txt": b"one\n2\nthree\nfour\n", "new.bin": b"\x00\x01", "added": b"a\nb\n"},
        (before,),
        when=2,
    )
    info = browse.get_commit(repo, after)
    assert info is not None
    diff = browse.commit_diff(repo, info)
    assert not diff.truncated
    by_path = {f.path: f for f in diff.files}
    assert sorted(by_path) == ["added", "edit.txt", "gone", "new.bin"]
    edit = by_path["edit.txt"]
    assert (edit.status, edit.additions, edit.deletions) == ("modified", 2, 1)
    assert edit.patch is not None and edit.patch.startswith("@@ -1,3 +1,4 @@")
    assert "-two\n+2\n" in edit.patch and not edit.patch.endswith("\n")
    assert (by_path["added"].status, by_path["added"].additions, by_path["added"].deletions) == (
        "added",
        2,
        0,
    )
    gone = by_path["gone"]
    assert (gone.status, gone.deletions) == ("removed", 1)
    old_gone = browse.lookup(repo, _tree_of(repo, before), "gone")
    assert old_gone is not None and gone.sha == old_gone.sha
    binary = by_path["new.bin"]
    assert (binary.status, binary.patch, binary.additions) == ("added", None, 0)

    root_info = browse.get_commit(repo, before)
    assert root_info is not None
    assert {f.status for f in browse.commit_diff(repo, root_info).files} == {"added"}


def _tree_of(repo: Repo, sha: str) -> str:
    info = browse.get_commit(repo, sha)
    assert info is not None
    return info.tree


def test_commit_diff_caps(repo: Repo) -> None:
    base = commit(repo, {"big": b"x\n" * 1000}, when=1)
    files: dict[str, bytes | tuple[int, bytes]] = {f"f{i:02}": b"n\n" for i in range(20)}
    files["big"] = b"y\n" * 1000
    top = commit(repo, files, (base,), when=2)
    info = browse.get_commit(repo, top)
    assert info is not None
    capped = browse.commit_diff(repo, info, max_files=5)
    assert len(capped.files) == 5 and capped.truncated
    small = browse.commit_diff(repo, info, max_blob_bytes=100)
    big = next(f for f in small.files if f.path == "big")
    assert big.patch is None and big.additions == 0
    assert all(f.patch is not None for f in small.files if f.path != "big")
    budget = browse.commit_diff(repo, info, max_total_bytes=10)
    assert sum(1 for f in budget.files if f.patch is not None) == 5  # 2 bytes each, then the budget is gone


# ---------------------------------------------------------------------------- archives (C git)

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")


def archive(store: GitStore, sha: str, prefix: str, fmt: ArchiveFormat) -> subprocess.CompletedProcess[bytes]:
    command = archive_command("git", str(store.repo_path(REPO_ID)), sha, prefix, fmt)
    return subprocess.run(command, env=git_env(), capture_output=True)


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


@needs_git
def test_tarball(store: GitStore, repo: Repo) -> None:
    long_name = "d" * 120
    sha = commit(
        repo,
        {
            "README.md": b"# hello\n",
            "bin/run": (EXEC, b"#!/bin/sh\necho hi\n"),
            "src/pkg/mod.py": b"x = 1\n" * 300,
            "link": (LINK, b"README.md"),
            "vendor/lib": (S_IFGITLINK, b"6" * 40),
            f"{long_name}/ünïcode.txt": b"long\n",
            "big.bin": bytes(3 * 1024 * 1024),  # over core.bigFileThreshold: streamed by git
        },
        when=1_650_000_000,
    )
    prefix = "octo-hello-" + sha[:7]
    data = archive(store, sha, prefix, "tar.gz").stdout
    assert gzip.decompress(data)  # a valid gzip stream
    members = _members(data)
    assert set(members) == {
        prefix,
        f"{prefix}/README.md",
        f"{prefix}/big.bin",
        f"{prefix}/bin",
        f"{prefix}/bin/run",
        f"{prefix}/link",
        f"{prefix}/src",
        f"{prefix}/src/pkg",
        f"{prefix}/src/pkg/mod.py",
        f"{prefix}/vendor",
        f"{prefix}/vendor/lib",
        f"{prefix}/{long_name}",
        f"{prefix}/{long_name}/ünïcode.txt",
    }
    assert members[f"{prefix}/bin/run"].mode == 0o775 and members[f"{prefix}/README.md"].mode == 0o664
    assert members[f"{prefix}/link"].issym() and members[f"{prefix}/link"].linkname == "README.md"
    assert members[f"{prefix}/vendor/lib"].isdir()  # a submodule: an empty directory
    assert all(m.mtime == 1_650_000_000 for m in members.values())
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.pax_headers.get("comment") == sha
        extracted = tar.extractfile(f"{prefix}/src/pkg/mod.py")
        assert extracted is not None and extracted.read() == b"x = 1\n" * 300
        big = tar.extractfile(f"{prefix}/big.bin")
        assert big is not None and big.read() == bytes(3 * 1024 * 1024)
    assert len(gzip.decompress(data)) % (20 * 512) == 0
    # the same commit gives the same bytes (no timestamps of now in the gzip or tar headers)
    assert archive(store, sha, prefix, "tar.gz").stdout == data


@needs_git
def test_zipball(store: GitStore, repo: Repo) -> None:
    sha = commit(
        repo, {"README.md": b"# hello\n", "src/a.py": b"a = 1\n", "big.bin": os.urandom(2 * 1024 * 1024)}
    )
    data = archive(store, sha, "p-1", "zip").stdout
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert sorted(z.namelist()) == ["p-1/", "p-1/README.md", "p-1/big.bin", "p-1/src/", "p-1/src/a.py"]
        assert z.read("p-1/src/a.py") == b"a = 1\n"
        assert len(z.read("p-1/big.bin")) == 2 * 1024 * 1024
        assert z.comment.decode() == sha


@needs_git
def test_archive_of_a_missing_commit_fails(store: GitStore, repo: Repo) -> None:
    proc = archive(store, "7" * 40, "p", "tar.gz")
    assert proc.returncode != 0 and not proc.stdout


def test_split_path() -> None:
    assert browse.split_path("") == []
    assert browse.split_path("/a/b/") == ["a", "b"]
    for bad in ("a//b", "a/./b", "../a", "a/.."):
        assert browse.split_path(bad) is None
    assert Entry("a/b", 0o100644, "0" * 40).name == "b"
