"""Where each fact a route reads comes from: one source per fact.

- **The ledger state at the applied height** answers what the ledger decides on: which
  users, organizations, teams and repositories exist and under which names, who may do
  what (permissions, memberships, collaborators), which refs a repository has and where
  they point, branch protection, keys and tokens. A route finds an entity here first.
- **The DuckDB read models** describe what exists and list it: the JSON bodies with their
  timestamps, repository listings with filters and paging, member lists. They are
  written before the state they describe becomes visible, so a row for everything the
  state holds is always there.
- **The bare repository** answers about git objects (commits, trees, blobs).

The refs that git clients see on a fetch come from the bare repository, which the ledger
writes from its state before a push's receipt is released; everywhere else refs are the
state's.
"""

from __future__ import annotations

from typing import Any

from adapters.git.store import GitStore
from adapters.ledger import LedgerHost
from api.errors import ApiError
from domain.permissions import effective_permission
from domain.records import BranchProtection
from domain.state import LedgerState
from projections.read_models import ReadModels

Row = dict[str, Any]

#: What reads of a repository answer while this node rebuilds its copy (see adapters.git.repair).
REPAIRING_MESSAGE = "this node is repairing its copy of the repository; retry shortly or ask another node"


class Reads:
    def __init__(self, ledger: LedgerHost, git: GitStore | None = None) -> None:
        self._ledger = ledger
        self._git = git

    @property
    def state(self) -> LedgerState:
        """The ledger's facts at the applied height."""
        return self._ledger.state

    @property
    def models(self) -> ReadModels:
        """Descriptions and lists."""
        return self._ledger.read

    @property
    def height(self) -> int:
        return self._ledger.height

    # -- entities: found in the state, described by the read models --------------------------

    def repo(self, owner: str, name: str) -> Row | None:
        found = self.state.repo_by_name(owner, name)
        return None if found is None else self.models.get_repo_by_id(found.repo_id)

    def repo_by_id(self, repo_id: str) -> Row | None:
        return self.models.get_repo_by_id(repo_id) if self.state.repo(repo_id) is not None else None

    def user(self, login: str) -> Row | None:
        found = self.state.user_by_login(login)
        return None if found is None else self.models.get_user_by_id(found.user_id)

    def user_by_id(self, user_id: str) -> Row | None:
        return self.models.get_user_by_id(user_id) if self.state.user(user_id) is not None else None

    def org(self, login: str) -> Row | None:
        found = self.state.org_by_login(login)
        return None if found is None else self.models.get_org_by_id(found.org_id)

    def org_by_id(self, org_id: str) -> Row | None:
        return self.models.get_org_by_id(org_id) if self.state.org(org_id) is not None else None

    def team(self, org: str, slug: str) -> Row | None:
        found = self.state.org_by_login(org)
        team = self.state.team_by_slug(found.org_id, slug) if found is not None else None
        return None if team is None else self.models.get_team(org, team.slug)

    # -- decisions and git facts: the state's ----------------------------------------------------

    def permission(self, user_id: str | None, repo_id: str) -> str | None:
        """The user's effective permission on the repository (None: may not even read it)."""
        return effective_permission(self.state, user_id, repo_id)

    def refs(self, repo_id: str) -> dict[str, str]:
        return dict(self.state.refs(repo_id))

    def protection(self, repo_id: str, branch: str) -> BranchProtection | None:
        return self.state.branch_protection(repo_id, branch)

    def protections(self, repo_id: str) -> tuple[BranchProtection, ...]:
        return self.state.branch_protections(repo_id)

    # -- the bare repository --------------------------------------------------------------------

    def git(self, repo_id: str) -> GitStore:
        """The store holding the repository's objects; 503 while git is off or it is repaired here."""
        if self._git is None:
            raise ApiError(503, "git is not enabled on this node")
        repairs = self._ledger.repairs
        if repairs is not None and repairs.needs_repair(repo_id):
            raise ApiError(503, REPAIRING_MESSAGE, {"Retry-After": "5"})
        return self._git
