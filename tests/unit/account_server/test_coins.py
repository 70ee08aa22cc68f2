"""The ledger's arithmetic: billing periods, charge windows, storage units, money, byte counts."""

import datetime as dt
import json
from decimal import Decimal

import pytest

from shared.account_server import coins
from shared.account_server.receiver import digest, parse_bytes
from shared.account_server.shapes import additional_data, humanised
from shared.errors import BadRequest, PermanentFailure

D = dt.date


@pytest.mark.parametrize("billing_day, today, pbp, expected", [
    (1, D(2026, 12, 5), 0, (D(2026, 12, 1), D(2027, 1, 1))),
    (10, D(2026, 12, 5), 0, (D(2026, 11, 10), D(2026, 12, 10))),
    (10, D(2026, 12, 10), 0, (D(2026, 12, 10), D(2027, 1, 10))),
    (28, D(2026, 1, 3), 0, (D(2025, 12, 28), D(2026, 1, 28))),
    (15, D(2026, 3, 20), -1, (D(2026, 2, 15), D(2026, 3, 15))),
    (15, D(2026, 3, 20), -23, (D(2024, 4, 15), D(2024, 5, 15))),
])
def test_a_billing_period_runs_from_the_billing_day_to_the_same_day_a_month_on(billing_day, today, pbp, expected):
    assert coins.billing_period(billing_day, today, pbp) == expected


@pytest.mark.parametrize("text, expected", [
    ("2021-12-01", D(2021, 12, 1)), ("1 December 2021", D(2021, 12, 1)), ("1 Dec 2021", D(2021, 12, 1)),
    ("December 1 2021", D(2021, 12, 1)), ("Dec 1, 2021", D(2021, 12, 1)), ("2021-12-01T10:00:00", D(2021, 12, 1)),
    ("01/12/2021", D(2021, 12, 1)), ("  1   December   2021 ", D(2021, 12, 1)), ("3 March", D(2026, 3, 3)),
])
def test_charge_dates_are_read_leniently(text, expected):
    assert coins.parse_date(text, "from", D(2026, 12, 5)) == expected


def test_a_window_is_the_billing_period_unless_dates_are_given():
    today = D(2026, 12, 5)
    assert coins.Window.of({}, today).for_unit(3, today) == (D(2026, 12, 3), D(2027, 1, 3))
    assert coins.Window.of({"pbp": "-2"}, today).for_unit(3, today) == (D(2026, 10, 3), D(2026, 11, 3))
    assert coins.Window.of({"from": "2026-12-04"}, today).for_unit(3, today) == (D(2026, 12, 4), D(2027, 1, 3))
    assert coins.Window.of({"from": "2027-02-01"}, today).for_unit(3, today) == (D(2027, 2, 1), D(2027, 3, 1))
    assert coins.Window.of({"until": "2026-01-01"}, today).for_unit(3, today) == (D(2025, 12, 1), D(2026, 1, 1))
    with pytest.raises(BadRequest):
        coins.Window.of({"from": "2026-12-04", "until": "2026-12-04"}, today)
    for pbp in ("1", "-24", "soon"):
        with pytest.raises(BadRequest):
            coins.Window.of({"pbp": pbp}, today)


def test_storage_is_billed_in_whole_units():
    gib = coins.STORAGE_UNIT_BYTES
    assert [coins.storage_units(n) for n in (0, 1, gib - 1, gib, gib + 1, 3 * gib)] == [0, 1, 1, 1, 2, 3]


def test_money_is_a_plain_decimal_string_and_coins_a_number():
    assert [coins.money(Decimal(v)) for v in ("0", "0.00", "10.50", "100", "1E+3", "0.000001")] == [
        "0", "0", "10.5", "100", "1000", "0.000001"]
    assert coins.number(Decimal("15.0")) == 15 and coins.number(Decimal("2.5")) == 2.5
    assert coins.decimal("12.5") == Decimal("12.5")
    assert coins.decimal("NaN") is None and coins.decimal("Infinity") is None and coins.decimal("ten") is None


def test_flavours_have_built_in_allowances_and_limits():
    class Product:
        flavour, allowance, coin_limit = "GOLD", None, None

    assert coins.allowance_and_limit(Product()) == coins.FLAVOURS["GOLD"]
    Product.allowance, Product.coin_limit = 30000, 60000
    assert coins.allowance_and_limit(Product()) == (30000, 60000)
    Product.flavour, Product.allowance, Product.coin_limit = None, 50, None
    assert coins.allowance_and_limit(Product()) == (50, 1000)


@pytest.mark.parametrize("text, expected", [
    ("2,045,023", (2045023, False)), ("0", (0, False)), ("12345", (12345, False)),
    ("+4,096", (4096, True)), ("-4,096", (-4096, True)), (" 7 ", (7, False)),
])
def test_byte_counts_are_absolute_or_deltas(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "1,2", "12,34", "1.5", "+-1", "ten", "1 000"])
def test_other_byte_counts_are_refused(text):
    with pytest.raises(PermanentFailure):
        parse_bytes(text)


def test_a_charges_digest_ignores_only_its_timestamp():
    from shared.messages.merchant_processing_charge_message_pb2 import MerchantProcessingChargeMessage

    one = MerchantProcessingChargeMessage(timestamp="a", auth_code=1, sqn=1, coins="1")
    assert digest(one) == digest(MerchantProcessingChargeMessage(timestamp="b", auth_code=1, sqn=1, coins="1"))
    assert digest(one) != digest(MerchantProcessingChargeMessage(timestamp="a", auth_code=1, sqn=1, coins="2"))
    assert one.timestamp == "a"  # the message itself is left alone


def test_additional_data_reads_json_or_a_python_dict():
    assert additional_data(json.dumps({"a": 1})) == {"a": 1}
    assert additional_data("{'a': '1', 'b': None}") == {"a": "1", "b": None}
    assert additional_data("just text") == {"text": "just text"}
    assert additional_data("[1, 2]") == {"text": "[1, 2]"}
    assert additional_data("") is None


def test_sizes_for_people():
    assert [humanised(n) for n in (0, 1023, 1024, 1536 * 1024, 1024**3)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 MiB", "1.0 GiB"]
