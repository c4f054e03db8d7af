"""What every Infobip Calls API route shares besides its errors (errors.py) and auth (auth.py): the path prefix,
paging and Infobip's time format.

The wire shapes follow the official client's models (`PageInfo`); see shared/spec/vendor-apis-reference.md §1.1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Query

PATH_PREFIX = "/calls/1"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PAGE = 2**31 - 1  # page * size stays a valid SQL offset on every database


def infobip_time(moment: datetime | None) -> str | None:
    """`2024-09-18T13:36:22.000+00:00`: millisecond precision, explicit UTC offset, as Infobip writes times."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


# ---- paging -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Zero-based page number and page size, as the client sends them."""

    page: int = 0
    size: int = DEFAULT_PAGE_SIZE

    @property
    def offset(self) -> int:
        return self.page * self.size


def page_request(
    page: Annotated[int, Query(ge=0, le=MAX_PAGE, description="zero-based page number")] = 0,
    size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="results per page")] = DEFAULT_PAGE_SIZE,
) -> PageRequest:
    return PageRequest(page=page, size=size)


PageDep = Annotated[PageRequest, Depends(page_request)]


def paged(results: Sequence[Any], *, page: PageRequest, total: int) -> dict[str, Any]:
    """The `{"results": [...], "paging": PageInfo}` envelope of every list endpoint."""
    return {
        "results": list(results),
        "paging": {
            "page": page.page,
            "size": page.size,
            "totalPages": math.ceil(total / page.size) if total else 0,
            "totalResults": total,
        },
    }
