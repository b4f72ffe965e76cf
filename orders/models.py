"""Order intents, the broker orders they became, their fills, and every state change.

An ``OrderIntent`` is what a strategy (or the kill switch) wants: one row per signal,
created only through ``orders.intents.create_intent``. It carries the state machine and
the ``ordertag`` that makes sending it retry-safe. An ``Order`` is the broker's order for
an intent (at most one: a one-to-one link), or an order found in the broker's book with
our tag prefix that the database did not know (``intent`` empty, ``adopted`` set).
``OrderEvent`` rows are the timestamped transitions the admin shows.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Side(models.TextChoices):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(models.TextChoices):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class Status(models.TextChoices):
    """The intent's state machine (``orders.states.ALLOWED`` lists the moves).

    new -> submitting -> accepted -> open -> complete / rejected / cancelled, plus
    expired (deadline passed before it was sent) and unknown (sent, outcome not known:
    the order book is searched for the tag before anything is sent again).
    """

    NEW = "new"
    SUBMITTING = "submitting"
    ACCEPTED = "accepted"
    OPEN = "open"
    COMPLETE = "complete"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class OrderIntent(models.Model):
    instrument = models.ForeignKey(
        "feeds.Instrument", on_delete=models.PROTECT, related_name="order_intents"
    )
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.PositiveIntegerField()
    order_type = models.CharField(max_length=10, choices=OrderType.choices, default="MARKET")
    price = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, help_text="Rupees; LIMIT only."
    )
    product_type = models.CharField(max_length=16, default="INTRADAY")
    variety = models.CharField(max_length=10, default="NORMAL")
    duration = models.CharField(max_length=4, default="DAY")
    strategy = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=255, blank=True)
    is_exit = models.BooleanField(default=False, help_text="Uses the limiter's exit lane.")
    square_off = models.BooleanField(
        default=False, help_text="Created by the kill switch; the only kind it lets through."
    )

    ordertag = models.CharField(max_length=20, unique=True, null=True, blank=True)
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.NEW, db_index=True
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    deadline = models.DateTimeField(help_text="Not sent after this moment; expired instead.")
    status_changed_at = models.DateTimeField(default=timezone.now)

    # The claim: whoever moved the intent to "submitting" owns the send.
    claim_token = models.CharField(max_length=32, blank=True)
    claimed_by = models.CharField(max_length=120, blank=True, help_text="host:pid:start")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="Earliest moment the last send may have left."
    )
    settle_until = models.DateTimeField(
        null=True, blank=True, help_text="A search of the book before this proves nothing."
    )
    send_count = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["instrument", "status"])]

    def __str__(self) -> str:
        return f"{self.ordertag or '#' + str(self.pk)} {self.side} {self.quantity} {self.status}"

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == Side.BUY else -self.quantity


class Order(models.Model):
    """A broker order: ours (linked to its intent) or adopted from the book."""

    intent = models.OneToOneField(
        OrderIntent, on_delete=models.PROTECT, null=True, blank=True, related_name="order"
    )
    ordertag = models.CharField(max_length=20, blank=True, db_index=True)
    broker_order_id = models.CharField(max_length=40, unique=True)
    unique_order_id = models.CharField(max_length=64, blank=True)
    instrument = models.ForeignKey(
        "feeds.Instrument",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orders",
    )
    exchange = models.CharField(max_length=10, blank=True)
    tradingsymbol = models.CharField(max_length=50, blank=True)
    symboltoken = models.CharField(max_length=25, blank=True)
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.PositiveIntegerField(default=0)
    order_type = models.CharField(max_length=20, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    product_type = models.CharField(max_length=16, blank=True)
    variety = models.CharField(max_length=10, default="NORMAL")

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACCEPTED)
    broker_status = models.CharField(max_length=60, blank=True)
    filled_quantity = models.PositiveIntegerField(default=0)
    average_price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    text = models.CharField(max_length=500, blank=True, help_text="Broker's rejection reason.")
    adopted = models.BooleanField(
        default=False, help_text="Found in the order book rather than in our send's answer."
    )
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    placed_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-placed_at"]

    def __str__(self) -> str:
        return f"{self.broker_order_id} {self.side} {self.quantity} {self.tradingsymbol}"

    @property
    def is_working(self) -> bool:
        return self.status in (Status.ACCEPTED, Status.OPEN)


class Fill(models.Model):
    """One trade-book row of one of our orders."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="fills")
    fill_id = models.CharField(max_length=40)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=12, decimal_places=2)
    filled_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["filled_at"]
        constraints = [
            models.UniqueConstraint(fields=["order", "fill_id"], name="fill_order_fill_id")
        ]

    def __str__(self) -> str:
        return f"{self.quantity} @ {self.price}"


class OrderEvent(models.Model):
    """One timestamped transition (or notable fact) of an intent or an adopted order."""

    intent = models.ForeignKey(
        OrderIntent, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    at = models.DateTimeField(default=timezone.now, db_index=True)
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, blank=True)
    note = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status or '-'}: {self.note}"
