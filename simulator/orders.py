"""The paper OMS: order book, trade book, positions and order-update events.

placeOrder success only means "accepted": the order is booked "open" (or "trigger
pending" for stop-loss orders), then fills after ``order_fill_delay`` once the market
allows it (MARKET at the LTP, LIMIT when the walk reaches the price), or is booked
"rejected" with a reason in ``text``, as Angel's OMS does (smartapi.md §1.6).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from simulator.config import SimConfig
from simulator.market import InstrumentState, Market, to_grid
from tradebot.market_hours import IST, is_market_open

VARIETIES = ("NORMAL", "STOPLOSS", "AMO", "ROBO")
ORDER_TYPES = ("MARKET", "LIMIT", "STOPLOSS_LIMIT", "STOPLOSS_MARKET")
PRODUCTS = ("DELIVERY", "CARRYFORWARD", "MARGIN", "INTRADAY", "BO")
DURATIONS = ("DAY", "IOC")
SIDES = ("BUY", "SELL")
WORKING = ("open", "trigger pending", "after market order req received")

# Order-update WebSocket "order-status" codes (smartapi.md §3.7).
STATUS_CODES = {
    "open": "AB01",
    "cancelled": "AB02",
    "rejected": "AB03",
    "modified": "AB04",
    "complete": "AB05",
    "after market order req received": "AB06",
    "trigger pending": "AB10",
}


class OrderRequestError(ValueError):
    """A request the OMS refuses outright; the route answers envelope A with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def broker_time(moment: float | None = None) -> str:
    """Angel's order-book time format, e.g. ``03-Dec-2026 21:14:05`` (IST)."""
    return datetime.fromtimestamp(moment or time.time(), IST).strftime("%d-%b-%Y %H:%M:%S")


def _float(body: dict, key: str, default: float = 0.0) -> float:
    value = body.get(key, default)
    if value in (None, ""):
        return default
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise OrderRequestError("AB2000", f"Invalid {key}") from exc


