"""Bot-wide state: the kill switch and the activity feed."""

from __future__ import annotations

from django.db import models


class BotState(models.Model):
    """One row (pk=1). The kill switch lives here; Redis holds a mirror for fast checks."""

    kill_switch_engaged = models.BooleanField(default=False)
    kill_switch_by = models.CharField(max_length=150, blank=True)
    kill_switch_reason = models.CharField(max_length=500, blank=True)
    kill_switch_at = models.DateTimeField(null=True, blank=True)
    square_off_on_kill = models.BooleanField(
        default=False, help_text="Also close open positions when the kill switch engages."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "bot state"
        verbose_name_plural = "bot state"

    def __str__(self) -> str:
        return "KILL SWITCH ENGAGED" if self.kill_switch_engaged else "trading enabled"


class KillSwitchEvent(models.Model):
    """Who engaged or released the kill switch, when and why."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    engaged = models.BooleanField()
    by = models.CharField(max_length=150)
    reason = models.CharField(max_length=500)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{'engaged' if self.engaged else 'released'} by {self.by}"


class Activity(models.Model):
    """One line of the operator-facing activity feed."""

    class Level(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        ERROR = "error"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    component = models.CharField(max_length=40, db_index=True)
    message = models.CharField(max_length=1000)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name_plural = "activity"

    def __str__(self) -> str:
        return f"[{self.component}] {self.message}"
