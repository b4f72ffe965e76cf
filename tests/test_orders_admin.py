"""The admin shows intents with their transitions inline, read-only."""

from __future__ import annotations

import pytest

from orders import placement, tasks
from orders.intents import create_intent
from orders.models import OrderIntent
from orders.states import move
from orders.testing import instrument

pytestmark = pytest.mark.django_db


def test_an_intent_page_lists_its_transitions_and_cannot_be_edited(admin_client, redis_client):
    intent = create_intent(instrument(), "BUY", 1, strategy="demo", reason="cross")
    move(intent, "expired", expect=["new"], note="deadline passed; never sent")

    page = admin_client.get(f"/admin/orders/orderintent/{intent.pk}/change/")
    listing = admin_client.get("/admin/orders/orderintent/")

    assert page.status_code == 200 and listing.status_code == 200
    html = page.content.decode()
    assert "deadline passed; never sent" in html and "transitions" in html.lower()
    assert 'name="quantity"' not in html  # read-only: no input for it
    assert intent.ordertag in listing.content.decode()
    assert admin_client.get("/admin/orders/orderintent/add/").status_code == 403
    assert OrderIntent.objects.get(pk=intent.pk).status == "expired"


def test_every_countdown_stays_well_inside_the_visibility_timeout(settings):
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]

    longest = max(tasks.MAX_COUNTDOWN, tasks.OrderTask.retry_backoff_max)
    assert 2 * (longest + placement.TIME_LIMIT) <= visibility
    assert placement.LEASE_SECONDS > placement.TIME_LIMIT > placement.SOFT_TIME_LIMIT
    assert tasks.OrderTask.acks_late and tasks.OrderTask.retry_on_worker_lost
    assert tasks.OrderTask.max_retries == 3


def test_the_candle_list_shows_rupees_like_the_orders(admin_client, redis_client):
    from datetime import datetime

    from strategies.models import Candle
    from tradebot.market_hours import IST

    Candle.objects.create(
        instrument=instrument(), interval="ONE_MINUTE",
        start=datetime(2026, 12, 3, 10, 15, tzinfo=IST),
        open=238585, high=238900, low=238105, close=238640, volume=1200, source="live",
    )

    html = admin_client.get("/admin/strategies/candle/").content.decode()

    assert "2385.85" in html and "2389.00" in html and "2386.40" in html
    assert "238585" not in html
