"""`manage.py place_order`: an operator's order by hand, through the real worker."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orders.models import OrderIntent
from orders.testing import Worker, instrument
from tests.conftest import subprocess_env
from tradebot import state

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker(simulator, redis_client):
    running = Worker(subprocess_env(simulator), name="manual").start()
    yield running
    running.stop()


def test_an_operator_places_one_order_by_hand(worker, simulator, capsys):
    symbol = instrument().symbol

    call_command("place_order", symbol, "buy", "--quantity", "2", "--wait", "30")

    intent = OrderIntent.objects.get(strategy="manual")
    [order] = simulator.orders()
    assert order["ordertag"] == intent.ordertag
    assert (order["tradingsymbol"], order["transactiontype"], str(order["quantity"])) == (
        symbol, "BUY", "2")
    assert f"intent {intent.ordertag}: {intent.status}" in capsys.readouterr().out


def test_the_kill_switch_stops_a_manual_order_too(worker, simulator):
    state.engage_kill_switch(by="ops", reason="test")

    with pytest.raises(CommandError, match="not placed"):
        call_command("place_order", instrument().symbol, "BUY", "--wait", "30")

    assert simulator.orders() == []


def test_an_unknown_symbol_is_named(redis_client):
    with pytest.raises(CommandError, match="no instrument NSE:NOPE-EQ"):
        call_command("place_order", "NOPE-EQ", "BUY", "--wait", "0")
