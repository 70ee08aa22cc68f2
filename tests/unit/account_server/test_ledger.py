"""The built-in ledger on its database (SQLite and PostgreSQL): charges over days and billing
periods, and the authorisations that follow the coins."""

import datetime as dt

import pytest

from shared.account_server import coins
from shared.account_server.base import TEST_PRODUCT_ID
from shared.account_server.receiver import record_processing, record_storage
from shared.auth.verify import Principal
from shared.errors import Forbidden, NotFound, PermanentFailure, Unsupported

GIB = 1024**3
ALICE = Principal("alice", frozenset(), False, "token")
BOB = Principal("bob", frozenset(), False, "token")


@pytest.fixture
def ledger(db_url):
    from shared.account_server.ledger import LedgerAccountServer
    from shared.config import Settings
    from shared.db.session import get_engine, transaction

    server = LedgerAccountServer(Settings(database_url=db_url), get_engine(db_url))
    with transaction(server.engine) as s:
        server.units = {u: server.ensure_personal_unit(s, u) for u in ("alice", "bob")}
    return server


def at(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.timezone.utc)


def storage_message(size: str, product: str, name: str = "P"):
    from shared.messages.merchant_storage_charge_message_pb2 import MerchantStorageChargeMessage

    return MerchantStorageChargeMessage(reason=2, name=name, bytes=size, product=product, user="alice")


def processing_message(product: str, coins_: str, sqn: int = 1, auth_code: int = 5):
    from shared.messages.merchant_processing_charge_message_pb2 import MerchantProcessingChargeMessage

    return MerchantProcessingChargeMessage(auth_code=auth_code, sqn=sqn, coins=coins_, product=product, user="alice")


def usage(ledger, product_id: str, today: dt.date):
    from shared.db.models import LedgerProduct, LedgerUnit
    from shared.db.session import transaction

    with transaction(ledger.engine, readonly=True) as s:
        product = s.get(LedgerProduct, product_id)
        return coins.product_coins(s, product, s.get(LedgerUnit, product.unit_id), today)


def record(ledger, fn, message, when):
    from shared.db.session import transaction

    with transaction(ledger.engine) as s:
        return fn(s, message, now=when)


def test_each_day_keeps_its_own_peak_and_deltas_carry_over(ledger):
    product = ledger.units["alice"]["project_tier_product_id"]
    today = dt.datetime.now(dt.timezone.utc).date()
    yesterday = today - dt.timedelta(1)
    record(ledger, record_storage, storage_message(f"{3 * GIB:,}", product), at(yesterday, 1))
    record(ledger, record_storage, storage_message(f"{GIB:,}", product), at(yesterday, 2))
    record(ledger, record_storage, storage_message(f"+{GIB // 2:,}", product), at(today, 1))  # from yesterday's 1 GiB
    record(ledger, record_storage, storage_message(f"{GIB:,}", product, name="Q"), at(today, 2))  # another item
    found = usage(ledger, product, today)
    days = found.usage.days
    if yesterday >= found.usage.start:  # today may open a billing period
        assert days[yesterday] == 3 * GIB
    assert days[today] == GIB + GIB // 2 + GIB and found.usage.today_current == GIB + GIB // 2 + GIB
    assert found.storage_today == 3  # 2.5 GiB -> 3 units


def test_charges_of_an_earlier_billing_period_do_not_count(ledger):
    product = ledger.units["alice"]["project_tier_product_id"]
    today = dt.datetime.now(dt.timezone.utc).date()
    start, _ = coins.billing_period(1, today)
    record(ledger, record_processing, processing_message(product, "500", sqn=1), at(start - dt.timedelta(1)))
    record(ledger, record_storage, storage_message(f"{GIB:,}", product), at(start - dt.timedelta(1)))
    record(ledger, record_processing, processing_message(product, "2.5", sqn=2), at(today))
    found = usage(ledger, product, today)
    assert found.used == 2.5 and found.usage.processing_coins == 2.5 and not found.at_limit


def test_a_processing_charge_is_recorded_once(ledger):
    product = ledger.units["alice"]["project_tier_product_id"]
    now = dt.datetime.now(dt.timezone.utc)
    assert record(ledger, record_processing, processing_message(product, "3"), now) is True
    assert record(ledger, record_processing, processing_message(product, "3"), now) is False
    with pytest.raises(PermanentFailure, match="different content"):
        record(ledger, record_processing, processing_message(product, "4"), now)
    with pytest.raises(PermanentFailure, match="longer than 64"):
        record(ledger, record_processing, processing_message("p" * 65, "4", sqn=9), now)
    assert usage(ledger, product, now.date()).used == 3


def test_authorisations_follow_the_coins(ledger):
    product = ledger.units["alice"]["project_tier_product_id"]
    storage_product = ledger.units["alice"]["dataset_storage_product_id"]
    assert ledger.authorise_processing(ALICE, product) > 0
    assert ledger.authorise_dataset_storage(ALICE, ledger.units["alice"]["unit_id"]) > 0
    with pytest.raises(Unsupported):
        ledger.authorise_processing(ALICE, storage_product)
    with pytest.raises(NotFound):
        ledger.check_not_at_limit(ALICE, "product-00000000-0000-0000-0000-000000000000")
    with pytest.raises(Forbidden):
        ledger.authorise_dataset_storage(BOB, ledger.units["alice"]["unit_id"])
    ledger.check_not_at_limit(ALICE, TEST_PRODUCT_ID)  # the administrators' test product has no ledger row
    record(ledger, record_processing, processing_message(product, "2000"), dt.datetime.now(dt.timezone.utc))
    with pytest.raises(Forbidden, match="coin limit"):
        ledger.authorise_processing(ALICE, product)
    with pytest.raises(Forbidden, match="coin limit"):
        ledger.check_not_at_limit(ALICE, product)
    ledger.check_not_at_limit(ALICE, storage_product)  # its own limit, its own coins
