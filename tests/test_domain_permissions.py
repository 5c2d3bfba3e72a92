"""Effective repository permissions: every source, their maximum, visibility and archiving."""

from __future__ import annotations

import pytest

from domain import events as ev
from domain.evolve import apply_event
from domain.permissions import access_list, can, can_see_team, effective_permission, highest, rank
from domain.state import LedgerState

ADMIN, OWNER, MEMBER, OUTSIDER, TEAMMATE, MAINTAINER, COLLAB, ORG_OWNER = (
    "u-admin",
    "u-owner",
    "u-member",
    "u-outsider",
    "u-teammate",
    "u-maintainer",
    "u-collab",
    "u-orgowner",
)
ORG = "o-acme"


def _state(*extra: ev.Event) -> LedgerState:
    s = LedgerState()
    for user_id in (ADMIN, OWNER, MEMBER, OUTSIDER, TEAMMATE, MAINTAINER, COLLAB, ORG_OWNER):
        login = user_id.removeprefix("u-")
        apply_event(
            s,
            ev.UserCreated(user_id=user_id, login=login, email=f"{login}@x.io", site_admin=user_id == ADMIN),
        )
    base: list[ev.Event] = [
        ev.OrgCreated(org_id=ORG, login="acme", created_by=ADMIN),
        ev.OrgMemberSet(org_id=ORG, user_id=ORG_OWNER, role="owner"),
        *(ev.OrgMemberSet(org_id=ORG, user_id=u, role="member") for u in (MEMBER, TEAMMATE, MAINTAINER)),
        ev.TeamCreated(
            team_id="t-core", org_id=ORG, name="Core", slug="core", description="", privacy="secret"
        ),
        ev.TeamMemberSet(team_id="t-core", user_id=TEAMMATE, role="member"),
        ev.TeamMemberSet(team_id="t-core", user_id=MAINTAINER, role="maintainer"),
        _repo("r-user", OWNER, "User", "owner", private=True),
        _repo("r-org", ORG, "Organization", "acme", private=True),
        _repo("r-pub", ORG, "Organization", "acme", private=False),
    ]
    for e in (*base, *extra):
        apply_event(s, e)
    return s


def _repo(
    repo_id: str, owner_id: str, owner_type: ev.OwnerType, owner_login: str, private: bool
) -> ev.RepoCreated:
    return ev.RepoCreated(
        repo_id=repo_id,
        owner_id=owner_id,
        owner_type=owner_type,
        owner_login=owner_login,
        name=repo_id,
        description="",
        private=private,
        default_branch="main",
    )


def test_levels_are_ordered() -> None:
    assert [rank(p) for p in ("read", "triage", "write", "maintain", "admin")] == [0, 1, 2, 3, 4]
    assert highest(None, "triage", "read") == "triage" and highest() is None
    with pytest.raises(ValueError):
        rank("owner")


def test_user_owned_private_repo() -> None:
    s = _state()
    assert effective_permission(s, OWNER, "r-user") == "admin"
    assert effective_permission(s, OUTSIDER, "r-user") is None
    assert effective_permission(s, None, "r-user") is None
    assert effective_permission(s, ADMIN, "r-user") == "admin"  # site admin everywhere
    assert effective_permission(s, ORG_OWNER, "r-user") is None  # org roles don't reach user repos


def test_org_owner_admin_and_member_base_read() -> None:
    s = _state()
    assert effective_permission(s, ORG_OWNER, "r-org") == "admin"
    assert effective_permission(s, MEMBER, "r-org") == "read"
    assert effective_permission(s, OUTSIDER, "r-org") is None
    assert not can(s, MEMBER, "r-org", "triage") and can(s, MEMBER, "r-org", "read")


def test_team_grant_applies_to_members_and_maintainers() -> None:
    s = _state(ev.TeamRepoPermissionSet(team_id="t-core", repo_id="r-org", permission="maintain"))
    assert effective_permission(s, TEAMMATE, "r-org") == "maintain"
    assert effective_permission(s, MAINTAINER, "r-org") == "maintain"
    assert effective_permission(s, MEMBER, "r-org") == "read"
    s2 = _state(
        ev.TeamRepoPermissionSet(team_id="t-core", repo_id="r-org", permission="maintain"),
        ev.TeamMemberRemoved(team_id="t-core", user_id=TEAMMATE),
        ev.TeamRepoRemoved(team_id="t-core", repo_id="r-org"),
    )
    assert effective_permission(s2, TEAMMATE, "r-org") == "read"
    assert effective_permission(s2, MAINTAINER, "r-org") == "read"


def test_effective_is_the_maximum_of_sources() -> None:
    s = _state(
        ev.TeamRepoPermissionSet(team_id="t-core", repo_id="r-org", permission="triage"),
        ev.CollaboratorSet(repo_id="r-org", user_id=TEAMMATE, permission="write"),
        ev.CollaboratorSet(repo_id="r-org", user_id=MAINTAINER, permission="read"),
    )
    assert effective_permission(s, TEAMMATE, "r-org") == "write"
    assert effective_permission(s, MAINTAINER, "r-org") == "triage"


