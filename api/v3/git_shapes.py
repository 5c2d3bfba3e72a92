"""GitHub's REST shapes for git data: refs, commits, branches, branch protection, contents.

Built from `adapters.git.browse` values and read-model rows. GitHub's web URLs
(`html_url`) point at this node's base URL like the other shapes do, although Stele
serves no web pages; `download_url` points at the raw route Stele serves under
`/api/v3/repos/{owner}/{repo}/raw/{sha}/{path}`, pinned to the commit the content was
read from. Node ids are opaque: base64 of the kind and the names that identify it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from urllib.parse import quote

from adapters.git.browse import CommitInfo, Diff, Entry, FileChange, Listed, Person
from api.v3.shapes import Json, Urls, iso
from domain.records import BranchProtection

#: GitHub's `protection` summary of an unprotected branch (and the checks part of a protected one).
_NO_STATUS_CHECKS: Json = {"enforcement_level": "off", "contexts": [], "checks": []}


def node_id(kind: str, *parts: str) -> str:
    return base64.b64encode(":".join((kind, *parts)).encode()).decode()


def _q(path: str) -> str:
    return quote(path, safe="/")


class RepoLinks:
    """The API and web URLs of one repository's git resources."""

    def __init__(self, urls: Urls, full_name: str, repo_id: str) -> None:
        self.urls = urls
        self.full_name = full_name
        self.repo_id = repo_id
        self.api = urls.repo(full_name)
        self.html = f"{urls.base}/{full_name}"

    def commit(self, sha: str) -> str:
        return f"{self.api}/commits/{sha}"

    def branch(self, name: str) -> str:
        return f"{self.api}/branches/{_q(name)}"

    def protection(self, branch: str) -> str:
        return f"{self.branch(branch)}/protection"

    def contents(self, path: str, ref: str) -> str:
        return f"{self.api}/contents/{_q(path)}?ref={quote(ref, safe='')}"

    def raw(self, sha: str, path: str) -> str:
        return f"{self.api}/raw/{sha}/{_q(path)}"


# -- refs ----------------------------------------------------------------------------------


def git_ref(links: RepoLinks, ref: str, sha: str, object_type: str) -> Json:
    """A git reference; `object_type` is `commit` or `tag` (an annotated tag object)."""
    kind = "tags" if object_type == "tag" else "commits" if object_type == "commit" else object_type + "s"
    return {
        "ref": ref,
        "node_id": node_id("Ref", links.repo_id, ref),
        "url": f"{links.api}/git/{_q(ref)}",
        "object": {"type": object_type, "sha": sha, "url": f"{links.api}/git/{kind}/{sha}"},
    }


# -- commits -------------------------------------------------------------------------------


def person(p: Person) -> Json:
    return {"name": p.name, "email": p.email, "date": iso(p.time * 1000)}


def _verification(signature: str | None) -> Json:
    """Stele does not check signatures: a signed commit says so, unverified."""
    if signature is None:
        return {
            "verified": False,
            "reason": "unsigned",
            "signature": None,
            "payload": None,
            "verified_at": None,
        }
    return {
        "verified": False,
        "reason": "gpgverify_unavailable",
        "signature": signature,
        "payload": None,
        "verified_at": None,
    }


def commit(links: RepoLinks, info: CommitInfo, diff: Diff | None = None) -> Json:
    """GitHub's commit; with `diff`, its `stats` and `files` (against the first parent).

    `author` and `committer` (the GitHub accounts) are null: Stele does not map commit
    emails to users.
    """
    body: Json = {
        "url": links.commit(info.sha),
        "sha": info.sha,
        "node_id": node_id("Commit", links.repo_id, info.sha),
        "html_url": f"{links.html}/commit/{info.sha}",
        "comments_url": f"{links.commit(info.sha)}/comments",
        "commit": {
            "url": f"{links.api}/git/commits/{info.sha}",
            "author": person(info.author),
            "committer": person(info.committer),
            "message": info.message.rstrip("\n"),  # GitHub shows it without the final newline
            "tree": {"url": f"{links.api}/git/trees/{info.tree}", "sha": info.tree},
            "comment_count": 0,
            "verification": _verification(info.signature),
        },
        "author": None,
        "committer": None,
        "parents": [
            {"url": links.commit(p), "sha": p, "html_url": f"{links.html}/commit/{p}"} for p in info.parents
        ],
    }
    if diff is not None:
        files = [_file_change(links, info.sha, f) for f in diff.files]
        additions = sum(f["additions"] for f in files)
        deletions = sum(f["deletions"] for f in files)
        body["stats"] = {"total": additions + deletions, "additions": additions, "deletions": deletions}
        body["files"] = files
    return body


def _file_change(links: RepoLinks, sha: str, change: FileChange) -> Json:
    item: Json = {
        "sha": change.sha,
        "filename": change.path,
        "status": change.status,
        "additions": change.additions,
        "deletions": change.deletions,
        "changes": change.additions + change.deletions,
        "blob_url": f"{links.html}/blob/{sha}/{_q(change.path)}",
        "raw_url": links.raw(sha, change.path),
        "contents_url": links.contents(change.path, sha),
    }
    if change.patch is not None:
        item["patch"] = change.patch
    return item


# -- branches and their protection ---------------------------------------------------------


