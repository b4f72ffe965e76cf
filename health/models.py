"""Results of the 60-second health check."""

from __future__ import annotations

from django.db import models


class HealthCheck(models.Model):
    class Status(models.TextChoices):
        OK = "ok"
        DEGRADED = "degraded"
        DOWN = "down"
        CLOSED = "market closed"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    overall = models.CharField(max_length=20, choices=Status.choices)
    feed = models.CharField(max_length=20, choices=Status.choices)
    redis = models.CharField(max_length=20, choices=Status.choices)
    database = models.CharField(max_length=20, choices=Status.choices)
    workers = models.CharField(max_length=20, choices=Status.choices)
    session = models.CharField(max_length=20, choices=Status.choices, default=Status.OK)
    actions = models.JSONField(default=list, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        get_latest_by = "at"

    def __str__(self) -> str:
        return f"{self.overall} at {self.at:%H:%M:%S}"
