"""Admin for orders: read-mostly. Intents and orders are created by the bot, never here.

Each intent shows its transitions inline (timestamped ``OrderEvent`` rows) and its broker
order; the only actions are cancelling and queueing a reconciliation.
"""

from __future__ import annotations

from django.contrib import admin, messages

from orders.models import Fill, Order, OrderEvent, OrderIntent


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class EventInline(ReadOnlyInline):
    model = OrderEvent
    fk_name = "intent"
    fields = ("at", "from_status", "to_status", "note", "data")
    readonly_fields = fields
    ordering = ("at", "pk")
    verbose_name_plural = "transitions"


class OrderEventInline(EventInline):
    fk_name = "order"


class OrderInline(ReadOnlyInline):
    model = Order
    fields = (
        "broker_order_id",
        "status",
        "broker_status",
        "filled_quantity",
        "average_price",
        "text",
        "adopted",
        "placed_at",
    )
    readonly_fields = fields


class FillInline(ReadOnlyInline):
    model = Fill
    fields = ("fill_id", "quantity", "price", "filled_at")
    readonly_fields = fields


class ReadMostlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]


def _cancel(modeladmin, request, ids: list[tuple[str, int]]) -> None:
    from orders.tasks import cancel_order

    queued = 0
    for key, pk in ids:
        try:
            cancel_order.apply_async(kwargs={key: pk, "reason": f"admin {request.user}"})
            queued += 1
        except Exception as exc:
            modeladmin.message_user(request, f"cancel not queued: {exc}", messages.ERROR)
            return
    modeladmin.message_user(request, f"{queued} cancels queued", messages.SUCCESS)


def _reconcile(modeladmin, request) -> None:
    from orders.tasks import reconcile_orders

    try:
        reconcile_orders.apply_async(kwargs={"reason": f"admin {request.user}"})
    except Exception as exc:
        modeladmin.message_user(request, f"reconciliation not queued: {exc}", messages.ERROR)
        return
    modeladmin.message_user(request, "reconciliation queued", messages.SUCCESS)


@admin.register(OrderIntent)
class OrderIntentAdmin(ReadMostlyAdmin):
    list_display = (
        "ordertag",
        "created_at",
        "instrument",
        "side",
        "quantity",
        "order_type",
        "price",
        "status",
        "strategy",
        "is_exit",
        "square_off",
        "send_count",
    )
    list_filter = ("status", "side", "strategy", "is_exit", "square_off")
    search_fields = ("ordertag", "instrument__symbol", "strategy", "reason")
    date_hierarchy = "created_at"
    list_select_related = ("instrument",)
    inlines = (OrderInline, EventInline)
    actions = ("cancel_intents", "reconcile_now")

    @admin.action(description="Cancel selected intents (and their broker orders)")
    def cancel_intents(self, request, queryset):
        _cancel(self, request, [("intent_id", pk) for pk in queryset.values_list("pk", flat=True)])

    @admin.action(description="Reconcile with the broker now")
    def reconcile_now(self, request, queryset):
        _reconcile(self, request)


@admin.register(Order)
class OrderAdmin(ReadMostlyAdmin):
    list_display = (
        "broker_order_id",
        "placed_at",
        "ordertag",
        "tradingsymbol",
        "side",
        "quantity",
        "status",
        "broker_status",
        "filled_quantity",
        "average_price",
        "adopted",
    )
    list_filter = ("status", "adopted", "side")
    search_fields = ("broker_order_id", "unique_order_id", "ordertag", "tradingsymbol")
    date_hierarchy = "placed_at"
    inlines = (FillInline, OrderEventInline)
    actions = ("cancel_orders",)

    @admin.action(description="Cancel selected orders at the broker")
    def cancel_orders(self, request, queryset):
        _cancel(self, request, [("order_pk", pk) for pk in queryset.values_list("pk", flat=True)])
