"""What the built-in ledger charges: billing periods, storage units and the coins a product used.

The rule (as-api.md §2.1, §3.4):

* A product's **used coins** in a billing period are its **processing coins** plus its
  **storage coins**. Processing coins are the sum of the processing charges the ledger
  received for the product during the period (charges simply add up: the DM sends the
  difference since its last charge). Storage coins are, for every day of the period up to
  and including today, the day's peak in whole storage units (``STORAGE_UNIT_BYTES``, a part
  unit counting as a whole one) times ``STORAGE_UNIT_COST`` coins.
* A day's peak is the sum, over the payer's storage items (a project, a dataset: the
  charge's name), of the largest size reported for each item that UTC day.
* A dataset-storage subscription also pays for the storage charged to its unit (reason
  ``DATASET``): the unit's oldest dataset-storage product is the one that pays.
* Today's storage counts at once (the real AS adds it at the day's end), so a limit takes
  effect as soon as a charge crosses it: ``at_limit`` is ``used >= limit``.
* Every coin is charged at face value: both multipliers are 1.
* A billing period runs from the unit's ``billing_day`` of one month (inclusive) to the same
  day of the next (exclusive); ``pbp`` = -n is the period n months before the current one.

Project-tier products have built-in allowances and limits per flavour (``FLAVOURS``); the
reference leaves them to the implementation (as-api.md §2.1).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Iterable

from shared.account_server.base import DATASET_STORAGE
from shared.errors import BadRequest

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.db.models import LedgerProduct, LedgerUnit

STORAGE_UNIT_BYTES = 1024**3  # 1 GiB: the DM documents it as the smallest billable size
STORAGE_UNIT_COST = Decimal("1")  # coins per storage unit (or part thereof) per day
# flavour: (allowance, limit) in coins per billing period
FLAVOURS = {"EVALUATION": (100, 100), "BRONZE": (1000, 2000), "SILVER": (5000, 10000), "GOLD": (25000, 50000)}
STORAGE_DEFAULT_ALLOWANCE = 1000  # what the DM UI pre-fills for a storage subscription
OLDEST_PBP = -23


def allowance_and_limit(product: "LedgerProduct") -> tuple[int, int]:
    """The product's coin allowance and limit per billing period."""
    built_in = FLAVOURS.get(product.flavour or "", (STORAGE_DEFAULT_ALLOWANCE, STORAGE_DEFAULT_ALLOWANCE))
    allowance = product.allowance if product.allowance is not None else built_in[0]
    limit = product.coin_limit if product.coin_limit is not None else max(built_in[1], allowance)
    return allowance, limit


# --- billing periods -----------------------------------------------------------------------


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, day.day)  # billing days are 1–28: always valid


def billing_period(billing_day: int, today: dt.date, pbp: int = 0) -> tuple[dt.date, dt.date]:
    """The period (from inclusive, until exclusive) holding ``today``, moved ``pbp`` periods back."""
    start = dt.date(today.year, today.month, billing_day)
    if today.day < billing_day:
        start = _add_months(start, -1)
    start = _add_months(start, pbp)
    return start, _add_months(start, 1)


_DATE_FORMATS = ("%Y-%m-%d", "%d %B %Y", "%d %b %Y", "%B %d %Y", "%b %d %Y", "%B %d, %Y", "%b %d, %Y",
                 "%d/%m/%Y", "%Y/%m/%d", "%d-%m-%Y", "%d %B", "%d %b")


def parse_date(text: str, name: str, today: dt.date) -> dt.date:
    """A charge query's date, parsed leniently (``2021-12-01``, ``1 December 2021``, ``Dec 1 2021``)."""
    cleaned = " ".join(text.replace("_", " ").split())
    try:
        return dt.datetime.fromisoformat(cleaned).date()
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            parsed = dt.datetime.strptime(cleaned, fmt).date()
        except ValueError:
            continue
        return parsed.replace(year=today.year) if "%Y" not in fmt else parsed
    raise BadRequest(f"'{text[:40]}' is not a date {name} understands (e.g. 2021-12-01 or 1 December 2021)")


@dataclass(frozen=True)
class Window:
    """What a charge query asked for: explicit dates, or a billing period per unit."""

    start: dt.date | None
    until: dt.date | None
    pbp: int

    @classmethod
    def of(cls, args, today: dt.date) -> "Window":
        """From the ``from``, ``until`` and ``pbp`` query parameters."""
        start = parse_date(args["from"], "from", today) if args.get("from") else None
        until = parse_date(args["until"], "until", today) if args.get("until") else None
        pbp = 0
        if args.get("pbp"):
            try:
                pbp = int(args["pbp"])
            except ValueError:
                raise BadRequest("'pbp' must be a whole number from 0 to -23") from None
            if not OLDEST_PBP <= pbp <= 0:
                raise BadRequest("'pbp' must be from 0 (the current billing period) to -23")
        if start and until and until <= start:
            raise BadRequest("'until' must come after 'from'")
        return cls(start, until, pbp)

    def for_unit(self, billing_day: int, today: dt.date) -> tuple[dt.date, dt.date]:
        period_start, period_until = billing_period(billing_day, today, self.pbp)
        start, until = self.start or period_start, self.until or period_until
        if start >= until:  # one end given, beyond the period's other end
            if self.start is None:
                start = _add_months(until, -1)
            else:
                until = _add_months(start, 1)
        return start, until


# --- money -------------------------------------------------------------------------------------


