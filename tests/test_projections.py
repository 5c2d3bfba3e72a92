"""The DuckDB read models: tables, effective permissions, atomic per-block apply, rebuild, queries."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import projections.projector as projector_module
from domain.events import (
    PERMISSION_ORDER,
    CollaboratorRemoved,
    CollaboratorSet,
    Event,
    OrgCreated,
    OrgMemberRemoved,
    OrgMemberSet,
    Permission,
    RecordedEvent,
    RepoCreated,
    RepoDeleted,
    RepoUpdated,
    TeamCreated,
    TeamMemberRemoved,
    TeamMemberSet,
    TeamRepoPermissionSet,
    TeamRepoRemoved,
    TokenIssued,
    UserCreated,
)
from projections import Projector, ReadModels
from projections.acl import recompute_acl
from projections.schema import COLUMNS

PERMS: tuple[Permission, ...] = ("read", "triage", "write", "maintain", "admin")
assert PERMS == PERMISSION_ORDER


def uid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, name))


class Chain:
    """Turns catalogue events into RecordedEvents block by block, as the ledger would."""

    def __init__(self) -> None:
        self.height = 0
        self.versions: Counter[str] = Counter()
        self.log: list[RecordedEvent] = []

    def block(self, *events: Event) -> tuple[int, list[RecordedEvent]]:
        self.height += 1
        out = []
        for i, e in enumerate(events):
            agg = e.aggregate_id()
            self.versions[agg] += 1
            out.append(
                RecordedEvent(
                    aggregate_id=agg,
                    version=self.versions[agg],
                    type=e.type,
                    data=e.model_dump(),
                    height=self.height,
                    tx_id=f"{self.height:032x}{i:032x}",
                    tx_index=i,
                    event_index=0,
                    timestamp_ms=1_700_000_000_000 + self.height * 1000,
                    actor="",
                )
            )
        self.log.extend(out)
        return self.height, out


def user(name: str, admin: bool = False) -> UserCreated:
    return UserCreated(user_id=uid(name), login=name, email=f"{name.lower()}@x.io", site_admin=admin)


def repo(name: str, owner: str, owner_type: str = "User", private: bool = False) -> RepoCreated:
    return RepoCreated(
        repo_id=uid(f"repo:{owner}/{name}"),
        owner_id=uid(owner),
        owner_type=owner_type,  # type: ignore[arg-type]
        owner_login=owner,
        name=name,
        description=f"{name} repo",
        private=private,
        default_branch="main",
    )


def rid(owner: str, name: str) -> str:
    return uid(f"repo:{owner}/{name}")


@pytest.fixture
def projector(tmp_path: Path) -> Iterator[Projector]:
    p = Projector(tmp_path / "readmodels.duckdb")
    yield p
    p.close()


def apply(p: Projector, block: tuple[int, list[RecordedEvent]]) -> None:
    p.apply_block(*block)


def dump(p: Projector) -> dict[str, list[tuple[Any, ...]]]:
    with p.cursor() as cur:
        return {t: cur.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in COLUMNS}


def acl(p: Projector) -> dict[tuple[str, str], str]:
    with p.cursor() as cur:
        return {(r, u): perm for r, u, perm in cur.execute("SELECT * FROM acl").fetchall()}


# -- an independent model of the permission rules, as the oracle for random histories ------------


def expected_acl(log: list[RecordedEvent]) -> dict[tuple[str, str], str]:
    users: dict[str, bool] = {}
    repos: dict[str, dict[str, Any]] = {}
    org_members: dict[tuple[str, str], str] = {}
    team_members: set[tuple[str, str]] = set()
    team_repos: dict[tuple[str, str], str] = {}
    collaborators: dict[tuple[str, str], str] = {}
    for rec in log:
        e = rec.payload()
        if isinstance(e, UserCreated):
            users[e.user_id] = e.site_admin
        elif isinstance(e, OrgMemberSet):
            org_members[(e.org_id, e.user_id)] = e.role
        elif isinstance(e, OrgMemberRemoved):
            org_members.pop((e.org_id, e.user_id), None)
        elif isinstance(e, TeamMemberSet):
            team_members.add((e.team_id, e.user_id))
        elif isinstance(e, TeamMemberRemoved):
            team_members.discard((e.team_id, e.user_id))
        elif isinstance(e, TeamRepoPermissionSet):
            team_repos[(e.team_id, e.repo_id)] = e.permission
        elif isinstance(e, TeamRepoRemoved):
            team_repos.pop((e.team_id, e.repo_id), None)
        elif isinstance(e, RepoCreated):
            repos[e.repo_id] = {
                "owner": e.owner_id,
                "type": e.owner_type,
                "archived": False,
                "deleted": False,
            }
        elif isinstance(e, RepoUpdated):
            if "archived" in e.changes:
                repos[e.repo_id]["archived"] = e.changes["archived"]
        elif isinstance(e, RepoDeleted):
            repos[e.repo_id]["deleted"] = True
        elif isinstance(e, CollaboratorSet):
            collaborators[(e.repo_id, e.user_id)] = e.permission
        elif isinstance(e, CollaboratorRemoved):
            collaborators.pop((e.repo_id, e.user_id), None)
    level = {p: i for i, p in enumerate(PERMISSION_ORDER)}
    out: dict[tuple[str, str], str] = {}
    for repo_id, r in repos.items():
        if r["deleted"]:
            continue
        grants: dict[str, int] = {}

        def grant(user_id: str, perm: str, grants: dict[str, int] = grants) -> None:
            grants[user_id] = max(grants.get(user_id, -1), level[perm])

        for user_id, admin in users.items():
            if admin:
                grant(user_id, "admin")
        if r["type"] == "User":
            grant(r["owner"], "admin")
        else:
            for (org_id, user_id), role in org_members.items():
                if org_id == r["owner"]:
                    grant(user_id, "admin" if role == "owner" else "read")
        for (team_id, repo2), perm in team_repos.items():
            if repo2 == repo_id:
                for team2, user_id in team_members:
                    if team2 == team_id:
                        grant(user_id, perm)
        for (repo2, user_id), perm in collaborators.items():
            if repo2 == repo_id:
                grant(user_id, perm)
        for user_id, lvl in grants.items():
            out[(repo_id, user_id)] = "read" if r["archived"] else PERMISSION_ORDER[lvl]
    return out


def random_history(seed: int, blocks: int = 60, admin_rate: float = 0.08) -> Chain:
    """A valid random history of users, orgs, teams, repos and grants, in blocks of 0..6 events."""
    rnd = random.Random(seed)
    chain = Chain()
    users: list[str] = []
    orgs: list[str] = []
    teams: dict[str, str] = {}  # team id -> org id
    repos: dict[str, dict[str, Any]] = {}
    n = 0

    def next_name(prefix: str) -> str:
        nonlocal n
        n += 1
        return f"{prefix}{seed}n{n}"

    def one() -> Event | None:
        live = [r for r, v in repos.items() if not v["deleted"]]
        choice = rnd.random()
        if choice < 0.12 or not users:
            name = next_name("U")
            users.append(uid(name))
            return user(name, admin=rnd.random() < admin_rate)
        if choice < 0.18:
            name = next_name("O")
            orgs.append(uid(name))
            return OrgCreated(org_id=uid(name), login=name, created_by=rnd.choice(users))
        if choice < 0.30 and orgs:
            who, org = rnd.choice(users), rnd.choice(orgs)
            if rnd.random() < 0.25:
                return OrgMemberRemoved(org_id=org, user_id=who)
            return OrgMemberSet(org_id=org, user_id=who, role=rnd.choice(["owner", "member", "member"]))
        if choice < 0.35 and orgs:
            name = next_name("T")
            org = rnd.choice(orgs)
            teams[uid(name)] = org
            return TeamCreated(
                team_id=uid(name), org_id=org, name=name, slug=name.lower(), description="", privacy="closed"
            )
        if choice < 0.45 and teams:
            team = rnd.choice(sorted(teams))
            who = rnd.choice(users)
            if rnd.random() < 0.25:
                return TeamMemberRemoved(team_id=team, user_id=who)
            return TeamMemberSet(team_id=team, user_id=who, role=rnd.choice(["member", "maintainer"]))
        if choice < 0.55 and teams:
            team = rnd.choice(sorted(teams))
            org_repos = [r for r in live if repos[r]["owner"] == teams[team]]
            if org_repos:
                target = rnd.choice(org_repos)
                if rnd.random() < 0.25:
                    return TeamRepoRemoved(team_id=team, repo_id=target)
                return TeamRepoPermissionSet(team_id=team, repo_id=target, permission=rnd.choice(PERMS))
        if choice < 0.70:
            org_owned = bool(orgs) and rnd.random() < 0.5
            owner = rnd.choice(orgs) if org_owned else rnd.choice(users)
            name = next_name("r")
            repo_id = uid(f"repo:{name}")
            repos[repo_id] = {"owner": owner, "deleted": False}
            return RepoCreated(
                repo_id=repo_id,
                owner_id=owner,
                owner_type="Organization" if org_owned else "User",
                owner_login=owner[:8],
                name=name,
                description="",
                private=rnd.random() < 0.5,
                default_branch="main",
            )
        if choice < 0.85 and live:
            target = rnd.choice(live)
            if rnd.random() < 0.3:
                return CollaboratorRemoved(repo_id=target, user_id=rnd.choice(users))
            return CollaboratorSet(repo_id=target, user_id=rnd.choice(users), permission=rnd.choice(PERMS))
        if choice < 0.95 and live:
            target = rnd.choice(live)
            changes: dict[str, str | bool] = rnd.choice(
                [{"archived": True}, {"archived": False}, {"private": True}, {"description": "d"}]
            )
            return RepoUpdated(repo_id=target, changes=changes)
        if live:
            target = rnd.choice(live)
            repos[target]["deleted"] = True
            return RepoDeleted(repo_id=target)
        return None

    for _ in range(blocks):
        events = [e for e in (one() for _ in range(rnd.randint(0, 6))) if e is not None]
        chain.block(*events)
    return chain


# -- tables --------------------------------------------------------------------------------------


def test_each_table_is_projected(projector: Projector) -> None:
    chain = Chain()
    apply(projector, chain.block(user("Alice"), user("bob"), user("Root", admin=True)))
    apply(projector, chain.block(OrgCreated(org_id=uid("Acme"), login="Acme", created_by=uid("Alice"))))
    apply(
        projector,
        chain.block(
            OrgMemberSet(org_id=uid("Acme"), user_id=uid("Alice"), role="owner"),
            OrgMemberSet(org_id=uid("Acme"), user_id=uid("bob"), role="member"),
            TeamCreated(
                team_id=uid("devs"),
                org_id=uid("Acme"),
                name="Devs",
                slug="devs",
                description="the devs",
                privacy="closed",
            ),
            TeamMemberSet(team_id=uid("devs"), user_id=uid("bob"), role="maintainer"),
            repo("Widget", "Acme", "Organization", private=True),
            repo("notes", "Alice"),
            TokenIssued(user_id=uid("bob"), token_id="t1", token_hash="00" * 32, scopes=["repo"], note=""),
        ),
    )
    apply(
        projector,
        chain.block(
            TeamRepoPermissionSet(team_id=uid("devs"), repo_id=rid("Acme", "Widget"), permission="write"),
            CollaboratorSet(repo_id=rid("Alice", "notes"), user_id=uid("bob"), permission="triage"),
            RepoUpdated(repo_id=rid("Alice", "notes"), changes={"name": "Notes2", "description": "new"}),
        ),
    )
    rm = ReadModels(projector)
    alice = rm.get_user("ALICE")
    assert alice is not None and alice["user_id"] == uid("Alice") and alice["login_lower"] == "alice"
    assert alice["created_at_ms"] == 1_700_000_001_000 and alice["site_admin"] is False
    assert set(alice) == set(COLUMNS["users"])
    assert rm.get_user_by_id(uid("Root"))["site_admin"] is True  # type: ignore[index]
    assert rm.get_user("nobody") is None
    org = rm.get_org("acme")
    assert org == {
        "org_id": uid("Acme"),
        "login": "Acme",
        "login_lower": "acme",
        "created_at_ms": 1_700_000_002_000,
    }
    assert [(m["login"], m["role"]) for m in rm.org_members(uid("Acme"))] == [
        ("Alice", "owner"),
        ("bob", "member"),
    ]
    team = rm.get_team("ACME", "Devs")
    assert team is not None and team["name"] == "Devs" and team["description"] == "the devs"
    assert [(m["login"], m["role"]) for m in rm.team_members(uid("devs"))] == [("bob", "maintainer")]
    assert [t["permission"] for t in rm.team_repos(uid("devs"))] == ["write"]
    widget = rm.get_repo("acme", "WIDGET")
    assert widget is not None and widget["private"] is True and widget["owner_type"] == "Organization"
    assert set(widget) == set(COLUMNS["repos"])
    assert rm.get_repo("Alice", "notes") is None  # renamed
    notes = rm.get_repo("alice", "notes2")
    assert notes is not None and notes["name"] == "Notes2" and notes["description"] == "new"
    assert notes["created_at_ms"] == 1_700_000_003_000 and notes["updated_at_ms"] == 1_700_000_004_000
    assert [(c["login"], c["permission"]) for c in rm.collaborators(rid("Alice", "notes"))] == [
        ("bob", "triage")
    ]
    assert rm.height() == projector.height() == 4


# -- effective permissions -----------------------------------------------------------------------


def test_acl_rules(projector: Projector) -> None:
    chain = Chain()
    apply(
        projector,
        chain.block(
            user("owner"),
            user("member"),
            user("teammate"),
            user("collab"),
            user("outsider"),
            OrgCreated(org_id=uid("org"), login="org", created_by=uid("owner")),
            OrgMemberSet(org_id=uid("org"), user_id=uid("owner"), role="owner"),
            OrgMemberSet(org_id=uid("org"), user_id=uid("member"), role="member"),
            OrgMemberSet(org_id=uid("org"), user_id=uid("teammate"), role="member"),
            TeamCreated(
                team_id=uid("t"), org_id=uid("org"), name="t", slug="t", description="", privacy="secret"
            ),
            TeamMemberSet(team_id=uid("t"), user_id=uid("teammate"), role="member"),
            TeamMemberSet(team_id=uid("t"), user_id=uid("collab"), role="maintainer"),
            repo("app", "org", "Organization", private=True),
            repo("mine", "collab"),
        ),
    )
    app, mine = rid("org", "app"), rid("collab", "mine")
    apply(
        projector,
        chain.block(
            TeamRepoPermissionSet(team_id=uid("t"), repo_id=app, permission="maintain"),
            CollaboratorSet(repo_id=app, user_id=uid("collab"), permission="write"),
            CollaboratorSet(repo_id=app, user_id=uid("member"), permission="triage"),
            CollaboratorSet(repo_id=mine, user_id=uid("outsider"), permission="read"),
        ),
    )
    assert acl(projector) == {
        (app, uid("owner")): "admin",  # org owner
        (app, uid("member")): "triage",  # max(base read, collaborator triage)
        (app, uid("teammate")): "maintain",  # team permission beats base read
        (app, uid("collab")): "maintain",  # max(team maintain, collaborator write)
        (mine, uid("collab")): "admin",  # user-owned: owner is admin
        (mine, uid("outsider")): "read",
    }
    rm = ReadModels(projector)
    assert rm.permission(app, uid("outsider")) is None
    assert rm.permission(app, uid("teammate")) == "maintain"

    # Membership changes recompute that org's / team's repositories.
    apply(
        projector,
        chain.block(
            OrgMemberRemoved(org_id=uid("org"), user_id=uid("teammate")),
            TeamMemberRemoved(team_id=uid("t"), user_id=uid("collab")),
        ),
    )
    assert rm.permission(app, uid("teammate")) == "maintain"  # still on the team
    assert rm.permission(app, uid("collab")) == "write"
    apply(projector, chain.block(TeamRepoRemoved(team_id=uid("t"), repo_id=app)))
    assert rm.permission(app, uid("teammate")) is None
    apply(projector, chain.block(OrgMemberSet(org_id=uid("org"), user_id=uid("member"), role="owner")))
    assert rm.permission(app, uid("member")) == "admin"
    apply(projector, chain.block(CollaboratorRemoved(repo_id=app, user_id=uid("collab"))))
    assert rm.permission(app, uid("collab")) is None

    # A new site admin gets admin everywhere, including on repositories created later.
    apply(projector, chain.block(user("root", admin=True)))
    assert rm.permission(app, uid("root")) == "admin" and rm.permission(mine, uid("root")) == "admin"
    apply(projector, chain.block(repo("later", "outsider", private=True)))
    assert rm.permission(rid("outsider", "later"), uid("root")) == "admin"
    assert acl(projector) == expected_acl(chain.log)


def test_archived_repositories_cap_everyone_at_read(projector: Projector) -> None:
    chain = Chain()
    apply(projector, chain.block(user("a"), user("b"), user("root", admin=True), repo("x", "a")))
    x = rid("a", "x")
    apply(projector, chain.block(CollaboratorSet(repo_id=x, user_id=uid("b"), permission="write")))
    apply(projector, chain.block(RepoUpdated(repo_id=x, changes={"archived": True})))
    assert acl(projector) == {(x, uid("a")): "read", (x, uid("b")): "read", (x, uid("root")): "read"}
    apply(projector, chain.block(RepoUpdated(repo_id=x, changes={"archived": False})))
    assert acl(projector) == {(x, uid("a")): "admin", (x, uid("b")): "write", (x, uid("root")): "admin"}


def test_deleted_repositories_have_no_rows_and_are_hidden(projector: Projector) -> None:
    chain = Chain()
    apply(projector, chain.block(user("a"), user("b"), repo("x", "a"), repo("y", "a")))
    x = rid("a", "x")
    apply(
        projector,
        chain.block(CollaboratorSet(repo_id=x, user_id=uid("b"), permission="admin"), RepoDeleted(repo_id=x)),
    )
    assert set(acl(projector)) == {(rid("a", "y"), uid("a"))}
    rm = ReadModels(projector)
    assert rm.collaborators(x) == []  # grants go with the repository, as in the ledger state
    assert rm.get_repo("a", "x") is None
    assert rm.get_repo_by_id(x) is None
    assert rm.get_repo_by_id(x, include_deleted=True)["deleted"] is True  # type: ignore[index]
    rows, total = rm.list_repos_for_user(uid("a"))
    assert total == 1 and [r["name"] for r in rows] == ["y"]
    # The name can be taken again by a new repository.
    again = RepoCreated(**{**repo("x", "a").model_dump(), "repo_id": uid("x-again")})
    apply(projector, chain.block(again))
    assert rm.get_repo("a", "x")["repo_id"] == uid("x-again")  # type: ignore[index]


def test_events_within_one_block_fold_in_order(projector: Projector) -> None:
    chain = Chain()
    x = rid("a", "x")
    apply(
        projector,
        chain.block(
            user("a"),
            user("b"),
            repo("x", "a"),
            CollaboratorSet(repo_id=x, user_id=uid("b"), permission="write"),
            CollaboratorRemoved(repo_id=x, user_id=uid("b")),
            CollaboratorSet(repo_id=x, user_id=uid("b"), permission="maintain"),
            RepoUpdated(repo_id=x, changes={"private": True}),
            RepoUpdated(repo_id=x, changes={"default_branch": "trunk"}),
        ),
    )
    rm = ReadModels(projector)
    found = rm.get_repo("a", "x")
    assert found is not None and found["private"] is True and found["default_branch"] == "trunk"
    assert rm.permission(x, uid("b")) == "maintain"
    assert acl(projector) == expected_acl(chain.log)


def test_updates_the_ledger_ignores_are_ignored(projector: Projector) -> None:
    chain = Chain()
    x = rid("a", "x")
    apply(projector, chain.block(user("a"), repo("x", "a")))
    apply(
        projector,
        chain.block(
            RepoUpdated(
                repo_id=x, changes={"private": "yes", "archived": True, "name": False, "color": "red"}
            ),
            RepoUpdated(repo_id=uid("nowhere"), changes={"private": True}),
            RepoDeleted(repo_id=uid("nowhere")),
        ),
    )
    found = ReadModels(projector).get_repo("a", "x")
    assert found is not None and found["private"] is False and found["archived"] is True
    apply(projector, chain.block(RepoDeleted(repo_id=x)))
    apply(projector, chain.block(RepoUpdated(repo_id=x, changes={"description": "ghost"})))
    assert ReadModels(projector).get_repo_by_id(x, include_deleted=True)["description"] == "x repo"  # type: ignore[index]
    assert projector.height() == 4


@pytest.mark.parametrize("seed", range(6))
def test_acl_matches_the_rules_on_random_histories(projector: Projector, seed: int) -> None:
    chain = random_history(seed)
    by_height: dict[int, list[RecordedEvent]] = {}
    for e in chain.log:
        by_height.setdefault(e.height, []).append(e)
    for h in range(1, chain.height + 1):
        projector.apply_block(h, by_height.get(h, []))
        if h % 10 == 0:
            assert acl(projector) == expected_acl([e for e in chain.log if e.height <= h]), h
    assert acl(projector) == expected_acl(chain.log)
    assert projector.height() == chain.height


@pytest.mark.parametrize("seed", range(100, 104))
def test_read_models_agree_with_the_ledger_state(projector: Projector, seed: int) -> None:
    """The ACL and grant tables match domain.permissions / domain.state folded over the same log."""
    from domain.evolve import apply_recorded
    from domain.permissions import access_list
    from domain.state import LedgerState

    chain = random_history(seed, blocks=80)
    state = LedgerState()
    by_height: dict[int, list[RecordedEvent]] = {}
    for e in chain.log:
        by_height.setdefault(e.height, []).append(e)
    repo_ids = sorted({e.aggregate_id for e in chain.log if e.type == "RepoCreated"})
    team_ids = sorted({e.aggregate_id for e in chain.log if e.type == "TeamCreated"})
    for h in range(1, chain.height + 1):
        block = by_height.get(h, [])
        projector.apply_block(h, block)
        for e in block:
            apply_recorded(state, e)
        if h % 20 and h != chain.height:
            continue
        want_acl = {
            (repo_id, user_id): perm
            for repo_id in repo_ids
            for user_id, perm in access_list(state, repo_id, include_site_admins=True)
        }
        assert acl(projector) == want_acl, h
        tables = dump(projector)
        assert tables["collaborators"] == sorted(
            (repo_id, user_id, perm) for repo_id in repo_ids for user_id, perm in state.collaborators(repo_id)
        )
        assert tables["team_repos"] == sorted(
            (team_id, repo_id, perm) for team_id in team_ids for repo_id, perm in state.team_repos(team_id)
        )
        live = {r[0]: r for r in tables["repos"] if not r[COLUMNS["repos"].index("deleted")]}
        assert sorted(live) == sorted(r for r in repo_ids if state.repo(r) is not None)
        for repo_id, row in live.items():
            ledger_repo = state.repo(repo_id)
            assert ledger_repo is not None
            got = dict(zip(COLUMNS["repos"], row, strict=True))
            assert (got["name"], got["private"], got["archived"], got["description"]) == (
                ledger_repo.name,
                ledger_repo.private,
                ledger_repo.archived,
                ledger_repo.description,
            )


# -- applying, idempotence, atomicity, rebuild ---------------------------------------------------


def test_reapplying_a_block_is_a_noop(projector: Projector) -> None:
    chain = Chain()
    b1 = chain.block(user("a"), repo("x", "a"))
    b2 = chain.block(RepoUpdated(repo_id=rid("a", "x"), changes={"description": "second"}))
    apply(projector, b1)
    apply(projector, b2)
    before = dump(projector)
    apply(projector, b1)  # lower height: skipped
    apply(projector, b2)  # same height: skipped
    apply(projector, (2, [*b1[1]]))  # different content at an applied height: skipped too
    assert dump(projector) == before
    assert projector.height() == 2


def test_a_failure_mid_block_leaves_nothing_and_tracking_unmoved(
    projector: Projector, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = Chain()
    apply(projector, chain.block(user("a"), repo("x", "a")))
    before = dump(projector)
    block = chain.block(
        user("b"),
        repo("y", "b"),
        CollaboratorSet(repo_id=rid("a", "x"), user_id=uid("b"), permission="write"),
    )

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    # Fail after every table write of the block, just before the ACL and tracking writes.
    monkeypatch.setattr(projector_module, "recompute_acl", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        apply(projector, block)
    rm = ReadModels(projector)
    assert rm.get_user("b") is None and rm.get_repo("b", "y") is None
    assert rm.collaborators(rid("a", "x")) == []
    assert projector.height() == 1 and rm.height() == 1
    assert dump(projector) == before
    monkeypatch.undo()
    apply(projector, block)
    assert rm.get_repo("b", "y") is not None and projector.height() == 2
    assert rm.permission(rid("a", "x"), uid("b")) == "write"


def test_uncommitted_block_is_invisible_to_readers(
    projector: Projector, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = Chain()
    seen: list[Any] = []
    rm = ReadModels(projector)
    real = recompute_acl

    def peek(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        seen.append((rm.get_user("a"), rm.height()))  # mid-transaction, from another cursor

    monkeypatch.setattr(projector_module, "recompute_acl", peek)
    apply(projector, chain.block(user("a"), repo("x", "a")))
    assert seen == [(None, 0)]
    assert rm.get_user("a") is not None and rm.height() == 1


def test_rebuild_equals_incremental(tmp_path: Path) -> None:
    chain = random_history(99, blocks=80)
    incremental = Projector(tmp_path / "a.duckdb")
    by_height: dict[int, list[RecordedEvent]] = {}
    for e in chain.log:
        by_height.setdefault(e.height, []).append(e)
    for h in sorted(by_height):
        incremental.apply_block(h, by_height[h])
    rebuilt = Projector(tmp_path / "b.duckdb")
    rebuilt.apply_block(1, [chain.log[0]])  # stale content that the rebuild must drop
    heights: list[int] = []
    monkey_chunk = projector_module.REBUILD_CHUNK_EVENTS
    try:
        projector_module.REBUILD_CHUNK_EVENTS = 25  # several chunks
        rebuilt.rebuild(iter(chain.log), heights.append)
    finally:
        projector_module.REBUILD_CHUNK_EVENTS = monkey_chunk
    assert dump(rebuilt) == dump(incremental)
    assert rebuilt.height() == incremental.height() == max(by_height)
    assert len(heights) > 2 and heights == sorted(heights) and heights[-1] == max(by_height)
    # `up_to` carries tracking past trailing empty blocks; the rebuilt model then goes on normally.
    rebuilt.rebuild(iter(chain.log), up_to=chain.height + 5)
    assert rebuilt.height() == chain.height + 5
    rebuilt.apply_block(chain.height + 6, [])
    assert rebuilt.height() == chain.height + 6
    incremental.close()
    rebuilt.close()


def test_apply_blocks_batches_consecutive_blocks(tmp_path: Path) -> None:
    chain = random_history(5, blocks=40)
    by_height: dict[int, list[RecordedEvent]] = {h: [] for h in range(1, chain.height + 1)}
    for e in chain.log:
        by_height[e.height].append(e)
    one_by_one = Projector(tmp_path / "a.duckdb")
    batched = Projector(tmp_path / "b.duckdb")
    try:
        for h, block in by_height.items():
            one_by_one.apply_block(h, block)
        batched.apply_block(1, by_height[1])
        batched.apply_blocks((h, b) for h, b in by_height.items() if h <= 25)  # 1 is skipped
        batched.apply_blocks((h, b) for h, b in by_height.items() if h > 20)  # 21..25 are skipped
        assert batched.height() == one_by_one.height() == chain.height
        assert dump(batched) == dump(one_by_one)
        with pytest.raises(ValueError, match="out of order"):
            batched.apply_blocks([(chain.height + 2, []), (chain.height + 1, [])])
        assert batched.height() == chain.height
    finally:
        one_by_one.close()
        batched.close()


def test_rebuild_refuses_events_out_of_order(projector: Projector) -> None:
    chain = Chain()
    chain.block(user("a"))
    chain.block(user("b"))
    with pytest.raises(ValueError, match="out of log order"):
        projector.rebuild(reversed(chain.log))


def test_reopen_keeps_rows_and_height(tmp_path: Path) -> None:
    chain = Chain()
    p = Projector(tmp_path / "rm.duckdb")
    apply(p, chain.block(user("a"), repo("x", "a")))
    before = dump(p)
    p.close()
    again = Projector(tmp_path / "rm.duckdb")
    try:
        assert again.height() == 1 and dump(again) == before
        apply(again, chain.block(user("b")))
        assert again.height() == 2
    finally:
        again.close()


def test_a_file_of_another_schema_version_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chain = Chain()
    p = Projector(tmp_path / "rm.duckdb")
    apply(p, chain.block(user("a")))
    p.close()
    monkeypatch.setattr(projector_module, "SCHEMA_VERSION", 999)
    again = Projector(tmp_path / "rm.duckdb")
    try:
        assert again.height() == 0 and ReadModels(again).get_user("a") is None
    finally:
        again.close()


# -- queries -------------------------------------------------------------------------------------


def test_listing_repositories_respects_visibility_and_pages(projector: Projector) -> None:
    chain = Chain()
    apply(
        projector,
        chain.block(
            user("owner"),
            user("friend"),
            user("stranger"),
            user("root", admin=True),
            *[repo(f"pub{i}", "owner") for i in range(5)],
            repo("secret", "owner", private=True),
            repo("shared", "owner", private=True),
            repo("theirs", "friend", private=True),
        ),
    )
    apply(
        projector,
        chain.block(
            CollaboratorSet(repo_id=rid("owner", "shared"), user_id=uid("friend"), permission="read"),
            RepoDeleted(repo_id=rid("owner", "pub4")),
        ),
    )
    rm = ReadModels(projector)

    def names(viewer: str | None, page: int = 1, per_page: int = 100) -> tuple[list[str], int]:
        rows, total = rm.list_repos_for_owner(uid("owner"), viewer, page, per_page)
        return [r["name"] for r in rows], total

    public = ["pub0", "pub1", "pub2", "pub3"]
    assert names(None) == (public, 4)
    assert names(uid("stranger")) == (public, 4)
    assert names(uid("friend")) == ([*public, "shared"], 5)
    assert names(uid("owner")) == ([*public, "secret", "shared"], 6)
    assert names(uid("root")) == ([*public, "secret", "shared"], 6)
    assert names(uid("owner"), page=2, per_page=4) == (["secret", "shared"], 6)
    assert names(uid("owner"), page=3, per_page=4) == ([], 6)
    rows, _ = rm.list_repos_for_owner(uid("owner"), uid("friend"), 1, 100)
    assert {r["name"]: r["permission"] for r in rows}["shared"] == "read"

    rows, total = rm.list_repos_for_user(uid("friend"), 1, 100)
    assert total == 2 and [(r["name"], r["permission"]) for r in rows] == [
        ("theirs", "admin"),
        ("shared", "read"),
    ]
    rows, total = rm.list_repos_for_user(uid("owner"), 2, 3)
    assert total == 6 and [r["name"] for r in rows] == ["pub3", "secret", "shared"]
    assert rm.list_repos_for_user(uid("stranger")) == ([], 0)


def test_readers_on_another_thread_see_whole_blocks_only(projector: Projector) -> None:
    """Queries from one thread while another applies blocks: no errors, never half a block."""
    import threading

    chain = Chain()
    apply(projector, chain.block(user("owner")))
    blocks = [
        chain.block(*[repo(f"r{h}x{i}", "owner") for i in range(5)], user(f"member{h}")) for h in range(30)
    ]
    rm = ReadModels(projector)
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                rows, total = rm.list_repos_for_user(uid("owner"), 1, 1000)
                assert total % 5 == 0 and len(rows) == total  # a block adds five repositories at once
                rm.get_user("owner")
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for block in blocks:
            apply(projector, block)
    finally:
        done.set()
        reader.join()
    assert errors == []
    assert rm.list_repos_for_user(uid("owner"), 1, 1)[1] == 150
