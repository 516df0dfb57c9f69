"""Query parameters shared by the JSON APIs, bounded where they are declared.

Litestar validates the bounds before the handler runs (400 problem+json naming the parameter), so
``?page=99999999999999999999`` never becomes an OFFSET the database refuses, and the OpenAPI
schema at /api/schema states the range.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

MAX_PAGE = 100_000

PageNumber = Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="Page number, from 1.")]
PageSize = Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="Items per page (larger values are capped).")]
