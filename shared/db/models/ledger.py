"""The built-in Account Server ledger: organisations, units, members, products and the charges
the Data Manager sends them.

Only the local stack uses these tables; a cluster talks to the real Account Server.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base

DEFAULT_PRIVACY = "DEFAULT_PRIVATE"


class LedgerOrganisation(Base):
    __tablename__ = "ledger_organisations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    created: Mapped[dt.datetime]
    owner: Mapped[str | None] = mapped_column(String(80))  # none for the Default Organisation
    default_product_privacy: Mapped[str] = mapped_column(String(16), default=DEFAULT_PRIVACY,
                                                         server_default=DEFAULT_PRIVACY)


class LedgerOrganisationMember(Base):
    __tablename__ = "ledger_organisation_members"

    organisation_id: Mapped[str] = mapped_column(
        ForeignKey("ledger_organisations.id", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(String(80), primary_key=True, index=True)


class LedgerUnit(Base):
    __tablename__ = "ledger_units"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("ledger_organisations.id"))
    name: Mapped[str] = mapped_column(String(80))
    owner: Mapped[str] = mapped_column(String(80))
    personal: Mapped[bool] = mapped_column(default=False)
    created: Mapped[dt.datetime]
    billing_day: Mapped[int] = mapped_column(default=1, server_default="1")  # 1–28
    default_product_privacy: Mapped[str] = mapped_column(String(16), default=DEFAULT_PRIVACY,
                                                         server_default=DEFAULT_PRIVACY)


class LedgerUnitMember(Base):
    """A member of a unit; the owner has a row too (the REST API does not list it)."""

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
    # coins per billing period; NULL: the flavour's built-in values (shared.account_server.coins)
    allowance: Mapped[int | None] = mapped_column(BigInteger)
    coin_limit: Mapped[int | None] = mapped_column(BigInteger)


class LedgerProcessingCharge(Base):
    """One processing charge as the merchant sent it, once per (auth_code, sqn)."""

    __tablename__ = "ledger_processing_charges"
    __table_args__ = (UniqueConstraint("auth_code", "sqn"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    auth_code: Mapped[int] = mapped_column(BigInteger)
    sqn: Mapped[int] = mapped_column(BigInteger)
    eoc: Mapped[bool] = mapped_column(default=False)
    coins: Mapped[str] = mapped_column(String(40))  # a decimal, as sent
    name: Mapped[str] = mapped_column(Text)
    username: Mapped[str] = mapped_column(Text)
    product_id: Mapped[str | None] = mapped_column(String(64), index=True)
    unit_id: Mapped[str | None] = mapped_column(String(64), index=True)
    organisation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    merchant_kind: Mapped[str] = mapped_column(Text)
    merchant_name: Mapped[str] = mapped_column(Text)
    merchant_id: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[str] = mapped_column(Text)  # the merchant's, verbatim
    received: Mapped[dt.datetime] = mapped_column(index=True)  # places the charge in a billing period
    additional_data: Mapped[str | None] = mapped_column(Text)  # verbatim
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the message without its timestamp


class LedgerStorageCharge(Base):
    """A payer's storage for one reason and item (the charge's name) on one UTC day: the size
    last reported and the day's peak, in bytes."""

    __tablename__ = "ledger_storage_charges"

    payer_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # product-…, unit-… or org-…
    reason: Mapped[str] = mapped_column(String(16), primary_key=True)  # PROJECT, DATASET or UNSPECIFIED
    item: Mapped[str] = mapped_column(String(256), primary_key=True)
    day: Mapped[dt.date] = mapped_column(primary_key=True)
    current_bytes: Mapped[int] = mapped_column(BigInteger)
    peak_bytes: Mapped[int] = mapped_column(BigInteger)
    username: Mapped[str | None] = mapped_column(String(80))
    auth_code: Mapped[int] = mapped_column(BigInteger, default=0)
    updated: Mapped[dt.datetime]
    additional_data: Mapped[str | None] = mapped_column(Text)  # the last charge's, verbatim
