"""The kill switch: recorded in the database, mirrored in Redis, deliberate to release."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tradebot import keys, state
from tradebot.models import Activity, KillSwitchEvent
from tradebot.status import collect_status

pytestmark = pytest.mark.django_db


def test_engaging_records_who_and_why_and_mirrors_to_redis(redis_client):
    state.engage_kill_switch(by="asha", reason="broker outage")

    current = state.bot_state()
    assert current.kill_switch_engaged
    assert (current.kill_switch_by, current.kill_switch_reason) == ("asha", "broker outage")
    assert redis_client.get(keys.KILL_SWITCH) == "1"
    assert KillSwitchEvent.objects.get().by == "asha"
    assert Activity.objects.filter(component="kill_switch", level="error").exists()


def test_it_survives_a_redis_restart_because_the_database_is_the_record(redis_client):
    state.engage_kill_switch(by="asha", reason="test")
    redis_client.flushall()  # what a Redis restart without persistence leaves

    assert state.is_kill_switch_engaged()
    assert redis_client.get(keys.KILL_SWITCH) == "1"


def test_releasing_needs_a_reason(redis_client):
    state.engage_kill_switch(by="asha", reason="test")

    with pytest.raises(ValueError, match="needs a reason"):
        state.release_kill_switch(by="asha", reason="  ")
    assert state.is_kill_switch_engaged()


def test_the_command_engages_and_releases(redis_client, capsys):
    call_command("kill_switch", "engage", "--reason", "drill", "--by", "ops")
    assert state.is_kill_switch_engaged()

    with pytest.raises(CommandError, match="needs --reason"):
        call_command("kill_switch", "release", "--by", "ops")
    with pytest.raises(CommandError, match="needs --reason"):
        call_command("kill_switch", "release", "--by", "ops", "--reason", "   ")
    with pytest.raises(CommandError, match="--by must name who"):
        call_command("kill_switch", "release", "--by", " ", "--reason", "drill over")
    call_command("kill_switch", "release", "--reason", "drill over", "--by", "ops")

    assert not state.is_kill_switch_engaged()
    assert KillSwitchEvent.objects.count() == 2


def test_the_admin_button_engages_it(redis_client, admin_client):
    response = admin_client.post("/admin/tradebot/botstate/kill/", {"reason": "panic"})

    assert response.status_code == 302
    assert state.is_kill_switch_engaged()
    assert state.bot_state().kill_switch_by == "admin"


def test_the_admin_shows_the_kill_switch_page(redis_client, admin_client):
    response = admin_client.get("/admin/tradebot/botstate/", follow=True)

    assert response.status_code == 200
    assert b"ENGAGE KILL SWITCH" in response.content


def test_the_admin_can_stop_the_feed_through_redis(redis_client, admin_client):
    from tradebot import keys

    response = admin_client.post("/admin/tradebot/botstate/feed/", {"command": "stop"})

    assert response.status_code == 302
    command = redis_client.xrange(keys.FEED_COMMANDS)[-1][1]
    assert (command["cmd"], command["by"]) == ("stop", "admin")


def test_a_redis_that_comes_back_with_an_old_snapshot_lets_no_order_out(tmp_path, settings):
    from broker import factory
    from tradebot.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "redis", persist=True).start()
    settings.REDIS_URL = server.url
    factory.reset()
    try:
        state.sync_kill_switch_mirror()
        factory.get_redis().save()  # the snapshot says "off"
        server.kill()

        state.engage_kill_switch(by="asha", reason="broker outage")  # Redis is down
        server.start()
        stale = factory.get_redis().get(keys.KILL_SWITCH)

        assert stale == "0"
        assert state.is_kill_switch_engaged()
        assert factory.get_redis().get(keys.KILL_SWITCH) == "1"
    finally:
        server.stop()
        factory.reset()


def test_the_health_check_puts_a_stale_mirror_right(redis_client):
    from health.tasks import health_check

    state.engage_kill_switch(by="asha", reason="test")
    state.release_kill_switch(by="asha", reason="fixed")
    redis_client.set(keys.KILL_SWITCH, "1")  # e.g. Redis was down during the release

    health_check.run()

    assert redis_client.get(keys.KILL_SWITCH) == "0"


def test_with_no_bot_running_here_the_command_records_it_and_talks_to_no_redis(
    settings, capsys
):
    from broker import factory

    settings.REDIS_URL = settings.NO_REDIS_URL
    factory.reset()
    try:
        call_command("kill_switch", "engage", "--reason", "weekend", "--by", "ops")
        status = collect_status()
    finally:
        factory.reset()

    out = capsys.readouterr().out
    assert "no running bot found here" in out
    assert state.bot_state().kill_switch_engaged
    assert status["redis"].startswith("none (no Redis to talk to: `make run` is not running")
    assert status["kill_switch"] == "ENGAGED"
