from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base


class User(Base):
    """A person who has used the API; recorded on first sight of their token."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(80), primary_key=True)
    f_uid: Mapped[int] = mapped_column(unique=True)
    first_seen: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]
    private: Mapped[bool] = mapped_column(default=False)
    become_admin: Mapped[bool] = mapped_column(default=False)
    suspended: Mapped[bool] = mapped_column(default=False)
    suspension_message: Mapped[str | None] = mapped_column(String(512))
