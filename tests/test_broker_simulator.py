"""The adapter end to end against the simulated Angel One (simulator/), over real HTTP."""

from __future__ import annotations

import pytest

from broker.errors import AmbiguousError, RateLimitedError
from broker.limiter import RateLimiter
from broker.rest import SmartApiClient
from broker.scrip_master import ScripMaster
from broker.session import BrokerSession

simulator_testing = pytest.importorskip("simulator.testing")
sim_config = pytest.importorskip("simulator.config")

ORDER = {
    "variety": "NORMAL",
    "tradingsymbol": "SBIN-EQ",
    "symboltoken": "3045",
    "transactiontype": "BUY",
    "exchange": "NSE",
    "ordertype": "MARKET",
    "producttype": "INTRADAY",
    "duration": "DAY",
    "price": 0,
    "quantity": 1,
}


@pytest.fixture(scope="module")
def sim():
    running = simulator_testing.start_simulator()
    yield running
    running.stop()


def make_client(sim, connection, *, limited: bool = True, **kw) -> SmartApiClient:
    return SmartApiClient(
        sim.rest_url,
        sim_config.DEMO_API_KEY,
        timeout=kw.pop("timeout", 3.0),
        limiter=RateLimiter(connection) if limited else None,
        client_local_ip="127.0.0.1",
        client_public_ip="127.0.0.1",
        mac="aa:bb:cc:dd:ee:ff",
        **kw,
    )


def make_session(sim, connection, **kw) -> BrokerSession:
    return BrokerSession(
        make_client(sim, connection, **kw),
        connection,
        sim_config.DEMO_CLIENT_CODE,
        sim_config.DEMO_PIN,
        sim_config.DEMO_TOTP_SECRET,
        3600.0,
    )


def test_it_logs_in_places_an_order_and_finds_it_by_tag(sim, connection):
    session = make_session(sim, connection)

    placed = session.call_with_session(
        lambda client: client.place_order({**ORDER, "ordertag": "tb-int-1"})
    )
    book = session.call_with_session(lambda client: client.get_order_book())
    details = session.call_with_session(
        lambda client: client.order_details(placed["uniqueorderid"])
    )

    assert placed["orderid"] and placed["uniqueorderid"]
    assert [o["orderid"] for o in book if o.get("ordertag") == "tb-int-1"] == [placed["orderid"]]
    assert details["uniqueorderid"] == placed["uniqueorderid"]


def test_a_lost_order_answer_is_ambiguous_and_the_order_is_found_by_tag(sim, connection):
    session = make_session(sim, connection)
    session.current()
    sim.fault("lose_order_response", route="placeOrder", mode="drop")

    with pytest.raises(AmbiguousError):
        session.call_with_session(
            lambda client: client.place_order({**ORDER, "ordertag": "tb-int-lost"})
        )
    book = session.call_with_session(lambda client: client.get_order_book())

    assert [o["ordertag"] for o in book].count("tb-int-lost") == 1


def test_expired_sessions_are_renewed_transparently(sim, connection):
    session = make_session(sim, connection)
    before = session.current()
    sim.fault("expire_sessions")

    profile = session.call_with_session(lambda client: client.get_profile())

    assert profile["clientcode"] == sim_config.DEMO_CLIENT_CODE
    assert session.current().jwt != before.jwt


def test_the_shared_limiter_keeps_us_under_the_simulators_limits(sim, connection):
    session = make_session(sim, connection)
    unlimited = make_session(sim, connection, limited=False, read_retries=0)

    books = [session.call_with_session(lambda c: c.get_position()) for _ in range(3)]
    with pytest.raises(RateLimitedError):
        for _ in range(3):
            unlimited.call_with_session(lambda c: c.get_position())

    assert len(books) == 3


def test_the_scrip_master_loads_from_the_simulator(sim, tmp_path):
    master = ScripMaster.load(
        sim.rest_url + "/OpenAPI_File/files/OpenAPIScripMaster.json", cache_dir=tmp_path
    )

    sbin = master.by_symbol("NSE", "SBIN-EQ")
    assert sbin is not None and sbin.token == "3045" and sbin.tick_size_paise == 5
