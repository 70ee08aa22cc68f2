"""The one check of integers from callers against the database's columns."""

import pytest

from shared.db import integers
from shared.errors import BadRequest, NotFound


@pytest.mark.parametrize("text,number", [("0", 0), ("42", 42), ("+7", 7), ("-3", -3), ("007", 7),
                                         ("0" * 50 + "5", 5), ("9" * 40, 10**30)])
def test_parse_reads_ascii_whole_numbers(text, number):
    assert integers.parse(text) == number


@pytest.mark.parametrize("text", ["", " ", "1.0", "1e3", "0x10", "١", "12३", "²", "--1", "1_000", None, 5])
def test_parse_refuses_anything_else(text):
    assert integers.parse(text) is None


def test_path_ids_fit_32_bit_keys_and_use_ascii_digits():
    assert integers.path_id("2147483647") == integers.INT32_MAX
    for text in ("2147483648", str(2**63), str(2**64), "١", "-1", "+1", "", "1" * 5000):
        assert integers.path_id(text) is None, text
    assert integers.path_id("0", minimum=1) is None


def test_a_record_id_that_is_not_a_number_is_400_and_one_too_large_is_404():
    assert integers.id_of("service error", "12", minimum=1) == 12
    for text in ("x", "١", "-1", "1.5"):
        with pytest.raises(BadRequest, match="whole number"):
            integers.id_of("service error", text)
    for text in (str(2**31), str(2**64)):
        with pytest.raises(NotFound, match="service error"):
            integers.id_of("service error", text)


def test_parameters_name_themselves_and_their_range():
    assert integers.parameter("n", "5") == 5 and integers.parameter("n", 5) == 5
    with pytest.raises(BadRequest, match="'n' parameter must be at most 2147483647"):
        integers.parameter("n", str(2**64))
    with pytest.raises(BadRequest, match="'n' parameter must be at least 1"):
        integers.parameter("n", "0", minimum=1)
    with pytest.raises(BadRequest, match="'n' parameter must be at most 9"):
        integers.parameter("n", 10, maximum=9)
    for value in ("١", "1.5", True, 1.0, None, "9" * 5000):
        with pytest.raises(BadRequest, match="'n' parameter must be"):
            integers.parameter("n", value)


def test_fits():
    assert integers.fits(0) and integers.fits(integers.INT32_MAX)
    assert not integers.fits(-1) and not integers.fits(2**31) and not integers.fits(True)
    assert not integers.fits("1") and integers.fits(2**63 - 1, maximum=integers.INT64_MAX)
