"""Celery tasks of the orders queue: place, modify, cancel, follow, reconcile, square off.

Retry policy (runtime.md §1, §2):
- Transient faults (the request never left, Redis blips, a session still refused after
  one refresh) are retried by ``autoretry_for`` with exponential backoff, 3 times, with
  jitter that keeps at least half of each delay: 0.5-1 s, 1-2 s, 2-4 s.
- "Not now" (limiter window, a broker 403, an unknown outcome settling, another worker
  holding the send) is not a failure: the task is published again with exactly that
  countdown plus a little jitter, without spending one of the 3 retries. The intent's
  deadline bounds these.
- Rejections are final. Nothing here ever logs in again because of a rate limit.

Every countdown is at most ``MAX_COUNTDOWN`` (60 s), far inside the broker's 600 s
visibility timeout. Tasks acknowledge late; a worker killed mid-task makes Celery send
the task again (``retry_on_worker_lost``), and ``orders.placement`` turns that into a
search of the order book, never into a blind second send.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from celery import Task
from celery.exceptions import Ignore
from celery.signals import worker_ready
from django.utils import timezone

from broker.errors import SessionExpiredError, TransientError
from orders import placement
from orders.gateway import WaitFor
from tradebot.celery import app

log = logging.getLogger(__name__)

MAX_COUNTDOWN = 60.0
MAX_RETRIES = 3


def bounded_jitter(delay: float) -> float:
    """A backoff delay with jitter that never drops below half of it (nor below 0.5 s)."""
    delay = max(float(delay), 0.5)
    return min(random.uniform(delay / 2, delay), MAX_COUNTDOWN)


def wait_jitter(seconds: float) -> float:
    """An exact wait (limiter window, settle time) plus up to 50 ms, so tasks woken by
    the same window do not all arrive in the same millisecond."""
    return min(max(seconds, 0.0) + random.uniform(0.005, 0.05), MAX_COUNTDOWN)


class OrderTask(Task):
    """Base of the order tasks: late ack, worker-loss retry, time limits, safe retries."""

    acks_late = True
    reject_on_worker_lost = False
    retry_on_worker_lost = True  # Celery 5.7: re-sent like retry(), bounded by max_retries
    acks_on_failure_or_timeout = True
    autoretry_for = (TransientError, SessionExpiredError)
    max_retries = MAX_RETRIES
    retry_backoff = 1
    retry_backoff_max = 8
    retry_jitter = False  # Celery's full jitter can reach 0; ``retry`` adds a bounded one
    default_retry_delay = 1  # also the delay of a worker-loss retry
    soft_time_limit = placement.SOFT_TIME_LIMIT
    time_limit = placement.TIME_LIMIT
    ignore_result = True

    def retry(
        self,
        args=None,
        kwargs=None,
        exc=None,
        throw=True,
        eta=None,
        countdown=None,
        max_retries=None,
        **options,
    ):
        if countdown is not None:
            countdown = bounded_jitter(countdown)
        attempt = self.request.retries + 1
        if attempt <= (self.max_retries if max_retries is None else max_retries):
            log.warning(
                "%s%s: %s; retry %d of %d in %.2fs",
                self.name,
                self.request.args,
                exc,
                attempt,
                self.max_retries,
                countdown or self.default_retry_delay,
            )
        else:
            log.error(
                "%s%s: %s; giving up after %d retries",
                self.name,
                self.request.args,
                exc,
                self.max_retries,
            )
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)

    def again(self, wait: WaitFor):
        """Publish this task again after ``wait.seconds`` (same id, same retry count)."""
        countdown = wait_jitter(wait.seconds)
        log.info("%s%s: %s; again in %.2fs", self.name, self.request.args, wait.why, countdown)
        if self.request.called_directly or self.request.is_eager:
            raise wait
        self.signature_from_request(countdown=countdown).apply_async()
        raise Ignore()


@app.task(bind=True, base=OrderTask, name="orders.tasks.place_order")
def place_order(self, intent_id: int) -> str:
    """Send one intent to the broker exactly once (see ``orders.placement``)."""
    try:
        return placement.place(intent_id)
    except WaitFor as wait:
        return self.again(wait)


@app.task(bind=True, base=OrderTask, name="orders.tasks.cancel_order")
def cancel_order(
    self, intent_id: int | None = None, order_pk: int | None = None, reason: str = ""
) -> str:
    """Cancel an intent (before or after it reached the broker) or a broker order."""
    from orders import actions

    try:
        return actions.cancel(intent_id=intent_id, order_pk=order_pk, reason=reason)
    except WaitFor as wait:
        return self.again(wait)


@app.task(bind=True, base=OrderTask, name="orders.tasks.modify_order")
def modify_order(
    self,
    intent_id: int,
    price: str | None = None,
    quantity: int | None = None,
    order_type: str | None = None,
) -> str:
    """Change price / quantity / type of an intent's working order (or of the unsent
    intent itself)."""
    from orders import actions

    try:
        return actions.modify(intent_id, price=price, quantity=quantity, order_type=order_type)
    except WaitFor as wait:
        return self.again(wait)


@app.task(bind=True, base=OrderTask, name="orders.tasks.sync_order", max_retries=1)
def sync_order(self, order_pk: int, step: int = 0) -> str:
    """Refresh one order from the broker a moment after it was accepted, a few times while
    it keeps working (1, 2, 4 ... s); after that the reconciler follows it."""
    from orders import actions

    try:
        working = actions.sync(order_pk)
    except WaitFor as wait:
        return self.again(wait)
    if working and step < 5:
        sync_order.apply_async((order_pk, step + 1), countdown=min(2.0 ** (step + 1), 30))
    return "working" if working else "settled"


REFRESH_PENDING_KEY = "tb:orders:refresh:pending"
REFRESH_KEY_SECONDS = 60  # a refresh lost with its worker blocks follow-ups this long


def schedule_refresh(countdown: float, step: int = 0) -> bool:
    """Queue ``refresh_orders`` unless one is already queued or running (one at a time:
    a single order book read serves every recent order). Returns whether it queued."""
    from broker.factory import get_redis

    redis = get_redis()
    if not redis.set(REFRESH_PENDING_KEY, "1", nx=True, ex=REFRESH_KEY_SECONDS):
        return False
    try:
        refresh_orders.apply_async((step,), countdown=countdown, retry=False)
    except Exception:
        redis.delete(REFRESH_PENDING_KEY)
        raise
    return True


@app.task(bind=True, base=OrderTask, name="orders.tasks.refresh_orders", max_retries=1)
def refresh_orders(self, step: int = 0) -> str:
    """Bring recently accepted orders up to date from one order book read, and again
    while some keep working: every second while they are young, then less often; after a
    few minutes the reconciler follows them."""
    from broker.factory import get_redis
    from orders import actions

    try:
        actions.refresh_working()
    except WaitFor as wait:
        return self.again(wait)  # still the one refresh: the key stays
    except Exception:
        get_redis().delete(REFRESH_PENDING_KEY)
        raise
    get_redis().delete(REFRESH_PENDING_KEY)
    delay = actions.next_refresh_delay(step)
    if delay is None:
        return "settled"
    schedule_refresh(delay, step + 1)
    return "working"


@app.task(
    bind=True,
    base=OrderTask,
    name="orders.tasks.reconcile_orders",
    max_retries=0,
    acks_late=False,
    retry_on_worker_lost=False,
)
def reconcile_orders(self, reason: str = "periodic") -> dict:
    """Compare the database with the broker's order book, trade book and positions (beat
    runs this every 60 s; each worker runs it once at start-up)."""
    from orders import reconcile

    return reconcile.reconcile(reason=reason)


@app.task(bind=True, base=OrderTask, name="orders.tasks.square_off")
def square_off(self, engaged_at: str = "", step: int = 0) -> str:
    """Close open positions after the kill switch cancelled open orders."""
    from orders import kill

    try:
        return kill.square_off_positions(step=step)
    except WaitFor as wait:
        if step >= 10:
            log.error("square off: still %s after %d rounds; giving up", wait.why, step)
            return "gave up"
        square_off.apply_async((engaged_at, step + 1), countdown=wait_jitter(wait.seconds))
        return "waiting"


@worker_ready.connect
def reconcile_at_start(sender=None, **kwargs) -> None:
    """Reconcile once when a worker starts: orders placed or lost while it was down."""
    from django.conf import settings

    if not getattr(settings, "ORDERS_RECONCILE_ON_START", True):
        return
    try:
        reconcile_orders.apply_async(
            kwargs={"reason": "startup"}, countdown=1, expires=timezone.now() + timedelta(minutes=5)
        )
    except Exception as exc:
        log.warning("start-up reconciliation not queued (%s)", exc)
