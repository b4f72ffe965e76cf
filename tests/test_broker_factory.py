"""broker.factory builds one client, limiter and session per process from settings."""

from __future__ import annotations

import pytest

from broker import factory
from broker.errors import ConfigurationError
from broker.rest import SmartApiClient


@pytest.fixture(autouse=True)
def fresh_factory():
    factory.reset()
    yield
    factory.reset()


def test_redis_has_the_project_timeouts_and_decodes_responses(settings):
    connection = factory.get_redis()

    options = connection.connection_pool.connection_kwargs
    assert options["socket_timeout"] == 10
    assert options["health_check_interval"] == 10
    assert options["decode_responses"] is True
    assert connection.ping()
    assert factory.get_redis() is connection


def test_the_client_is_built_from_the_angel_settings(settings):
    settings.ANGEL_REST_URL = "http://127.0.0.1:9/"
    settings.ANGEL_API_KEY = "key-from-settings"
    settings.ANGEL_HTTP_TIMEOUT = 4.5

    client = factory.get_client()

    assert isinstance(client, SmartApiClient)
    assert client.root_url == "http://127.0.0.1:9"
    assert client.timeout[1] == 4.5
    assert client.limiter is factory.get_limiter()
    assert factory.get_client() is client


def test_missing_live_credentials_name_the_settings(settings):
    settings.ANGEL_CLIENT_CODE = None
    settings.ANGEL_TOTP_SECRET = None

    with pytest.raises(ConfigurationError) as caught:
        factory.get_session()

    assert "ANGEL_CLIENT_CODE" in str(caught.value)
    assert "ANGEL_TOTP_SECRET" in str(caught.value)
    assert "ANGEL_PIN" not in str(caught.value)


def test_reset_drops_the_cached_objects(settings):
    first = factory.get_redis()

    factory.reset()

    assert factory.get_redis() is not first


def test_new_client_builds_an_unlimited_variant_on_request(settings):
    shared = factory.get_client()

    own = factory.new_client(limited=False, read_retries=0)

    assert own is not shared and own.limiter is None and own.read_retries == 0
    assert own.mac == shared.mac and own.client_public_ip == shared.client_public_ip
