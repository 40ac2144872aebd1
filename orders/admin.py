from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.shortcuts import render
from django.urls import reverse
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateTimeFilter
from unfold.decorators import action, display
from unfold.forms import BaseDialogForm
from unfold.widgets import UnfoldAdminTextareaWidget

from audit.admin import AuditTimelineMixin
from common.admin import ContactMaskingMixin, confirm_dialog, dialog_redirect
from common.masking import mask_email
from common.phone import mask_msisdn
from exports.admin import ExportListMixin
from exports.columns import ExportColumn
from orders.exceptions import OrderError
from orders.models import Customer, Order, OrderItem, OrderStatus, Product
from orders.services import order_cancel
from payments.admin import STATUS_COLOURS
from payments.models import Payment, PaymentMethod, PaymentStatus

ORDER_COLOURS = {
    OrderStatus.PENDING: "info",
    OrderStatus.CONFIRMED: "success",
    OrderStatus.CANCELLED: "danger",
}

# The columns of the exported list (exports.columns).
ORDER_EXPORT_COLUMNS = (
    ExportColumn("Reference", "reference"),
    ExportColumn("Status", "status", "label"),
    ExportColumn("Contact name", "contact_name"),
    ExportColumn("Contact phone", "contact_phone", "phone"),
    ExportColumn("Contact email", "contact_email", "email"),
    ExportColumn("Payment method", "payment_method", "label", choices=PaymentMethod.choices),
    ExportColumn("Total (KES)", "total", "money"),
    ExportColumn(
        "Latest payment",
        "latest_payment_status",
        "label",
        choices=PaymentStatus.choices,
        expression=Subquery(
            Payment.objects.filter(order=OuterRef("pk")).order_by("-created_at", "-id").values("status")[:1]
        ),
    ),
    ExportColumn("Created (Nairobi)", "created_at", "datetime"),
    ExportColumn("Confirmed (Nairobi)", "confirmed_at", "datetime"),
    ExportColumn("Cancelled (Nairobi)", "cancelled_at", "datetime"),
    ExportColumn("Cancel reason", "cancel_reason", width=32),
)


@admin.register(Product)
class ProductAdmin(ModelAdmin):
    list_display = ["id", "sku", "name", "price", "currency", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["sku", "name"]


@admin.register(Customer)
class CustomerAdmin(AuditTimelineMixin, ContactMaskingMixin, ModelAdmin):
    masked_contacts = {"masked_email": "email", "masked_phone": "phone"}
    list_display = ["full_name", "masked_email", "masked_phone", "language", "sms_opt_out", "created_at"]
    list_filter = ["language", "sms_opt_out"]
    search_fields = ["full_name", "email", "phone"]
    fields = ["full_name", "masked_email", "masked_phone", "language", "sms_opt_out", "created_at"]
    readonly_fields = ["created_at"]

    @display(description="Email")
    def masked_email(self, obj):
        return mask_email(obj.email)

    @display(description="Phone")
    def masked_phone(self, obj):
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


class CancelOrderForm(BaseDialogForm):
    reason = forms.CharField(
        max_length=150, widget=UnfoldAdminTextareaWidget(attrs={"rows": 2}), help_text="Kept on the order."
    )


@admin.register(Order)
class OrderAdmin(ExportListMixin, AuditTimelineMixin, ContactMaskingMixin, ModelAdmin):
    masked_contacts = {
        "masked_contact_phone": "contact_phone",
        "masked_contact_email": "contact_email",
        "masked_shipping_phone": "shipping_phone",
    }

    def audit_subjects(self, obj):
        payments = list(obj.payments.prefetch_related("refunds"))
        return [obj, *payments, *(refund for payment in payments for refund in payment.refunds.all())]

    actions_detail = ["cancel"]
    list_display = [
        "reference",
        "show_status",
        "contact_name",
        "masked_contact_phone",
        "masked_contact_email",
        "payment_method",
        "total",
        "latest_payment",
        "created_at",
    ]
    list_filter = [("status", ChoicesDropdownFilter), "payment_method", ("created_at", RangeDateTimeFilter)]
    list_filter_submit = True
    search_fields = [
        "reference",
        "contact_name",
        "contact_phone",
        "contact_email",
        "customer__full_name",
        "customer__phone",
        "payments__mpesa_receipt_number",
    ]
    list_select_related = ["customer"]
    export_columns = ORDER_EXPORT_COLUMNS
    inlines = [OrderItemInline, PaymentInline]
    show_full_result_count = False
    readonly_fields = [
        "reference",
        "owner",
        "customer",
        "status",
        "payment_method",
        "total",
        "currency",
        "contact_name",
        "masked_contact_phone",
        "masked_contact_email",
        "contact_language",
        "contact_sms_opt_out",
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
            "Contact (as given with the order; its messages go here)",
            {
                "fields": [
                    "contact_name",
                    "masked_contact_phone",
                    "masked_contact_email",
                    "contact_language",
                    "contact_sms_opt_out",
                ]
            },
        ),
        (
            "Shipping",
            {
                "fields": [
                    "shipping_full_name",
                    "shipping_address",
                    "shipping_city",
                    "shipping_postal_code",
                    "masked_shipping_phone",
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

    @display(description="Contact phone")
    def masked_contact_phone(self, obj):
        return mask_msisdn(obj.contact_phone)

    @display(description="Contact email")
    def masked_contact_email(self, obj):
        return mask_email(obj.contact_email)

    @display(description="Shipping phone")
    def masked_shipping_phone(self, obj):
        return mask_msisdn(obj.shipping_phone)  # as the customer typed it: first four and last three shown

    @display(description="Payment", label=STATUS_COLOURS)
    def latest_payment(self, obj):
        payment = obj.payments.order_by("-created_at", "-id").first()
        return (payment.status, payment.get_status_display()) if payment else None

    def has_cancel_permission(self, request, object_id=None):
        return request.user.has_perm("orders.cancel_order") and (
            object_id is None
            or Order.objects.filter(pk=object_id).exclude(status=OrderStatus.CANCELLED).exists()
        )

    @action(
        description="Cancel order",
        icon="cancel",
        permissions=["cancel"],
        dialog=confirm_dialog(
            "Cancel this order",
            "Only an order with nothing paid, nothing in flight and nothing under review can be cancelled. "
            "The customer is told.",
            "Cancel order",
            CancelOrderForm,
        ),
    )
    def cancel(self, request, form, object_id):
        try:
            order_cancel(order_id=int(object_id), actor=request.user, reason=form.cleaned_data["reason"])
        except OrderError as exc:
            form.add_error(None, exc.message)
            dialog = self.cancel.dialog
            return render(
                request,
                "unfold/helpers/dialog.html",
                {"dialog": dialog, "form": form, "form_submit_text": dialog["form_submit_text"]},
            )
        messages.success(request, "Order cancelled.")
        return dialog_redirect(reverse("admin:orders_order_change", args=[object_id]))
