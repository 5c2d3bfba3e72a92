"""GitHub-style pagination: `per_page`/`page` query parameters and RFC 8288 `Link` headers."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Query, Request

from api.errors import ApiError

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class Page:
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def page_params(
    page: int = Query(1, le=MAX_PAGE, description="Page number, from 1"),
    per_page: int = Query(DEFAULT_PER_PAGE, description=f"Results per page, at most {MAX_PER_PAGE}"),
) -> Page:
    if page < 1:
        raise ApiError(422, "page must be at least 1")
    if per_page < 1:
        raise ApiError(422, "per_page must be at least 1")
    return Page(page, min(per_page, MAX_PER_PAGE))


def link_header(request: Request, page: Page, total: int) -> str | None:
    """`first`/`prev`/`next`/`last` links, as GitHub sends them; None when everything fits one page."""
    last = max(1, -(-total // page.per_page))
    if last == 1 and page.page == 1:
        return None

    def url(n: int) -> str:
        return str(request.url.include_query_params(page=n, per_page=page.per_page))

    links = []
    if page.page < last:
        links.append(f'<{url(page.page + 1)}>; rel="next"')
        links.append(f'<{url(last)}>; rel="last"')
    if page.page > 1:
        links.append(f'<{url(1)}>; rel="first"')
        links.append(f'<{url(min(page.page - 1, last))}>; rel="prev"')
    return ", ".join(links) or None
