"""The provider's keys: one load shared by concurrent requests, 503 (never 401) while they cannot be
had, a short backoff after a failure, and the keys of a provider in this process read without HTTP."""

from __future__ import annotations

import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.auth.jwks import KeyStore
from shared.auth.keys import SigningKey
from shared.auth.local_keys import jwks_for
from shared.auth.verify import create_verifier
from shared.config import Settings
from shared.errors import Unauthorized, Unavailable

from . import ProviderServer


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture
def provider(tmp_path):
    server = ProviderServer(tmp_path)
    yield server
    server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """A JWKS source that fails while `down`, may be slow, and counts its calls."""

    def __init__(self, key: SigningKey, *, down: bool = False, delay: float = 0.0):
        self.key, self.down, self.delay = key, down, delay
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> dict:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.down:
            raise ConnectionRefusedError("connection refused")
        return {"keys": [self.key.public_jwk()]}


def run_together(count: int, work) -> list:
    """work() in count threads released at once; each result or raised exception, in order."""
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def one(n: int) -> None:
        barrier.wait()
        try:
            results[n] = work()
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            results[n] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return results


def test_concurrent_first_requests_share_one_load(signing_key):
    loader = Loader(signing_key, delay=0.3)
    store = KeyStore(loader, source="test")
    results = run_together(30, lambda: store.key(signing_key.kid))
    assert loader.calls == 1 and store.loads == 1
    assert all(result is results[0] and not isinstance(result, Exception) for result in results)


def test_a_hung_load_makes_waiters_answer_503_soon_not_401(signing_key):
    loader = Loader(signing_key, delay=2.0)
    store = KeyStore(loader, source="test", wait=0.2)
    started = time.monotonic()
    results = run_together(10, lambda: (store.key(signing_key.kid), time.monotonic() - started))
    waiters = [r for r in results if isinstance(r, Exception)]
    assert loader.calls == 1
    assert len(waiters) == 9 and all(isinstance(r, Unavailable) and r.status == 503 for r in waiters)
    assert all(r.headers == {"Retry-After": "1"} for r in waiters)
    loaded = [r for r in results if not isinstance(r, Exception)]
    assert len(loaded) == 1 and loaded[0][1] >= 2.0  # the loader itself got the key


def test_failed_load_is_503_with_retry_after_then_retried_after_a_short_backoff(signing_key):
    clock = Clock()
    loader = Loader(signing_key, down=True)
    store = KeyStore(loader, source="http://idp", clock=clock, retry_first=0.5, retry_max=4)
    with pytest.raises(Unavailable, match="cannot be reached: ConnectionRefusedError") as caught:
        store.key(signing_key.kid)
    assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "1"}
    # Within the backoff a valid kid is still 503, not 401, and the provider is not asked again.
    clock.now += 0.4
    with pytest.raises(Unavailable):
        store.key(signing_key.kid)
    assert loader.calls == 1
    # Once it is over, the next request tries again, and the backoff grows while the provider stays down.
    clock.now += 0.2
    with pytest.raises(Unavailable):
        store.key(signing_key.kid)
    assert loader.calls == 2
    clock.now += 0.6
    with pytest.raises(Unavailable):
        store.key(signing_key.kid)
    assert loader.calls == 2  # the second backoff is 1 s
    loader.down = False
    clock.now += 0.5
    assert store.key(signing_key.kid) is not None
    assert loader.calls == 3


def test_backoff_is_capped(signing_key):
    clock = Clock()
    loader = Loader(signing_key, down=True)
    store = KeyStore(loader, source="test", clock=clock, retry_first=0.5, retry_max=2)
    for _ in range(6):
        with pytest.raises(Unavailable) as caught:
            store.key(signing_key.kid)
        clock.now += 2.0
    assert loader.calls == 6
    assert caught.value.retry_after == 2


def test_a_load_ended_by_a_base_exception_does_not_leave_others_waiting(signing_key):
    clock = Clock()
    calls = []

    def load():
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return {"keys": [signing_key.public_jwk()]}

    store = KeyStore(load, source="test", clock=clock, wait=0.1)
    with pytest.raises(KeyboardInterrupt):
        store.key(signing_key.kid)
    with pytest.raises(Unavailable, match="interrupted"):  # not "still being fetched"
        store.key(signing_key.kid)
    clock.now += 1
    assert store.key(signing_key.kid) is not None and len(calls) == 2


def test_unknown_kid_with_keys_is_401_and_refreshes_at_most_once_per_interval(signing_key):
    clock = Clock()
    loader = Loader(signing_key)
    store = KeyStore(loader, source="test", clock=clock, refresh_interval=10)
    for _ in range(20):
        with pytest.raises(Unauthorized, match="signing key 'stranger'"):
            store.key("stranger")
    assert loader.calls == 1
    assert store.key(signing_key.kid) is not None and loader.calls == 1
    clock.now += 10
    with pytest.raises(Unauthorized):
        store.key("stranger")
    assert loader.calls == 2


def test_known_kids_keep_working_while_a_refresh_fails(signing_key):
    clock = Clock()
    loader = Loader(signing_key)
    store = KeyStore(loader, source="test", clock=clock, refresh_interval=10)
    key = store.key(signing_key.kid)
    loader.down = True
    clock.now += 11
    with pytest.raises(Unavailable):  # cannot tell whether the provider has this kid now
        store.key("rotated-in")
    assert store.key(signing_key.kid) is key
    assert loader.calls == 2


@pytest.mark.parametrize("document", [{"keys": []}, {"keys": "x"}, {}, [], "not json",
                                      {"keys": [{"kty": "RSA", "kid": "k", "n": "x", "e": "AQAB", "use": "enc"}]}])
def test_a_jwks_without_usable_keys_is_503(document):
    store = KeyStore(lambda: document, source="test")
    with pytest.raises(Unavailable):
        store.key("k")


def test_create_verifier_reads_an_in_process_provider_without_http(provider):
    assert jwks_for(provider.issuer)() == {"keys": [provider.key.public_jwk()]}
    token = provider.key.sign({"iss": provider.issuer, "aud": "data-manager-api", "typ": "Bearer",
                               "exp": int(time.time()) + 60, "preferred_username": "alice"})
    verifier = create_verifier(provider.settings)
    assert verifier.verify(f"Bearer {token}").username == "alice"
    assert provider.count("/certs") == 0 and provider.count("/openid-configuration") == 0


def test_create_verifier_fetches_another_providers_keys_over_http(provider):
    # As for a Keycloak elsewhere: no provider in this process has this issuer (same server, other name).
    elsewhere = provider.issuer.replace("127.0.0.1", "localhost")
    settings = Settings(oidc_issuer=elsewhere, data_dir=provider.settings.data_dir)
    assert jwks_for(settings.issuer) is None
    verifier = create_verifier(settings)
    assert verifier.keys.key(provider.key.kid) is not None
    assert provider.count("/openid-configuration") == 1 and provider.count("/certs") == 1


def test_many_first_requests_through_an_in_process_provider_all_pass(provider):
    tokens = [provider.key.sign({"iss": provider.issuer, "azp": "data-manager-api", "exp": int(time.time()) + 60,
                                 "preferred_username": f"user{n}"}) for n in range(40)]
    verifier = create_verifier(provider.settings)
    counter = iter(range(40))
    lock = threading.Lock()

    def verify():
        with lock:
            n = next(counter)
        return verifier.verify(f"Bearer {tokens[n]}").username

    results = run_together(40, verify)
    assert sorted(results) == sorted(f"user{n}" for n in range(40))
    assert verifier.keys.loads == 1
