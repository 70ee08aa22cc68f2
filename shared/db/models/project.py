from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db.base import Base

ROLES = ("administrator", "editor", "observer")


class Project(Base):
    """A space of files. A deleted Project keeps its row (name_key cleared) until purged."""

    __tablename__ = "projects"
    # name_key is the name while the Project is live and NULL once deleted, so a
    # deleted Project's name is free again (NULLs never collide in a unique key).
    __table_args__ = (UniqueConstraint("unit_id", "name_key"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    name_key: Mapped[str | None] = mapped_column(String(80))
    creator: Mapped[str] = mapped_column(String(80))
    created: Mapped[dt.datetime]
    private: Mapped[bool] = mapped_column(default=False)
    product_id: Mapped[str] = mapped_column(String(64))
    product_flavour: Mapped[str | None] = mapped_column(String(32))
    unit_id: Mapped[str] = mapped_column(String(64))
    organisation_id: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    deleted: Mapped[dt.datetime | None] = mapped_column(index=True)

    members: Mapped[list["ProjectMember"]] = relationship(
        back_populates="project", cascade="all, delete-orphan", lazy="raise"
    )


class ProjectMember(Base):
    __tablename__ = "project_members"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(String(80), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)

    project: Mapped[Project] = relationship(back_populates="members", lazy="raise")


class ProjectToken(Base):
    """A callback token that lets its bearer download from one Project without signing in."""

    __tablename__ = "project_tokens"

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    created: Mapped[dt.datetime]
    instance_id: Mapped[str | None] = mapped_column(String(64))
