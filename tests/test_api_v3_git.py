"""The git data routes of /api/v3 against a real single-validator node, fed by real `git push`es.

Branches and branch protection, git refs, commits, contents, READMEs and tarballs: GitHub's
shapes, pagination, errors (404 hiding of private repositories, 409 for empty ones, 422
for unsupported protection settings), and that protection set over REST is what the
ledger enforces on the next push. One node and one pushed history serve the whole module.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.api_node import ApiNode, create_user, expect, start_api_node

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI"),
]

V3 = "/api/v3"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
BIG = b"0123456789abcdef\n" * 70_000  # 1.19 MB: over the contents API's 1 MB inline limit
BINARY = bytes(range(256)) * 4
GITMODULES = '[submodule "lib"]\n\tpath = vendor/lib\n\turl = https://example.com/lib.git\n'
SUBMODULE_SHA = "5" * 40
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "HOME": "/nonexistent",
}


def git(work: Path, *args: str, when: int = 1_700_000_000, author: str = "Ada") -> str:
    env = {
        **ENV,
        "GIT_AUTHOR_NAME": author,
        "GIT_AUTHOR_EMAIL": f"{author.lower()}@example.com",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "GIT_AUTHOR_DATE": f"{when} +0000",
        "GIT_COMMITTER_DATE": f"{when} +0000",
    }
    proc = subprocess.run(["git", *args], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"git {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip() + proc.stderr.strip()


def rev(work: Path, spec: str) -> str:
    return git(work, "rev-parse", spec)


def write(work: Path, files: dict[str, bytes | str]) -> None:
    for path, content in files.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)


@dataclass
class World:
    node: ApiNode
    owner: str
    token: str
    client: httpx.Client  # the owner
    anon: httpx.Client
    outsider: httpx.Client
    work: Path
    push_url: str
    c1: str  # main: README.md, src/app.py, docs/README.md              (tag v1)
    c2: str  # main: app.py changed; bin/run, links, big.txt, image.bin, a submodule (tag v2, annotated)
    c3: str  # feature/x: feature.txt
    c4: str  # main: README.md changed, by another author
    tag_v2: str  # the annotated tag object

    def repo(self, path: str = "") -> str:
        return f"{V3}/repos/{self.owner}/hello{path}"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiNode]:
    n = start_api_node(tmp_path_factory.mktemp("api-v3-git"))
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="module")
def world(node: ApiNode, tmp_path_factory: pytest.TempPathFactory) -> World:
    admin = node.client(node.admin_token)
    token = create_user(admin, "octo")
    client = node.client(token)
    outsider = node.client(create_user(admin, "stranger"))
    expect(client.post(f"{V3}/user/repos", json={"name": "hello"}), 201)
    expect(client.post(f"{V3}/user/repos", json={"name": "secret", "private": True}), 201)
    expect(client.post(f"{V3}/user/repos", json={"name": "empty"}), 201)

    work = tmp_path_factory.mktemp("work")
    git(work, "init", "-q", "-b", "main")
    write(work, {"README.md": "# Hello\n", "src/app.py": "print('hi')\n", "docs/README.md": "docs\n"})
    git(work, "add", "-A")
    git(work, "commit", "-qm", "first", when=1_700_000_000)
    c1 = rev(work, "HEAD")
    git(work, "tag", "v1")
    write(
        work,
        {
            "src/app.py": "print('hi')\nprint('there')\n",
            "bin/run": "#!/bin/sh\necho run\n",
            "big.txt": BIG,
            "image.bin": BINARY,
            ".gitmodules": GITMODULES,
        },
    )
    (work / "bin" / "run").chmod(0o755)
    (work / "link").symlink_to("README.md")
    (work / "dirlink").symlink_to("src")
    git(work, "add", "-A")
    git(work, "update-index", "--add", "--cacheinfo", f"160000,{SUBMODULE_SHA},vendor/lib")
    git(work, "commit", "-qm", "second\n\nwith a body", when=1_700_000_100)
    c2 = rev(work, "HEAD")
    git(work, "tag", "-a", "v2", "-m", "release 2", when=1_700_000_100)
    git(work, "checkout", "-q", "-b", "feature/x")
    write(work, {"feature.txt": "feature\n"})
    git(work, "add", "-A")
    git(work, "commit", "-qm", "feature", when=1_700_000_200)
    c3 = rev(work, "HEAD")
    git(work, "checkout", "-q", "main")
    write(work, {"README.md": "# Hello again\n"})
    git(work, "commit", "-qam", "fourth", when=1_700_000_300, author="Bob")
    c4 = rev(work, "HEAD")

    push_url = node.url.replace("http://", f"http://x:{token}@") + "/octo/hello.git"
    git(work, "push", "-q", push_url, "main", "feature/x", "v1", "v2")
    secret_url = node.url.replace("http://", f"http://x:{token}@") + "/octo/secret.git"
    git(work, "push", "-q", secret_url, "main")
    return World(
        node=node,
        owner="octo",
        token=token,
        client=client,
        anon=node.client(),
        outsider=outsider,
        work=work,
        push_url=push_url,
        c1=c1,
        c2=c2,
        c3=c3,
        c4=c4,
        tag_v2=rev(work, "v2"),
    )


def error(response: httpx.Response, status: int, message: str | None = None) -> dict[str, Any]:
    body = expect(response, status)
    assert isinstance(body, dict) and "documentation_url" in body, body
    if message is not None:
        assert body["message"] == message
    return body


def links(response: httpx.Response) -> dict[str, dict[str, list[str]]]:
    """rel -> query parameters of each `Link` entry."""
    out = {}
    for part in response.headers.get("Link", "").split(","):
        if part.strip():
            url, rel = part.split(";")
            out[rel.strip().removeprefix('rel="').removesuffix('"')] = parse_qs(
                urlsplit(url.strip().strip("<>")).query
            )
    return out


# ---------------------------------------------------------------------------- branches


def test_list_branches(world: World) -> None:
    r = world.client.get(world.repo("/branches"))
    body = expect(r, 200)
    assert [b["name"] for b in body] == ["feature/x", "main"]
    main = body[1]
    assert main["commit"] == {"sha": world.c4, "url": f"{world.node.url}{world.repo('/commits/' + world.c4)}"}
    assert main["protected"] is False
    assert main["protection"]["enabled"] is False
    assert main["protection_url"].endswith("/branches/main/protection")
    paged = world.client.get(world.repo("/branches"), params={"per_page": 1, "page": 2})
    assert [b["name"] for b in expect(paged, 200)] == ["main"]
    assert links(paged)["first"]["page"] == ["1"]
    assert expect(world.anon.get(world.repo("/branches")), 200)[0]["name"] == "feature/x"


def test_get_branch(world: World) -> None:
    body = expect(world.client.get(world.repo("/branches/feature/x")), 200)
    assert body["name"] == "feature/x"
    assert body["commit"]["sha"] == world.c3
    assert body["commit"]["commit"]["message"] == "feature"
    assert [p["sha"] for p in body["commit"]["parents"]] == [world.c2]
    assert body["_links"]["self"].endswith("/branches/feature/x")
    assert body["protected"] is False
    error(world.client.get(world.repo("/branches/nope")), 404, "Branch not found")


def test_private_repositories_stay_hidden(world: World) -> None:
    secret = f"{V3}/repos/octo/secret"
    for path in (
        "/branches",
        "/branches/main",
        "/branches/main/protection",
        "/git/refs",
        "/commits",
        f"/commits/{world.c4}",
        "/contents/README.md",
        "/readme",
        "/tarball",
    ):
        error(world.anon.get(secret + path), 404, "Not Found")
        error(world.outsider.get(secret + path), 404, "Not Found")
    assert expect(world.client.get(secret + "/contents/README.md"), 200)["name"] == "README.md"
    error(world.outsider.put(secret + "/branches/main/protection", json={}), 404)


# ---------------------------------------------------------------------------- protection


def test_branch_protection_round_trip(world: World) -> None:
    url = world.repo("/branches/main/protection")
    error(world.client.get(url), 404, "Branch not protected")
    r = world.client.put(
        url,
        json={
            "required_status_checks": None,
            "enforce_admins": True,
            "required_pull_request_reviews": {"required_approving_review_count": 2},
            "restrictions": None,
            "allow_force_pushes": False,
            "allow_deletions": True,
        },
    )
    body = expect(r, 200)
    assert r.headers["X-Stele-Position"].isdigit()
    assert body["url"].endswith(url)
    assert body["required_pull_request_reviews"]["required_approving_review_count"] == 2
    assert body["allow_deletions"] == {"enabled": True}
    assert body["allow_force_pushes"] == {"enabled": False}
    assert body["enforce_admins"]["enabled"] is True
    assert "restrictions" not in body and "required_status_checks" not in body
    assert expect(world.anon.get(url), 200) == body

    listed = expect(world.client.get(world.repo("/branches"), params={"protected": "true"}), 200)
    assert [b["name"] for b in listed] == ["main"]
    assert listed[0]["protected"] is True and listed[0]["protection"]["enabled"] is True
    unprotected = expect(world.client.get(world.repo("/branches"), params={"protected": "false"}), 200)
    assert [b["name"] for b in unprotected] == ["feature/x"]
    assert expect(world.client.get(world.repo("/branches/main")), 200)["protected"] is True

    expect(world.client.delete(url), 204)
    error(world.client.get(url), 404, "Branch not protected")
    error(world.client.delete(url), 404, "Branch not protected")


def test_protection_restricts_pushers_and_needs_admin(world: World, node: ApiNode) -> None:
    admin = node.client(node.admin_token)
    helper_token = create_user(admin, "helper")
    expect(world.client.put(world.repo("/collaborators/helper"), json={"permission": "push"}), 201)
    helper = node.client(helper_token)
    url = world.repo("/branches/feature/x/protection")
    body = {"restrictions": {"users": ["helper"], "teams": []}, "enforce_admins": False}
    error(helper.put(url, json=body), 403)
    error(world.anon.put(url, json=body), 401)
    got = expect(world.client.put(url, json=body), 200)
    assert [u["login"] for u in got["restrictions"]["users"]] == ["helper"]
    assert got["enforce_admins"]["enabled"] is False
    assert expect(helper.get(url), 200) == got
    unknown = world.client.put(url, json={"restrictions": {"users": ["nobody-here"], "teams": []}})
    assert "nobody-here" in error(unknown, 422, "Validation Failed")["errors"][0]["message"]
    expect(world.client.delete(url), 204)


def test_unsupported_protection_is_refused_not_ignored(world: World) -> None:
    url = world.repo("/branches/main/protection")
    r = world.client.put(
        url,
        json={
            "required_status_checks": {"strict": True, "contexts": ["ci"]},
            "enforce_admins": None,
            "required_pull_request_reviews": {"dismiss_stale_reviews": True},
            "restrictions": {"users": [], "teams": ["core"]},
            "required_linear_history": True,
        },
    )
    fields = {e["field"] for e in error(r, 422, "Validation Failed")["errors"]}
    assert fields == {
        "required_status_checks",
        "required_pull_request_reviews.dismiss_stale_reviews",
        "restrictions.teams",
        "required_linear_history",
    }
    zero = world.client.put(
        url, json={"required_pull_request_reviews": {"required_approving_review_count": 0}}
    )
    assert error(zero, 422)["errors"][0]["field"].endswith("required_approving_review_count")
    empty = world.client.put(url, json={"restrictions": {"users": [], "teams": []}})
    assert error(empty, 422)["errors"][0]["field"] == "restrictions.users"
    both = world.client.put(
        url, json={"enforce_admins": True, "restrictions": {"users": ["octo"], "teams": []}}
    )
    assert error(both, 422)["errors"][0]["field"] == "enforce_admins"
    wrong_type = world.client.put(url, json={"allow_force_pushes": "yes"})
    assert error(wrong_type, 422)["errors"][0]["field"] == "allow_force_pushes"
    # Nothing was set by any of these.
    error(world.client.get(url), 404, "Branch not protected")


def test_protection_set_over_rest_is_enforced_on_push(world: World, tmp_path: Path) -> None:
    url = world.repo("/branches/guarded/protection")
    clone = tmp_path / "clone"
    shutil.copytree(world.work, clone, symlinks=True)
    git(clone, "push", "-q", world.push_url, f"{world.c1}:refs/heads/guarded")
    expect(world.client.put(url, json={"allow_force_pushes": False, "allow_deletions": False}), 200)
    env_push = subprocess.run(
        ["git", "push", "--force", world.push_url, f"{world.c3}:refs/heads/guarded"],
        cwd=clone,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # c3 descends from c1, so this is a fast-forward: allowed.
    assert env_push.returncode == 0, env_push.stderr
    rewind = subprocess.run(
        ["git", "push", "--force", world.push_url, f"{world.c1}:refs/heads/guarded"],
        cwd=clone,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rewind.returncode != 0
    assert "force push not allowed" in rewind.stderr
    assert expect(world.client.get(world.repo("/branches/guarded")), 200)["commit"]["sha"] == world.c3
    expect(world.client.delete(url), 204)


# ---------------------------------------------------------------------------- refs


def test_git_refs(world: World) -> None:
    refs = expect(world.client.get(world.repo("/git/refs")), 200)
    names = [r["ref"] for r in refs]
    assert {"refs/heads/feature/x", "refs/heads/main", "refs/tags/v1", "refs/tags/v2"} <= set(names)
    assert names == sorted(names)
    main = expect(world.client.get(world.repo("/git/refs/heads/main")), 200)
    assert main["ref"] == "refs/heads/main"
    assert main["object"] == {
        "type": "commit",
        "sha": world.c4,
        "url": f"{world.node.url}{world.repo('/git/commits/' + world.c4)}",
    }
    assert main["url"] == f"{world.node.url}{world.repo('/git/refs/heads/main')}"
    assert isinstance(main["node_id"], str)
    tags = expect(world.client.get(world.repo("/git/refs/tags")), 200)
    assert [(t["ref"], t["object"]["type"]) for t in tags] == [
        ("refs/tags/v1", "commit"),
        ("refs/tags/v2", "tag"),
    ]
    assert tags[1]["object"]["sha"] == world.tag_v2
    assert expect(world.client.get(world.repo("/git/ref/tags/v2")), 200)["object"]["type"] == "tag"
    error(world.client.get(world.repo("/git/ref/heads")), 404, "Not Found")
    error(world.client.get(world.repo("/git/refs/heads/nope")), 404, "Not Found")
    matching = expect(world.client.get(world.repo("/git/matching-refs/heads/feat")), 200)
    assert [m["ref"] for m in matching] == ["refs/heads/feature/x"]
    assert expect(world.client.get(world.repo("/git/matching-refs/heads/zzz")), 200) == []
    paged = world.client.get(world.repo("/git/refs"), params={"per_page": 2})
    assert len(expect(paged, 200)) == 2 and "next" in links(paged)


def test_empty_repository(world: World) -> None:
    empty = f"{V3}/repos/octo/empty"
    for path in ("/git/refs", "/git/ref/heads/main", "/commits", "/commits/main"):
        error(world.client.get(empty + path), 409, "Git Repository is empty.")
    error(world.client.get(empty + "/contents"), 404, "This repository is empty.")
    error(world.client.get(empty + "/readme"), 404, "This repository is empty.")
    error(world.client.get(empty + "/tarball"), 404, "Not Found")
    assert expect(world.client.get(empty + "/branches"), 200) == []


# ---------------------------------------------------------------------------- commits


def test_list_commits(world: World) -> None:
    r = world.client.get(world.repo("/commits"))
    commits = expect(r, 200)
    assert [c["sha"] for c in commits] == [world.c4, world.c2, world.c1]
    assert "Link" not in r.headers
    top = commits[0]
    assert top["commit"]["message"] == "fourth"
    assert top["commit"]["author"] == {
        "name": "Bob",
        "email": "bob@example.com",
        "date": "2023-11-14T22:18:20Z",
    }
    assert ISO.match(top["commit"]["committer"]["date"])
    assert top["commit"]["tree"]["sha"] == rev(world.work, f"{world.c4}^{{tree}}")
    assert top["commit"]["verification"]["verified"] is False
    assert top["parents"][0]["sha"] == world.c2
    assert top["html_url"].endswith(f"/octo/hello/commit/{world.c4}")
    assert "files" not in top and "stats" not in top

    page = world.client.get(world.repo("/commits"), params={"per_page": 1, "page": 2})
    assert [c["sha"] for c in expect(page, 200)] == [world.c2]
    assert set(links(page)) == {"next", "first", "prev"}
    assert links(page)["next"]["page"] == ["3"]
    last = world.client.get(world.repo("/commits"), params={"per_page": 1, "page": 3})
    assert "next" not in links(last)

    def shas(**params: str) -> list[str]:
        return [c["sha"] for c in expect(world.client.get(world.repo("/commits"), params=params), 200)]

    assert shas(sha="feature/x") == [world.c3, world.c2, world.c1]
    assert shas(sha="v1") == [world.c1]
    assert shas(sha="v2") == [world.c2, world.c1]
    assert shas(sha=world.c2[:8]) == [world.c2, world.c1]
    assert shas(path="README.md") == [world.c4, world.c1]
    assert shas(path="src") == [world.c2, world.c1]
    assert shas(path="no/such/file") == []
    assert shas(author="bob@example.com") == [world.c4]
    assert shas(since="2023-11-14T22:15:00Z") == [world.c4, world.c2]
    assert shas(until="2023-11-14T22:14:00Z") == [world.c1]
    error(
        world.client.get(world.repo("/commits"), params={"sha": "nope"}), 404, "No commit found for SHA: nope"
    )
    bad = world.client.get(world.repo("/commits"), params={"since": "yesterday"})
    assert error(bad, 422, "Validation Failed")["errors"][0]["field"] == "since"


def test_get_commit_with_files(world: World) -> None:
    body = expect(world.client.get(world.repo(f"/commits/{world.c2}")), 200)
    assert body["sha"] == world.c2
    assert body["commit"]["message"] == "second\n\nwith a body"
    files = {f["filename"]: f for f in body["files"]}
    assert set(files) == {
        "src/app.py",
        "bin/run",
        "big.txt",
        "image.bin",
        ".gitmodules",
        "link",
        "dirlink",
        "vendor/lib",
    }
    app = files["src/app.py"]
    assert (app["status"], app["additions"], app["deletions"], app["changes"]) == ("modified", 1, 0, 1)
    assert app["patch"].startswith("@@ ") and "+print('there')" in app["patch"]
    assert app["contents_url"].endswith(f"/contents/src/app.py?ref={world.c2}")
    assert files["bin/run"]["status"] == "added"
    assert "patch" not in files["image.bin"]
    assert "patch" not in files["big.txt"]  # over the per-file diff limit
    assert body["stats"]["total"] == body["stats"]["additions"] + body["stats"]["deletions"]
    raw = world.client.get(files["src/app.py"]["raw_url"])
    assert raw.status_code == 200 and raw.content == b"print('hi')\nprint('there')\n"

    for ref in ("main", "refs/heads/main", "heads/main", world.c4[:7]):
        assert expect(world.client.get(world.repo(f"/commits/{ref}")), 200)["sha"] == world.c4, ref
    assert expect(world.client.get(world.repo("/commits/feature/x")), 200)["sha"] == world.c3
    sha_only = world.client.get(world.repo("/commits/main"), headers={"Accept": "application/vnd.github.sha"})
    assert sha_only.status_code == 200 and sha_only.text == world.c4
    error(world.client.get(world.repo("/commits/nope")), 422, "No commit found for SHA: nope")
    root = expect(world.client.get(world.repo(f"/commits/{world.c1}")), 200)
    assert root["parents"] == [] and {f["status"] for f in root["files"]} == {"added"}


# ---------------------------------------------------------------------------- contents


def test_file_contents(world: World) -> None:
    body = expect(world.client.get(world.repo("/contents/src/app.py")), 200)
    assert (body["type"], body["name"], body["path"], body["encoding"]) == (
        "file",
        "app.py",
        "src/app.py",
        "base64",
    )
    assert base64.b64decode(body["content"]) == b"print('hi')\nprint('there')\n"
    assert body["size"] == len(b"print('hi')\nprint('there')\n")
    assert body["sha"] == rev(world.work, "main:src/app.py")
    assert body["url"].endswith("/contents/src/app.py?ref=main")
    assert body["_links"]["self"] == body["url"]
    assert body["git_url"].endswith(f"/git/blobs/{body['sha']}")
    download = world.client.get(body["download_url"])
    assert download.status_code == 200 and download.content == b"print('hi')\nprint('there')\n"

    old = expect(world.client.get(world.repo("/contents/src/app.py"), params={"ref": "v1"}), 200)
    assert base64.b64decode(old["content"]) == b"print('hi')\n"
    assert old["url"].endswith("?ref=v1")
    by_sha = expect(world.client.get(world.repo("/contents/src/app.py"), params={"ref": world.c1}), 200)
    assert by_sha["sha"] == old["sha"]

    raw = world.client.get(
        world.repo("/contents/src/app.py"), headers={"Accept": "application/vnd.github.raw"}
    )
    assert raw.status_code == 200 and raw.content == b"print('hi')\nprint('there')\n"
    assert raw.headers["content-type"] == "application/octet-stream"
    binary = world.client.get(
        world.repo("/contents/image.bin"), headers={"Accept": "application/vnd.github.v3.raw"}
    )
    assert binary.content == BINARY

    big = expect(world.client.get(world.repo("/contents/big.txt")), 200)
    assert (big["encoding"], big["content"], big["size"]) == ("none", "", len(BIG))
    big_raw = world.client.get(
        world.repo("/contents/big.txt"), headers={"Accept": "application/vnd.github.raw"}
    )
    assert big_raw.status_code == 200 and big_raw.content == BIG  # streamed by git cat-file
    assert big_raw.headers["content-length"] == str(len(BIG))
    assert big_raw.headers["etag"] == f'"{big["sha"]}"'
    assert world.client.get(big["download_url"]).content == BIG

    error(world.client.get(world.repo("/contents/nope.txt")), 404, "Not Found")
    error(world.client.get(world.repo("/contents/src/%2E%2E/README.md")), 404, "Not Found")
    error(world.client.get(world.repo("/contents/src//app.py")), 404, "Not Found")
    error(
        world.client.get(world.repo("/contents/README.md"), params={"ref": "nope"}),
        404,
        "No commit found for the ref nope",
    )


def test_directory_contents(world: World) -> None:
    root = expect(world.client.get(world.repo("/contents")), 200)
    kinds = {e["name"]: e["type"] for e in root}
    assert kinds == {
        ".gitmodules": "file",
        "README.md": "file",
        "big.txt": "file",
        "bin": "dir",
        "dirlink": "symlink",
        "docs": "dir",
        "image.bin": "file",
        "link": "symlink",
        "src": "dir",
        "vendor": "dir",
    }
    by_name = {e["name"]: e for e in root}
    assert by_name["big.txt"]["size"] == len(BIG)
    assert by_name["src"]["download_url"] is None and by_name["src"]["size"] == 0
    assert expect(world.client.get(world.repo("/contents/")), 200) == root
    src = expect(world.client.get(world.repo("/contents/src"), params={"ref": "main"}), 200)
    assert [(e["path"], e["type"]) for e in src] == [("src/app.py", "file")]
    as_object = world.client.get(
        world.repo("/contents/src"), headers={"Accept": "application/vnd.github.object"}
    )
    obj = expect(as_object, 200)
    assert obj["type"] == "dir" and [e["name"] for e in obj["entries"]] == ["app.py"]
    vendor = expect(world.client.get(world.repo("/contents/vendor")), 200)
    assert [(e["name"], e["type"]) for e in vendor] == [("lib", "file")]  # GitHub's listing quirk


def test_symlinks_and_submodules(world: World) -> None:
    followed = expect(world.client.get(world.repo("/contents/link")), 200)
    assert (followed["type"], followed["path"]) == ("file", "README.md")
    assert base64.b64decode(followed["content"]) == b"# Hello again\n"
    link = expect(world.client.get(world.repo("/contents/dirlink")), 200)
    assert (link["type"], link["target"], link["path"]) == ("symlink", "src", "dirlink")
    submodule = expect(world.client.get(world.repo("/contents/vendor/lib")), 200)
    assert submodule["type"] == "submodule"
    assert submodule["sha"] == SUBMODULE_SHA
    assert submodule["submodule_git_url"] == "https://example.com/lib.git"
    assert submodule["git_url"] is None and submodule["html_url"] is None


def test_readme(world: World) -> None:
    body = expect(world.client.get(world.repo("/readme")), 200)
    assert (body["name"], body["path"]) == ("README.md", "README.md")
    assert base64.b64decode(body["content"]) == b"# Hello again\n"
    old = expect(world.client.get(world.repo("/readme"), params={"ref": "v1"}), 200)
    assert base64.b64decode(old["content"]) == b"# Hello\n"
    docs = expect(world.client.get(world.repo("/readme/docs")), 200)
    assert docs["path"] == "docs/README.md"
    raw = world.client.get(world.repo("/readme"), headers={"Accept": "application/vnd.github.raw"})
    assert raw.content == b"# Hello again\n"
    error(world.client.get(world.repo("/readme/src")), 404, "Not Found")
    error(
        world.client.get(world.repo("/readme"), params={"ref": "nope"}),
        404,
        "No commit found for the ref nope",
    )


# ---------------------------------------------------------------------------- tarballs


def test_tarball(world: World) -> None:
    r = world.client.get(world.repo("/tarball"))
    assert r.status_code == 200, r.text
    prefix = f"octo-hello-{world.c4[:7]}"
    assert r.headers["content-type"] == "application/x-gzip"
    assert r.headers["content-disposition"] == f"attachment; filename={prefix}.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        names = set(tar.getnames())
        assert tar.pax_headers["comment"] == world.c4
        readme = tar.extractfile(f"{prefix}/README.md")
        assert readme is not None and readme.read() == b"# Hello again\n"
        assert tar.getmember(f"{prefix}/link").issym()
        assert tar.getmember(f"{prefix}/bin/run").mode & 0o111
    assert {f"{prefix}/src/app.py", f"{prefix}/big.txt", f"{prefix}/vendor/lib"} <= names
    assert all(n == prefix or n.startswith(prefix + "/") for n in names)

    tagged = world.client.get(world.repo("/tarball/v1"))
    assert tagged.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(tagged.content), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == sorted(
            f"octo-hello-{world.c1[:7]}{p}"
            for p in ("", "/README.md", "/docs", "/docs/README.md", "/src", "/src/app.py")
        )
    by_branch = world.client.get(world.repo("/tarball/feature/x"))
    assert by_branch.headers["content-disposition"].endswith(f"octo-hello-{world.c3[:7]}.tar.gz")
    error(world.client.get(world.repo("/tarball/nope")), 404, "Not Found")
    assert world.anon.get(world.repo("/tarball")).status_code == 200  # a public repository


def test_zipball(world: World) -> None:
    r = world.client.get(world.repo("/zipball"))
    assert r.status_code == 200, r.text
    prefix = f"octo-hello-{world.c4[:7]}"
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == f"attachment; filename={prefix}.zip"
    assert r.headers["etag"] == f'"{world.c4}"'
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = set(z.namelist())
        assert z.read(f"{prefix}/README.md") == b"# Hello again\n"
        assert z.read(f"{prefix}/big.txt") == BIG
        assert z.comment.decode() == world.c4
    assert {f"{prefix}/src/app.py", f"{prefix}/bin/run", f"{prefix}/vendor/lib/"} <= names
    assert all(n.startswith(prefix + "/") for n in names)
    tagged = world.client.get(world.repo("/zipball/v1"))
    with zipfile.ZipFile(io.BytesIO(tagged.content)) as z:
        assert sorted(z.namelist()) == sorted(
            f"octo-hello-{world.c1[:7]}/{p}"
            for p in ("", "README.md", "docs/", "docs/README.md", "src/", "src/app.py")
        )
    by_branch = world.client.get(world.repo("/zipball/feature/x"))
    assert by_branch.headers["content-disposition"].endswith(f"octo-hello-{world.c3[:7]}.zip")
    error(world.client.get(world.repo("/zipball/nope")), 404, "Not Found")
    error(world.client.get(f"{V3}/repos/octo/empty/zipball"), 404, "Not Found")
    assert world.anon.get(world.repo("/zipball")).status_code == 200  # a public repository
    assert world.anon.get(f"{V3}/repos/octo/secret/zipball").status_code == 404