def _int_or_none(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number == int(number) else None


class Order:
    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.filled = 0
        self.fill_value = 0.0
        self.due = 0.0  # loop-independent monotonic time before which it cannot fill
        self.triggered = False

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    @property
    def quantity(self) -> int:
        return int(self.fields["quantity"])

    def book_row(self) -> dict[str, Any]:
        row = dict(self.fields)
        row["filledshares"] = str(self.filled)
        row["unfilledshares"] = str(
            0 if row["status"] in ("complete", "rejected") else self.quantity - self.filled
        )
        if row["status"] == "cancelled":
            row["cancelsize"] = str(self.quantity - self.filled)
        row["averageprice"] = round(self.fill_value / self.filled, 2) if self.filled else 0.0
        return row


Listener = Callable[[str, dict[str, Any]], None]


class OrderBook:
    def __init__(self, config: SimConfig, market: Market,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.market = market
        self.clock = clock or (lambda: datetime.now(IST))
        self.rng = random.Random(f"{config.seed}:orders")
        self.orders: dict[str, Order] = {}  # orderid -> order, in placement order
        self.working: dict[str, Order] = {}  # the subset that may still fill
        self.by_unique: dict[str, Order] = {}
        self.trades: list[dict[str, Any]] = []
        self.cash_used = 0.0
        self.listeners: list[Listener] = []
        self._serial = 0

    def clear(self) -> None:
        self.orders.clear()
        self.working.clear()
        self.by_unique.clear()
        self.trades.clear()
        self.cash_used = 0.0

    # --- ids and events ---------------------------------------------------------------

    def _next_id(self) -> str:
        self._serial += 1
        return datetime.now(IST).strftime("%y%m%d") + f"{self._serial:09d}"

    def _exchange_id(self) -> str:
        return f"1100000{self.rng.randint(10**11, 10**12 - 1)}"

    def _emit(self, order: Order, status: str | None = None) -> None:
        row = order.book_row()
        code = STATUS_CODES.get(status or row["status"], "AB01")
        for listener in list(self.listeners):
            listener(code, row)

    def _set_status(self, order: Order, status: str, text: str = "") -> None:
        now = time.time()
        order.fields.update(
            status=status, orderstatus=status, text=text, updatetime=broker_time(now),
            exchorderupdatetime=broker_time(now),
        )
        if status in WORKING:
            self.working[order["orderid"]] = order
        else:
            self.working.pop(order["orderid"], None)
        self._emit(order)

    # --- requests ---------------------------------------------------------------------

    def _instrument(self, body: dict) -> InstrumentState:
        token = str(body.get("symboltoken", "")).strip()
        state = self.market.get(token)
        symbol = str(body.get("tradingsymbol", "")).strip()
        exchange = str(body.get("exchange", "NSE")).upper()
        if state is None or exchange != state.exchange or (symbol and symbol != state.symbol):
            raise OrderRequestError("AB1009", "Symbol not found")
        return state

    def _validate_common(self, body: dict) -> None:
        if str(body.get("variety", "")).upper() not in VARIETIES:
            raise OrderRequestError("AB1008", "Invalid order variety")
        if str(body.get("producttype", "")).upper() not in PRODUCTS:
            raise OrderRequestError("AB1012", "Invalid product type")
        if str(body.get("ordertype", "")).upper() not in ORDER_TYPES:
            raise OrderRequestError("AB2000", "Invalid order type")
        if str(body.get("duration", "DAY") or "DAY").upper() not in DURATIONS:
            raise OrderRequestError("AB2000", "Invalid duration")

    def place(self, body: dict) -> Order:
        tag = str(body.get("ordertag") or "")
        if len(tag) >= 20:
            raise OrderRequestError("AB4008", "ordertag length should be less than 20 characters")
        self._validate_common(body)
        if str(body.get("transactiontype", "")).upper() not in SIDES:
            raise OrderRequestError("AB2000", "Invalid transaction type")
        state = self._instrument(body)
        price = _float(body, "price")
        trigger = _float(body, "triggerprice")
        quantity = _int_or_none(body.get("quantity"))
        now = time.time()
        order_id = self._next_id()
        fields: dict[str, Any] = {
            "variety": str(body["variety"]).upper(),
            "ordertype": str(body["ordertype"]).upper(),
            "producttype": str(body["producttype"]).upper(),
            "duration": str(body.get("duration") or "DAY").upper(),
            "price": price,
            "triggerprice": trigger,
            "quantity": str(quantity if quantity is not None else body.get("quantity", "")),
            "disclosedquantity": str(_int_or_none(body.get("disclosedquantity")) or 0),
            "squareoff": _float(body, "squareoff"),
            "stoploss": _float(body, "stoploss"),
            "trailingstoploss": _float(body, "trailingStopLoss"),
            "tradingsymbol": state.symbol,
            "transactiontype": str(body["transactiontype"]).upper(),
            "exchange": state.exchange,
            "symboltoken": state.token,
            "ordertag": tag,
            "instrumenttype": "",
            "strikeprice": -1.0,
            "optiontype": "",
            "expirydate": "",
            "lotsize": "1",
            "cancelsize": "0",
            "averageprice": 0.0,
            "filledshares": "0",
            "unfilledshares": "0",
            "orderid": order_id,
            "text": "",
            "status": "open",
            "orderstatus": "open",
            "updatetime": broker_time(now),
            "exchtime": broker_time(now),
            "exchorderupdatetime": broker_time(now),
            "fillid": "",
            "filltime": "",
            "parentorderid": "",
            "uniqueorderid": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "exchangeorderid": self._exchange_id(),
        }
        order = Order(fields)
        order.due = time.monotonic() + self.config.order_fill_delay
        self.orders[order_id] = order
        self.by_unique[fields["uniqueorderid"]] = order
        self._admit(order, state, quantity)
        return order

    def _admit(self, order: Order, state: InstrumentState, quantity: int | None) -> None:
        """The exchange side of placement: book it working, or rejected with a reason."""
        fields = order.fields
        reason = ""
        if quantity is None or quantity <= 0:
            reason = "Quantity should be a positive whole number"
        elif fields["ordertype"] in ("LIMIT", "STOPLOSS_LIMIT") and fields["price"] <= 0:
            reason = "Price should be greater than zero for a limit order"
        elif fields["ordertype"].startswith("STOPLOSS") and fields["triggerprice"] <= 0:
            reason = "Trigger price is required for a stop-loss order"
        elif fields["ordertype"].startswith("STOPLOSS") and fields["variety"] != "STOPLOSS":
            reason = "Stop-loss order types need variety STOPLOSS"
        elif fields["transactiontype"] == "BUY":
            need = quantity * (fields["price"] or state.ltp)
            available = self.available_cash
            if need > available:
                reason = (
                    "Your order has been rejected due to Insufficient Funds. Available funds - "
                    f"Rs. {available:.2f} . You require Rs. {need:.2f} funds to execute this order."
                )
        market_open = is_market_open(self.clock(), self.config.market_always_open)
        if not reason and not market_open and fields["variety"] != "AMO":
            reason = "Market is closed; place an AMO order instead"
        if reason:
            self._set_status(order, "rejected", reason)
            return
        if fields["variety"] == "AMO" and not market_open:
            self._set_status(order, "after market order req received")
        elif fields["ordertype"].startswith("STOPLOSS"):
            self._set_status(order, "trigger pending")
        else:
            self._set_status(order, "open")

    def reject_now(self, order: Order, text: str) -> None:
        if order["status"] in WORKING:
            self._set_status(order, "rejected", text)

    def find(self, order_id: str) -> Order:
        order = self.orders.get(str(order_id))
        if order is None:
            raise OrderRequestError("AB1013", "Order not found")
        return order

    def modify(self, body: dict) -> Order:
        order = self.find(body.get("orderid", ""))
        if order["status"] not in WORKING:
            raise OrderRequestError("AB2000", f"Order is {order['status']}; it cannot be modified")
        self._validate_common({**order.fields, **{k: v for k, v in body.items() if v}})
        fields = order.fields
        if body.get("quantity") not in (None, ""):
            quantity = _int_or_none(body["quantity"])
            if quantity is None or quantity <= order.filled:
                raise OrderRequestError("AB2000", "Invalid quantity")
            fields["quantity"] = str(quantity)
        for key in ("price", "triggerprice"):
            if body.get(key) not in (None, ""):
                fields[key] = _float(body, key)
        for key in ("ordertype", "producttype", "duration"):
            if body.get(key):
                fields[key] = str(body[key]).upper()
        fields["exchangeorderid"] = self._exchange_id()
        fields["updatetime"] = fields["exchorderupdatetime"] = broker_time()
        self._emit(order, "modified")
        return order

    def cancel(self, body: dict) -> Order:
        order = self.find(body.get("orderid", ""))
        if order["status"] not in WORKING:
            raise OrderRequestError("AB2000", f"Order is {order['status']}; it cannot be cancelled")
        self._set_status(order, "cancelled")
        return order

    # --- matching ---------------------------------------------------------------------

    def match(self, market_open: bool) -> None:
        """Fill or trigger working orders against the current LTPs."""
        if not market_open:
            return
        now = time.monotonic()
        for order in list(self.working.values()):
            status = order["status"]
            if status not in WORKING or now < order.due:
                continue
            state = self.market.get(order["symboltoken"])
            if state is None:
                continue
            ltp = state.ltp
            if status == "after market order req received":
                self._set_status(order, "open")
                continue
            buy = order["transactiontype"] == "BUY"
            kind = order["ordertype"]
            if status == "trigger pending":
                trigger = order["triggerprice"]
                if (buy and ltp >= trigger) or (not buy and ltp <= trigger):
                    kind = "MARKET" if kind == "STOPLOSS_MARKET" else "LIMIT"
                    self._set_status(order, "open")
                    order.triggered = True
                else:
                    continue
            limit = order["price"]
            if kind.endswith("MARKET"):
                self._fill(order, state, ltp)
            elif (buy and ltp <= limit) or (not buy and ltp >= limit):
                self._fill(order, state, min(limit, ltp) if buy else max(limit, ltp))
            elif order["duration"] == "IOC":
                self._set_status(order, "cancelled", "IOC order cancelled: price not available")

    def _fill(self, order: Order, state: InstrumentState, price: float) -> None:
        price = to_grid(price * 100) / 100
        quantity = order.quantity - order.filled
        now = time.time()
        fill_id = str(self.rng.randint(10**7, 10**8 - 1))
        order.filled += quantity
        order.fill_value += quantity * price
        value = round(quantity * price, 2)
        self.cash_used += value if order["transactiontype"] == "BUY" else -value
        order.fields.update(fillid=fill_id, filltime=broker_time(now)[-8:])
        self.trades.append({
            "exchange": order["exchange"],
            "producttype": order["producttype"],
            "tradingsymbol": order["tradingsymbol"],
            "instrumenttype": "",
            "symbolgroup": "EQ",
            "strikeprice": "-1",
            "optiontype": "",
            "expirydate": "",
            "marketlot": "1",
            "precision": "2",
            "multiplier": "-1",
            "tradevalue": value,
            "transactiontype": order["transactiontype"],
            "fillprice": price,
            "fillsize": str(quantity),
            "orderid": order["orderid"],
            "fillid": fill_id,
            "filltime": broker_time(now)[-8:],
            "symboltoken": order["symboltoken"],
            "uniqueorderid": order["uniqueorderid"],
        })
        self._set_status(order, "complete")

    # --- views ------------------------------------------------------------------------

    @property
    def available_cash(self) -> float:
        return self.config.capital - self.cash_used

    def book(self) -> list[dict[str, Any]]:
        return [order.book_row() for order in self.orders.values()]

    def positions(self) -> list[dict[str, Any]]:
        grouped: dict[tuple[str, str, str], dict[str, float]] = {}
        for trade in self.trades:
            key = (trade["exchange"], trade["symboltoken"], trade["producttype"])
            agg = grouped.setdefault(key, {"bq": 0, "sq": 0, "ba": 0.0, "sa": 0.0})
            qty = int(trade["fillsize"])
            if trade["transactiontype"] == "BUY":
                agg["bq"] += qty
                agg["ba"] += trade["tradevalue"]
            else:
                agg["sq"] += qty
                agg["sa"] += trade["tradevalue"]
        rows = []
        for (exchange, token, product), agg in grouped.items():
            state = self.market.get(token)
            rows.append(_position_row(exchange, token, product, agg, state))
        return rows


def _money(value: float) -> str:
    return f"{value:.2f}"


def _position_row(
    exchange: str, token: str, product: str, agg: dict[str, float],
    state: InstrumentState | None,
) -> dict[str, str]:
    """A getPosition item; Angel sends every value as a string."""
    bq, sq, ba, sa = int(agg["bq"]), int(agg["sq"]), agg["ba"], agg["sa"]
    net = bq - sq
    buy_avg = ba / bq if bq else 0.0
    sell_avg = sa / sq if sq else 0.0
    ltp = state.ltp if state else 0.0
    matched = min(bq, sq)
    realised = (sell_avg - buy_avg) * matched if matched else 0.0
    open_avg = buy_avg if net > 0 else sell_avg
    unrealised = (ltp - open_avg) * net if net else 0.0
    return {
        "exchange": exchange, "symboltoken": token, "producttype": product,
        "tradingsymbol": state.symbol if state else "", "symbolname": (
            state.symbol.split("-")[0] if state else ""
        ),
        "instrumenttype": "", "priceden": "1.00", "pricenum": "1.00", "genden": "1.00",
        "gennum": "1.00", "precision": "2", "multiplier": "-1", "boardlotsize": "1",
        "buyqty": str(bq), "sellqty": str(sq), "buyamount": _money(ba),
        "sellamount": _money(sa), "symbolgroup": "EQ", "strikeprice": "-1",
        "optiontype": "", "expirydate": "", "lotsize": "1", "cfbuyqty": "0",
        "cfsellqty": "0", "cfbuyamount": "0.00", "cfsellamount": "0.00",
        "buyavgprice": _money(buy_avg), "sellavgprice": _money(sell_avg),
        "avgnetprice": _money(open_avg if net else 0.0), "netvalue": _money(sa - ba),
        "netqty": str(net), "totalbuyvalue": _money(ba), "totalsellvalue": _money(sa),
        "cfbuyavgprice": "0.00", "cfsellavgprice": "0.00",
        "totalbuyavgprice": _money(buy_avg), "totalsellavgprice": _money(sell_avg),
        "netprice": _money(open_avg if net else 0.0), "ltp": _money(ltp),
        "close": _money(state.close_paise / 100 if state else 0.0),
        "realised": _money(realised), "unrealised": _money(unrealised),
        "pnl": _money(realised + unrealised),
    }
