"""The in-process registry of a local provider's keys: the latest publication wins, and one made
inside ``kept`` lasts only as long as the block."""

from shared.auth import local_keys


def test_kept_publications_last_only_their_block():
    issuer, other = "http://keys.test/realms/a", "http://keys.test/realms/b"
    first, second, third = (lambda: {"keys": [1]}), (lambda: {"keys": [2]}), (lambda: {"keys": [3]})
    with local_keys.kept():  # this test leaves the registry as it found it
        local_keys.publish(issuer, first)
        assert local_keys.jwks_for(issuer) is first and local_keys.jwks_for(other) is None
        with local_keys.kept():
            local_keys.publish(issuer, second)
            local_keys.publish(other, third)
            assert local_keys.jwks_for(issuer) is second and local_keys.jwks_for(other) is third
        assert local_keys.jwks_for(issuer) is first and local_keys.jwks_for(other) is None
    assert local_keys.jwks_for(issuer) is None