def decimal(text: str) -> Decimal | None:
    """A finite decimal from text, or None."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        return None
    return value if value.is_finite() else None


def money(value: Decimal) -> str:
    """Coins as the AS writes them in charge records: a decimal string without exponent."""
    text = format(value.normalize(), "f") if value else "0"
    return text


def number(value: Decimal | int) -> int | float:
    """Coins as a JSON number (ProductCoinsDetail)."""
    if isinstance(value, int):
        return value
    return int(value) if value == value.to_integral_value() else float(round(value, 6))


def storage_units(peak_bytes: int) -> int:
    return -(-peak_bytes // STORAGE_UNIT_BYTES) if peak_bytes > 0 else 0


# --- usage -----------------------------------------------------------------------------------


@dataclass
class ProcessingGroup:
    """The processing charges of one authorisation code (one instance)."""

    auth_code: int
    charges: list = field(default_factory=list)  # LedgerProcessingCharge, by sqn

    @property
    def coins(self) -> Decimal:
        return sum((decimal(c.coins) or Decimal(0) for c in self.charges), Decimal(0))


@dataclass
class Usage:
    """A product's (or a payer set's) charges in one window."""

    start: dt.date
    until: dt.date
    processing: list[ProcessingGroup]
    days: dict[dt.date, int]  # day: peak bytes (summed over items)
    today_current: int = 0

    @property
    def processing_coins(self) -> Decimal:
        return sum((g.coins for g in self.processing), Decimal(0))

    def day_coins(self, day: dt.date) -> Decimal:
        return storage_units(self.days.get(day, 0)) * STORAGE_UNIT_COST

    @property
    def storage_coins(self) -> Decimal:
        return sum((self.day_coins(day) for day in self.days), Decimal(0))

    @property
    def coins(self) -> Decimal:
        return self.processing_coins + self.storage_coins


def payers_of(s: "Session", product: "LedgerProduct") -> list[str]:
    """Whose storage charges a product pays: its own, and its unit's when it is the unit's
    (oldest) dataset-storage subscription."""
    from sqlalchemy import select

    from shared.db.models import LedgerProduct

    payers = [product.id]
    if product.type == DATASET_STORAGE:
        oldest = s.scalar(select(LedgerProduct.id).where(LedgerProduct.unit_id == product.unit_id,
                                                         LedgerProduct.type == DATASET_STORAGE)
                          .order_by(LedgerProduct.created, LedgerProduct.id).limit(1))
        if oldest == product.id:
            payers.append(product.unit_id)
    return payers


def usage(s: "Session", payers: Iterable[str], start: dt.date, until: dt.date, today: dt.date) -> Usage:
    """The processing and storage charges of ``payers`` from ``start`` (inclusive) to ``until``
    (exclusive); storage days after ``today`` have none yet."""
    from sqlalchemy import select

    from shared.db.models import LedgerProcessingCharge, LedgerStorageCharge

    payers = list(payers)
    begin = dt.datetime.combine(start, dt.time.min, tzinfo=dt.timezone.utc)
    end = dt.datetime.combine(until, dt.time.min, tzinfo=dt.timezone.utc)
    groups: dict[int, ProcessingGroup] = {}
    for charge in s.scalars(select(LedgerProcessingCharge)
                            .where(LedgerProcessingCharge.product_id.in_(payers),
                                   LedgerProcessingCharge.received >= begin, LedgerProcessingCharge.received < end)
                            .order_by(LedgerProcessingCharge.auth_code, LedgerProcessingCharge.sqn)):
        groups.setdefault(charge.auth_code, ProcessingGroup(charge.auth_code)).charges.append(charge)
    days: dict[dt.date, int] = {}
    current = 0
    for row in s.scalars(select(LedgerStorageCharge)
                         .where(LedgerStorageCharge.payer_id.in_(payers), LedgerStorageCharge.day >= start,
                                LedgerStorageCharge.day < until)):
        days[row.day] = days.get(row.day, 0) + row.peak_bytes
        if row.day == today:
            current += row.current_bytes
    ordered = sorted(groups.values(), key=lambda g: g.charges[0].id)
    return Usage(start, until, ordered, dict(sorted(days.items())), current)


@dataclass(frozen=True)
class ProductCoins:
    """A product's coins in its current billing period."""

    allowance: int
    limit: int
    usage: Usage
    today: dt.date

    @property
    def used(self) -> Decimal:
        return self.usage.coins

    @property
    def at_limit(self) -> bool:
        return self.used >= self.limit

    @property
    def elapsed_days(self) -> int:
        return (self.today - self.usage.start).days + 1

    @property
    def remaining_days(self) -> int:
        return (self.usage.until - self.today).days - 1

    @property
    def burn_rate(self) -> Decimal:
        return self.used / self.elapsed_days

    @property
    def storage_today(self) -> Decimal:
        return self.usage.day_coins(self.today)

    @property
    def prediction(self) -> Decimal:
        return self.used + self.burn_rate * self.remaining_days

    @property
    def storage_prediction(self) -> Decimal:
        return self.usage.storage_coins + self.storage_today * self.remaining_days


def product_coins(s: "Session", product: "LedgerProduct", unit: "LedgerUnit", today: dt.date) -> ProductCoins:
    """The product's allowance, limit and usage in the billing period holding ``today``."""
    start, until = billing_period(unit.billing_day, today)
    allowance, limit = allowance_and_limit(product)
    return ProductCoins(allowance, limit, usage(s, payers_of(s, product), start, until, today), today)
