"""Signed events: what the signature covers, and the ledger refusing what its senders did not sign."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.events import signing, wire
from shared.events.contracts import ProcessingCharge

KEY = b"k" * 32


def charge_event(**extra) -> wire.WireEvent:
    from shared.messages.merchant_processing_charge_message_pb2 import MerchantProcessingChargeMessage

    message = MerchantProcessingChargeMessage(auth_code=7, sqn=1, coins="1.5", user="alice")
    return wire.event_of(ProcessingCharge(message), **extra)


def test_a_signed_event_is_recognised_and_survives_the_wire():
    signed = signing.sign(charge_event(), KEY)
    headers, body = wire.to_http(signed)
    assert headers["ce-" + signing.ATTRIBUTE] == signed.attributes[signing.ATTRIBUTE]
    assert signing.is_signed(wire.from_http(headers, body), KEY)
    assert not signing.is_signed(signed, b"another key")
    assert signing.sign(charge_event(), None).attributes.get(signing.ATTRIBUTE) is None


@pytest.mark.parametrize("change", [
    lambda e: wire.WireEvent(e.attributes, (e.data or b"") + b"\x00"),
    lambda e: e.with_attributes(type="dm.something.else"),
    lambda e: e.with_attributes(id="another-id"),
    lambda e: e.with_attributes(subject="another/subject"),
    lambda e: e.with_attributes(source="/somewhere/else"),
    lambda e: e.with_attributes(datacontenttype="application/json"),
])
def test_the_signature_covers_what_a_consumer_acts_on(change):
    assert not signing.is_signed(change(signing.sign(charge_event(), KEY)), KEY)


def test_re_signing_replaces_a_forged_attribute():
    forged = charge_event().with_attributes(**{signing.ATTRIBUTE: "0" * 64})
    assert signing.is_signed(signing.sign(forged, KEY), KEY)


def test_the_local_key_is_made_once_and_kept_private(tmp_path):
    first = signing.local_key(tmp_path)
    assert first == signing.local_key(tmp_path) and len(first) == 64
    assert (tmp_path / "auth" / signing.KEY_FILE).stat().st_mode & 0o077 == 0
    assert signing.key_of(Settings(data_dir=tmp_path)) == first.encode()
    assert signing.key_of(Settings(data_dir=tmp_path, event_signing_key="set")) == b"set"
    assert signing.key_of(Settings(data_dir=tmp_path / "none")) is None
    assert "s3cr3t" not in repr(Settings(event_signing_key="s3cr3t"))  # a value no field name holds
