"""The built-in Account Server ledger: organisations, units, members and products.

Only the local stack uses these tables; a cluster talks to the real Account Server.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base


class LedgerOrganisation(Base):
    __tablename__ = "ledger_organisations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    created: Mapped[dt.datetime]


class LedgerUnit(Base):
    __tablename__ = "ledger_units"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("ledger_organisations.id"))
    name: Mapped[str] = mapped_column(String(80))
    owner: Mapped[str] = mapped_column(String(80))
    personal: Mapped[bool] = mapped_column(default=False)
    created: Mapped[dt.datetime]


class LedgerUnitMember(Base):
    __tablename__ = "ledger_unit_members"

    unit_id: Mapped[str] = mapped_column(
        ForeignKey("ledger_units.id", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(String(80), primary_key=True, index=True)


class LedgerProduct(Base):
    __tablename__ = "ledger_products"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("ledger_units.id"), index=True)
    type: Mapped[str] = mapped_column(String(48))
    flavour: Mapped[str | None] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(80))
    created: Mapped[dt.datetime]
