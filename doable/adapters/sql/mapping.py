"""The typed way from a SQLModel table model to its Table."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlmodel import SQLModel


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Table a `table=True` model maps. SQLModel's metaclass sets `__table__` where type checkers
    cannot see it; the mapper names the same Table, and a table model's local table is a Table."""
    return cast(sa.Table, sa.inspect(model).local_table)