def test_direct_collaborators_including_outside_collaborators() -> None:
    s = _state(
        ev.CollaboratorSet(repo_id="r-org", user_id=COLLAB, permission="triage"),
        ev.CollaboratorSet(repo_id="r-user", user_id=COLLAB, permission="write"),
    )
    assert effective_permission(s, COLLAB, "r-org") == "triage"
    assert effective_permission(s, COLLAB, "r-user") == "write"
    s2 = _state(
        ev.CollaboratorSet(repo_id="r-user", user_id=COLLAB, permission="write"),
        ev.CollaboratorRemoved(repo_id="r-user", user_id=COLLAB),
    )
    assert effective_permission(s2, COLLAB, "r-user") is None


def test_public_repos_give_everyone_read_including_anonymous() -> None:
    s = _state(ev.CollaboratorSet(repo_id="r-pub", user_id=COLLAB, permission="write"))
    assert effective_permission(s, None, "r-pub") == "read"
    assert effective_permission(s, OUTSIDER, "r-pub") == "read"
    assert effective_permission(s, COLLAB, "r-pub") == "write"
    assert effective_permission(s, "u-unknown", "r-pub") == "read"
    assert can(s, None, "r-pub", "read") and not can(s, None, "r-pub", "triage")
    s2 = _state(ev.RepoUpdated(repo_id="r-user", changes={"private": False}))
    assert effective_permission(s2, None, "r-user") == "read"


def test_deleted_repo_has_no_permissions_and_no_grants() -> None:
    s = _state(
        ev.TeamRepoPermissionSet(team_id="t-core", repo_id="r-pub", permission="admin"),
        ev.CollaboratorSet(repo_id="r-pub", user_id=COLLAB, permission="write"),
        ev.RepoDeleted(repo_id="r-pub"),
    )
    for user in (ADMIN, ORG_OWNER, TEAMMATE, COLLAB, None):
        assert effective_permission(s, user, "r-pub") is None
        assert not can(s, user, "r-pub", "read")
    assert s.team_repos("t-core") == () and s.collaborators("r-pub") == ()
    assert effective_permission(s, None, "r-nonexistent") is None
    assert access_list(s, "r-pub") == ()


def test_archived_repo_caps_everyone_at_read() -> None:
    s = _state(
        ev.CollaboratorSet(repo_id="r-org", user_id=COLLAB, permission="write"),
        ev.RepoUpdated(repo_id="r-org", changes={"archived": True}),
    )
    assert effective_permission(s, ADMIN, "r-org") == "read"
    assert effective_permission(s, ORG_OWNER, "r-org") == "read"
    assert effective_permission(s, COLLAB, "r-org") == "read"
    assert effective_permission(s, OUTSIDER, "r-org") is None  # archiving doesn't grant anything
    assert effective_permission(s, ORG_OWNER, "r-org", ignore_archived=True) == "admin"
    assert effective_permission(s, COLLAB, "r-org", ignore_archived=True) == "write"


def test_site_admin_flag_only_from_genesis_style_user_created() -> None:
    s = _state()
    assert s.site_admins() == (ADMIN,)
    assert effective_permission(s, ADMIN, "r-org") == "admin"


def test_leaving_the_org_drops_the_base_permission() -> None:
    s = _state(ev.OrgMemberRemoved(org_id=ORG, user_id=MEMBER))
    assert effective_permission(s, MEMBER, "r-org") is None
    assert effective_permission(s, MEMBER, "r-pub") == "read"


def test_access_list_matches_effective_permission() -> None:
    s = _state(
        ev.TeamRepoPermissionSet(team_id="t-core", repo_id="r-org", permission="write"),
        ev.CollaboratorSet(repo_id="r-org", user_id=COLLAB, permission="triage"),
        ev.CollaboratorSet(repo_id="r-org", user_id=ADMIN, permission="read"),
    )
    listed = access_list(s, "r-org")
    assert listed == (
        (ADMIN, "admin"),
        (COLLAB, "triage"),
        (MAINTAINER, "write"),
        (MEMBER, "read"),
        (ORG_OWNER, "admin"),
        (TEAMMATE, "write"),
    )
    for user_id, perm in listed:
        assert effective_permission(s, user_id, "r-org") == perm
    assert access_list(s, "r-user") == ((OWNER, "admin"),)
    assert access_list(s, "r-user", include_site_admins=True) == ((ADMIN, "admin"), (OWNER, "admin"))
    archived = _state(ev.RepoUpdated(repo_id="r-user", changes={"archived": True}))
    assert access_list(archived, "r-user") == ((OWNER, "read"),)
    assert access_list(archived, "r-user", ignore_archived=True) == ((OWNER, "admin"),)


def test_team_visibility_follows_github() -> None:
    """Closed teams: every org member; secret teams: their members and the org's owners."""
    s = _state(
        ev.TeamCreated(
            team_id="t-open", org_id=ORG, name="Open", slug="open", description="", privacy="closed"
        )
    )
    secret, closed = s.team("t-core"), s.team("t-open")
    assert secret is not None and closed is not None
    for who in (ADMIN, ORG_OWNER, MEMBER, TEAMMATE, MAINTAINER):
        assert can_see_team(s, who, closed), who
    for who in (ADMIN, ORG_OWNER, TEAMMATE, MAINTAINER):
        assert can_see_team(s, who, secret), who
    assert not can_see_team(s, MEMBER, secret)
    for outside in (OUTSIDER, COLLAB, OWNER, None, "u-nobody"):
        assert not can_see_team(s, outside, closed) and not can_see_team(s, outside, secret), outside
