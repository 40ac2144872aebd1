from django.contrib import admin
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateTimeFilter
from unfold.decorators import display

from orders.models import Customer, Order, OrderItem, OrderStatus, Product
from payments.admin import STATUS_COLOURS
from payments.models import Payment

ORDER_COLOURS = {
    OrderStatus.PENDING: "info",
    OrderStatus.CONFIRMED: "success",
    OrderStatus.CANCELLED: "danger",
}


@admin.register(Product)
class ProductAdmin(ModelAdmin):
    list_display = ["id", "sku", "name", "price", "currency", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["sku", "name"]


@admin.register(Customer)
class CustomerAdmin(ModelAdmin):
    list_display = ["full_name", "email", "masked_phone", "language", "sms_opt_out", "created_at"]
    list_filter = ["language", "sms_opt_out"]
    search_fields = ["full_name", "email", "phone"]
    raw_id_fields = ["user"]

    @display(description="Phone")
    def masked_phone(self, obj):
        from payments.daraja.phone import mask_msisdn

        return mask_msisdn(obj.phone)


class OrderItemInline(TabularInline):
    model = OrderItem
    fields = ["product", "product_name", "quantity", "unit_price", "line_total"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class PaymentInline(TabularInline):
    model = Payment
    fields = [
        "id",
        "method",
        "status",
        "amount",
        "mpesa_receipt_number",
        "result_code",
        "result_desc",
        "created_at",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(ModelAdmin):
    list_display = [
        "reference",
        "show_status",
        "customer",
        "payment_method",
        "total",
        "latest_payment",
        "created_at",
    ]
    list_filter = [("status", ChoicesDropdownFilter), "payment_method", ("created_at", RangeDateTimeFilter)]
    list_filter_submit = True
    search_fields = ["reference", "customer__full_name", "customer__phone", "payments__mpesa_receipt_number"]
    list_select_related = ["customer"]
    inlines = [OrderItemInline, PaymentInline]
    date_hierarchy = "created_at"
    readonly_fields = [
        "reference",
        "owner",
        "customer",
        "status",
        "payment_method",
        "total",
        "currency",
        "payment_due_at",
        "created_at",
        "updated_at",
        "confirmed_at",
        "cancelled_at",
        "cancel_reason",
        "idempotency_key",
    ]
    fieldsets = [
        (
            None,
            {"fields": ["reference", "status", "customer", "owner", "payment_method", "total", "currency"]},
        ),
        (
            "Shipping",
            {
                "fields": [
                    "shipping_full_name",
                    "shipping_address",
                    "shipping_city",
                    "shipping_postal_code",
                    "shipping_phone",
                ]
            },
        ),
        (
            "Times",
            {
                "fields": [
                    "payment_due_at",
                    "created_at",
                    "updated_at",
                    "confirmed_at",
                    "cancelled_at",
                    "cancel_reason",
                ]
            },
        ),
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @display(description="Status", ordering="status", label=ORDER_COLOURS)
    def show_status(self, obj):
        return obj.status, obj.get_status_display()

    @display(description="Payment", label=STATUS_COLOURS)
    def latest_payment(self, obj):
        payment = obj.payments.order_by("-created_at", "-id").first()
        return (payment.status, payment.get_status_display()) if payment else None
