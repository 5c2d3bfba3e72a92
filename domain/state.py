"""`LedgerState`: the deterministic state the command handlers read, and its queries.

The state is built only by folding recorded events (see `domain.evolve`), so every node
that applied the same blocks holds the same state. Queries return frozen records or
tuples sorted by id, never the mutable internals. Logins and repository names are
looked up case-insensitively (as on GitHub) and stored as given.

Forking and merging (speculative execution of blocks) come from `domain.overlay.Overlay`.
"""

from __future__ import annotations

from domain.names import ascii_lower
from domain.overlay import Overlay
from domain.records import BranchProtection, Org, Repo, Team, Token, User, UserKey

# Flat tables: key -> record or value.
META = "meta"  # "chain_id" | "height" | "app_hash" -> value
USERS = "users"  # user id -> User
USER_LOGINS = "user_logins"  # ascii_lower(login) -> user id
KEY_OWNERS = "key_owners"  # key id -> user id
TOKENS = "tokens"  # token hash -> Token
TOKEN_IDS = "token_ids"  # token id -> token hash
ORGS = "orgs"  # org id -> Org
ORG_LOGINS = "org_logins"  # ascii_lower(login) -> org id
TEAMS = "teams"  # team id -> Team
TEAM_SLUGS = "team_slugs"  # (org id, slug) -> team id
REPOS = "repos"  # repo id -> Repo
REPO_NAMES = "repo_names"  # (owner login lower, name lower) -> repo id
VERSIONS = "versions"  # aggregate id -> last version
APPLIED = "applied"  # tx id (32 raw bytes, half the memory of hex) -> True

# Grouped tables: group key -> {member: value}.
G_SITE_ADMINS = "site_admins"  # "" -> {user id: True}
G_USER_KEYS = "user_keys"  # user id -> {key id: UserKey}
G_USER_TOKENS = "user_tokens"  # user id -> {token id: token hash}
G_ORG_MEMBERS = "org_members"  # org id -> {user id: role}
G_USER_ORGS = "user_orgs"  # user id -> {org id: role}
G_ORG_TEAMS = "org_teams"  # org id -> {team id: slug}
G_TEAM_MEMBERS = "team_members"  # team id -> {user id: role}
G_USER_TEAMS = "user_teams"  # user id -> {team id: role}
G_TEAM_REPOS = "team_repos"  # team id -> {repo id: permission}
G_REPO_TEAMS = "repo_teams"  # repo id -> {team id: permission}
G_OWNER_REPOS = "owner_repos"  # owner id -> {repo id: True}
G_COLLABORATORS = "collaborators"  # repo id -> {user id: permission}
G_REFS = "refs"  # repo id -> {full ref name: 40-hex sha}
G_BRANCH_PROTECTION = "branch_protection"  # repo id -> {branch: BranchProtection}
G_REPO_PACKS = "repo_packs"  # repo id -> {pack sha256: order of acceptance}
#: (owner login lower, name lower) -> {height: repo id that took the name then, "" = freed}
G_REPO_NAME_HISTORY = "repo_name_history"


def _pairs(group: object) -> tuple[tuple[str, str], ...]:
    assert hasattr(group, "items")
    return tuple(sorted((str(k), str(v)) for k, v in group.items()))