def protection_summary(protected: bool) -> Json:
    return {"enabled": protected, "required_status_checks": dict(_NO_STATUS_CHECKS)}


def branch_short(links: RepoLinks, name: str, sha: str, protected: bool) -> Json:
    return {
        "name": name,
        "commit": {"sha": sha, "url": links.commit(sha)},
        "protected": protected,
        "protection": protection_summary(protected),
        "protection_url": links.protection(name),
    }


def branch_full(links: RepoLinks, name: str, commit_body: Json, protected: bool) -> Json:
    return {
        "name": name,
        "commit": commit_body,
        "_links": {"self": links.branch(name), "html": f"{links.html}/tree/{_q(name)}"},
        "protected": protected,
        "protection": protection_summary(protected),
        "protection_url": links.protection(name),
    }


def protection(links: RepoLinks, rule: BranchProtection, pushers: Sequence[Json]) -> Json:
    """GitHub's branch protection from the ledger's rule for the branch.

    `pushers` are the simple-user shapes of the row's `restrict_pushers`. Stele applies
    every rule to repository admins too, except that admins may always push where pushers
    are restricted; so `enforce_admins` is enabled exactly when pushers are not restricted.
    """
    url = links.protection(rule.branch)
    count = rule.required_approving_review_count
    body: Json = {
        "url": url,
        "enforce_admins": {"url": f"{url}/enforce_admins", "enabled": not pushers},
        "required_linear_history": {"enabled": False},
        "allow_force_pushes": {"enabled": rule.allow_force_pushes},
        "allow_deletions": {"enabled": rule.allow_deletions},
        "block_creations": {"enabled": False},
        "required_conversation_resolution": {"enabled": False},
        "lock_branch": {"enabled": False},
        "allow_fork_syncing": {"enabled": False},
        "required_signatures": {"url": f"{url}/required_signatures", "enabled": False},
    }
    if count > 0:
        body["required_pull_request_reviews"] = {
            "url": f"{url}/required_pull_request_reviews",
            "dismiss_stale_reviews": False,
            "require_code_owner_reviews": False,
            "require_last_push_approval": False,
            "required_approving_review_count": count,
        }
    if pushers:
        restrictions = f"{url}/restrictions"
        body["restrictions"] = {
            "url": restrictions,
            "users_url": f"{restrictions}/users",
            "teams_url": f"{restrictions}/teams",
            "apps_url": f"{restrictions}/apps",
            "users": list(pushers),
            "teams": [],
            "apps": [],
        }
    return body


# -- contents ------------------------------------------------------------------------------


def _content_base(links: RepoLinks, entry: Entry, ref: str, commit_sha: str, kind: str, size: int) -> Json:
    self_url = links.contents(entry.path, ref)
    if kind == "dir":
        git_url: str | None = f"{links.api}/git/trees/{entry.sha}"
        html_url: str | None = f"{links.html}/tree/{quote(ref, safe='')}/{_q(entry.path)}"
        download_url: str | None = None
    elif kind == "submodule":
        git_url = html_url = download_url = None  # the submodule's repository is elsewhere
    else:
        git_url = f"{links.api}/git/blobs/{entry.sha}"
        html_url = f"{links.html}/blob/{quote(ref, safe='')}/{_q(entry.path)}"
        download_url = links.raw(commit_sha, entry.path)
    return {
        "type": kind,
        "size": size,
        "name": entry.name,
        "path": entry.path,
        "sha": entry.sha,
        "url": self_url,
        "git_url": git_url,
        "html_url": html_url,
        "download_url": download_url,
        "_links": {"self": self_url, "git": git_url, "html": html_url},
    }


def content_file(
    links: RepoLinks, entry: Entry, ref: str, commit_sha: str, size: int, data: bytes | None
) -> Json:
    """A file with its content in base64 (60-character lines, as GitHub); `data` None: too large.

    GitHub's rule for files over 1 MB: `content` is empty and `encoding` is "none".
    """
    body = _content_base(links, entry, ref, commit_sha, "file", size)
    if data is None:
        body.update(content="", encoding="none")
    else:
        encoded = base64.b64encode(data).decode()
        lines = [encoded[i : i + 60] for i in range(0, len(encoded), 60)]
        body.update(content="".join(line + "\n" for line in lines), encoding="base64")
    return body


def content_symlink(
    links: RepoLinks, entry: Entry, ref: str, commit_sha: str, size: int, target: str
) -> Json:
    return {**_content_base(links, entry, ref, commit_sha, "symlink", size), "target": target}


def content_submodule(links: RepoLinks, entry: Entry, ref: str, commit_sha: str, url: str | None) -> Json:
    return {**_content_base(links, entry, ref, commit_sha, "submodule", 0), "submodule_git_url": url}


def content_entry(links: RepoLinks, item: Listed, ref: str, commit_sha: str) -> Json:
    """One entry of a directory listing; submodules are `file` there, as GitHub keeps them."""
    kind = item.entry.kind
    body = _content_base(links, item.entry, ref, commit_sha, kind, item.size)
    if kind == "submodule":
        body["type"] = "file"
    return body


def content_dir(links: RepoLinks, entry: Entry, ref: str, commit_sha: str, items: Sequence[Json]) -> Json:
    """A directory as one object with its `entries` (`Accept: application/vnd.github.object`)."""
    return {**_content_base(links, entry, ref, commit_sha, "dir", 0), "entries": list(items)}
