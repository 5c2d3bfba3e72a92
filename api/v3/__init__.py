"""GitHub Enterprise Server–compatible REST API, mounted at `/api/v3`.

GitHub's object shapes, error bodies (`{"message", "documentation_url"}`, and
`{"message": "Validation Failed", "errors": [...]}` for 422) and pagination
(`per_page`/`page` with `Link` headers). Every command answers once its transaction
is final and applied on this node, with the log position in `X-Stele-Position`;
every route accepts `X-Stele-Min-Position: P` (or `?min_position=P`) to read at
least that position.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.v3 import branches, contents, orgs, repos, users

router = APIRouter()
router.include_router(users.router)
router.include_router(orgs.router)
router.include_router(repos.router)
router.include_router(branches.router)
router.include_router(contents.router)

__all__ = ["router"]
