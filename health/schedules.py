"""The beat schedule, kept in django-celery-beat's tables so the admin can change it."""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)

# (name, task, every seconds, queue). Each message expires before the next one is due,
# so checks that waited out an outage are dropped instead of piling up.
SCHEDULES = (
    ("health check", "health.tasks.health_check", 60, "control"),
    ("session token check", "health.tasks.token_check", 60, "control"),
    ("order reconciliation", "orders.tasks.reconcile_orders", 60, "orders"),
)


def install_schedules(**kwargs) -> None:
    """Create the periodic tasks once; later edits in the admin are left alone."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, task, seconds, queue in SCHEDULES:
        every, _ = IntervalSchedule.objects.get_or_create(
            every=seconds, period=IntervalSchedule.SECONDS
        )
        _, created = PeriodicTask.objects.get_or_create(
            name=name,
            defaults={
                "task": task,
                "interval": every,
                "queue": queue,
                "expire_seconds": seconds - 10,
                "kwargs": json.dumps({}),
            },
        )
        if created:
            log.info("scheduled %s every %s s", task, seconds)