class LedgerState(Overlay):
    """Users, keys, tokens, orgs, teams, repos and grants at one height; fork() for speculation."""

    __slots__ = ()

    # -- chain metadata ----------------------------------------------------------

    @property
    def chain_id(self) -> str:
        value = self.get(META, "chain_id")
        return value if isinstance(value, str) else ""

    @property
    def height(self) -> int:
        """Height of the last block folded into this state (-1 before genesis)."""
        value = self.get(META, "height")
        return value if isinstance(value, int) else -1

    @property
    def app_hash(self) -> bytes:
        """App hash after the last block folded into this state (empty before genesis)."""
        value = self.get(META, "app_hash")
        return value if isinstance(value, bytes) else b""

    def is_applied(self, tx_id_hex: str) -> bool:
        """Whether a transaction with this id (hex) is in the log already, accepted or rejected."""
        try:
            return self.get(APPLIED, bytes.fromhex(tx_id_hex)) is not None
        except ValueError:
            return False

    def version(self, aggregate_id: str) -> int:
        """The last version recorded for an aggregate (0 if it has no events)."""
        value = self.get(VERSIONS, aggregate_id)
        return value if isinstance(value, int) else 0

    # -- users, keys, tokens -----------------------------------------------------

    def user(self, user_id: str) -> User | None:
        value = self.get(USERS, user_id)
        return value if isinstance(value, User) else None

    def user_by_login(self, login: str) -> User | None:
        user_id = self.get(USER_LOGINS, ascii_lower(login))
        return self.user(user_id) if isinstance(user_id, str) else None

    def login_taken(self, login: str) -> bool:
        """Whether a user or an organization already has this login (case-insensitively)."""
        key = ascii_lower(login)
        return self.get(USER_LOGINS, key) is not None or self.get(ORG_LOGINS, key) is not None

    def site_admins(self) -> tuple[str, ...]:
        return tuple(sorted(str(k) for k in self.group(G_SITE_ADMINS, "")))

    def user_keys(self, user_id: str) -> tuple[UserKey, ...]:
        keys = self.group(G_USER_KEYS, user_id)
        return tuple(keys[k] for k in sorted(keys, key=str))

    def user_key(self, key_id: str) -> UserKey | None:
        user_id = self.get(KEY_OWNERS, key_id)
        if not isinstance(user_id, str):
            return None
        value = self.group(G_USER_KEYS, user_id).get(key_id)
        return value if isinstance(value, UserKey) else None

    def token_by_hash(self, token_hash: str) -> Token | None:
        value = self.get(TOKENS, ascii_lower(token_hash))
        return value if isinstance(value, Token) else None

    def token_by_id(self, token_id: str) -> Token | None:
        token_hash = self.get(TOKEN_IDS, token_id)
        return self.token_by_hash(token_hash) if isinstance(token_hash, str) else None

    def tokens_of_user(self, user_id: str) -> tuple[Token, ...]:
        ids = self.group(G_USER_TOKENS, user_id)
        found = (self.token_by_id(str(t)) for t in sorted(ids, key=str))
        return tuple(t for t in found if t is not None)

    # -- organizations and teams -------------------------------------------------

    def org(self, org_id: str) -> Org | None:
        value = self.get(ORGS, org_id)
        return value if isinstance(value, Org) else None

    def org_by_login(self, login: str) -> Org | None:
        org_id = self.get(ORG_LOGINS, ascii_lower(login))
        return self.org(org_id) if isinstance(org_id, str) else None

    def org_role(self, org_id: str, user_id: str) -> str | None:
        """ "owner", "member", or None if the user is not in the org."""
        role = self.group(G_ORG_MEMBERS, org_id).get(user_id)
        return role if isinstance(role, str) else None

    def org_members(self, org_id: str) -> tuple[tuple[str, str], ...]:
        """(user id, role) for every member, sorted by user id."""
        return _pairs(self.group(G_ORG_MEMBERS, org_id))

    def org_owner_count(self, org_id: str) -> int:
        return sum(1 for role in self.group(G_ORG_MEMBERS, org_id).values() if role == "owner")

    def orgs_of_user(self, user_id: str) -> tuple[tuple[str, str], ...]:
        """(org id, role) for every org the user belongs to, sorted by org id."""
        return _pairs(self.group(G_USER_ORGS, user_id))

    def team(self, team_id: str) -> Team | None:
        value = self.get(TEAMS, team_id)
        return value if isinstance(value, Team) else None

    def team_by_slug(self, org_id: str, slug: str) -> Team | None:
        team_id = self.get(TEAM_SLUGS, (org_id, ascii_lower(slug)))
        return self.team(team_id) if isinstance(team_id, str) else None

    def teams_of_org(self, org_id: str) -> tuple[Team, ...]:
        ids = sorted(self.group(G_ORG_TEAMS, org_id), key=str)
        found = (self.team(str(t)) for t in ids)
        return tuple(t for t in found if t is not None)

    def team_role(self, team_id: str, user_id: str) -> str | None:
        """ "maintainer", "member", or None if the user is not in the team."""
        role = self.group(G_TEAM_MEMBERS, team_id).get(user_id)
        return role if isinstance(role, str) else None

    def team_members(self, team_id: str) -> tuple[tuple[str, str], ...]:
        """(user id, role) for every team member, sorted by user id."""
        return _pairs(self.group(G_TEAM_MEMBERS, team_id))

    def teams_of_user(self, user_id: str) -> tuple[tuple[str, str], ...]:
        """(team id, role) for every team the user is in, sorted by team id."""
        return _pairs(self.group(G_USER_TEAMS, user_id))

    def team_repos(self, team_id: str) -> tuple[tuple[str, str], ...]:
        """(repo id, permission) for every repo the team has access to, sorted by repo id."""
        return _pairs(self.group(G_TEAM_REPOS, team_id))

    # -- repositories ------------------------------------------------------------

    def repo(self, repo_id: str) -> Repo | None:
        """The repository, or None if it never existed or was deleted."""
        value = self.get(REPOS, repo_id)
        return value if isinstance(value, Repo) else None

    def repo_ids(self) -> tuple[str, ...]:
        """Every repository's id, sorted."""
        return tuple(sorted(str(k) for k in self.keys(REPOS)))

    def repo_by_name(self, owner_login: str, name: str) -> Repo | None:
        repo_id = self.get(REPO_NAMES, (ascii_lower(owner_login), ascii_lower(name)))
        return self.repo(repo_id) if isinstance(repo_id, str) else None

    def repo_named_at(self, owner_login: str, name: str, height: int) -> str | None:
        """The id of the repository `owner/name` denoted while block `height` ran, else None.

        Names are reused (a repository deleted or renamed frees its name), so a fact recorded
        under a name at some height must be judged against the repository that held the name
        then, not the one holding it now. None as well when the name changed hands within that
        block: a transaction there may have seen either holder.
        """
        history = self.group(G_REPO_NAME_HISTORY, (ascii_lower(owner_login), ascii_lower(name)))
        earlier = [h for h in history if isinstance(h, int) and h < height]
        holder = history[max(earlier)] if earlier else ""
        if height in history and history[height] != holder:
            return None
        return holder if isinstance(holder, str) and holder else None

    def repos_owned_by(self, owner_id: str) -> tuple[Repo, ...]:
        """The owner's repositories, sorted by lowercase name."""
        found = (self.repo(str(r)) for r in self.group(G_OWNER_REPOS, owner_id))
        return tuple(
            sorted((r for r in found if r is not None), key=lambda r: (ascii_lower(r.name), r.repo_id))
        )

    def collaborators(self, repo_id: str) -> tuple[tuple[str, str], ...]:
        """(user id, permission) for every direct collaborator, sorted by user id."""
        return _pairs(self.group(G_COLLABORATORS, repo_id))

    def collaborator_permission(self, repo_id: str, user_id: str) -> str | None:
        value = self.group(G_COLLABORATORS, repo_id).get(user_id)
        return value if isinstance(value, str) else None

    def teams_of_repo(self, repo_id: str) -> tuple[tuple[str, str], ...]:
        """(team id, permission) for every team granted access, sorted by team id."""
        return _pairs(self.group(G_REPO_TEAMS, repo_id))

    # -- refs and branch protection ----------------------------------------------

    def refs(self, repo_id: str) -> tuple[tuple[str, str], ...]:
        """(ref, sha) for every ref of the repository, sorted by ref name."""
        return _pairs(self.group(G_REFS, repo_id))

    def ref(self, repo_id: str, name: str) -> str | None:
        """The 40-hex sha a full ref name (e.g. refs/heads/main) points to, or None."""
        value = self.group(G_REFS, repo_id).get(name)
        return value if isinstance(value, str) else None

    def repo_packs(self, repo_id: str) -> tuple[str, ...]:
        """The packs of every accepted push to the repository, oldest first.

        Together they hold every object of the repository, so they are what a handler may
        look at (see `commands.git_view`): the same list on every node at every height.
        """
        group = self.group(G_REPO_PACKS, repo_id)
        return tuple(str(d) for d, _ in sorted(group.items(), key=lambda item: int(item[1])))

    def branch_protection(self, repo_id: str, branch: str) -> BranchProtection | None:
        """The protection of a branch (name without refs/heads/, case-sensitive), or None."""
        value = self.group(G_BRANCH_PROTECTION, repo_id).get(branch)
        return value if isinstance(value, BranchProtection) else None

    def branch_protections(self, repo_id: str) -> tuple[BranchProtection, ...]:
        """Every protected branch of the repository, sorted by branch name."""
        group = self.group(G_BRANCH_PROTECTION, repo_id)
        return tuple(group[k] for k in sorted(group, key=str))
