from __future__ import annotations

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base


class ChangeCounter(Base):
    """A number bumped in every transaction that changes a kind of data.

    Readers compare it to tell whether what they built earlier is still current.
    """

    __tablename__ = "change_counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
