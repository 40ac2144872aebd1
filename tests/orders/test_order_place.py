from decimal import Decimal

import pytest

from orders.exceptions import OrderError
from orders.models import Customer, Order, OrderStatus, Product
from orders.services import ItemRequest, Shipping, order_place
from payments.models import EventKind, PaymentStatus

SHIPPING = Shipping(full_name="Wanjiku Kamau", address="Moi Avenue 1", city="Nairobi")


def place(owner, items, **kwargs):
    kwargs.setdefault("payment_method", "mpesa")
    kwargs.setdefault("payment_phone", "0708374149")
    return order_place(owner=owner, items=items, shipping=SHIPPING, **kwargs)


def test_total_comes_from_the_catalogue_and_items_keep_the_price_paid(fake_daraja, api_user, products):
    order, payment, created = place(
        api_user,
        [
            ItemRequest(product_id=products[1].pk, quantity=3),
            ItemRequest(product_id=products[2].pk, quantity=1),
        ],
    )
    Product.objects.filter(pk=products[1].pk).update(price=Decimal("999.00"), name="Renamed tea")

    assert created
    assert order.total == Decimal("3200.50")
    assert payment.amount == Decimal("3201")  # M-Pesa charges whole shillings
    lines = [(i.product_name, i.quantity, i.unit_price, i.line_total) for i in order.items.all()]
    assert lines == [
        ("Tea 500 g", 3, Decimal("450.00"), Decimal("1350.00")),
        ("Cotton kikoy", 1, Decimal("1850.50"), Decimal("1850.50")),
    ]


def test_client_price_is_checked_and_never_charged(fake_daraja, api_user, products):
    with pytest.raises(OrderError) as refused:
        place(api_user, [ItemRequest(product_id=products[1].pk, quantity=1, price=Decimal("45.00"))])

    assert refused.value.code == "price_mismatch"
    assert not Order.objects.exists()
    assert fake_daraja.pushes == []


def test_mixed_problems_are_reported_together_as_a_validation_error(fake_daraja, api_user, products):
    with pytest.raises(OrderError) as refused:
        place(
            api_user,
            [
                ItemRequest(product_id=products[1].pk, quantity=1, price=Decimal("1")),
                ItemRequest(product_id=424242, quantity=1),
            ],
        )

    assert refused.value.code == "validation_error"
    assert set(refused.value.fields) == {"items[0].price", "items[1].productId"}


def test_order_keeps_its_contact_and_finds_the_customer_by_normalised_phone(fake_daraja, api_user, products):
    order, _, _ = place(
        api_user,
        [ItemRequest(product_id=products[0].pk, quantity=1)],
        payment_phone="+254 708 374 149",
        email="w@example.com",
    )
    again, _, _ = place(
        api_user, [ItemRequest(product_id=products[0].pk, quantity=1)], payment_phone="0708374149", email=""
    )

    customer = Customer.objects.get(phone="254708374149")
    assert (customer.email, customer.full_name) == ("w@example.com", "Wanjiku Kamau")
    assert order.customer == customer and again.customer == customer
    assert (order.contact_phone, order.contact_email, order.contact_name) == (
        "254708374149",
        "w@example.com",
        "Wanjiku Kamau",
    )
    assert again.contact_email == ""


def test_mpesa_order_has_a_payment_deadline_and_cod_does_not(fake_daraja, api_user, products):
    mpesa, _, _ = place(api_user, [ItemRequest(product_id=products[0].pk, quantity=1)])
    cod, cod_payment, _ = place(
        api_user, [ItemRequest(product_id=products[0].pk, quantity=1)], payment_method="cod"
    )

    assert mpesa.payment_due_at is not None
    assert cod.payment_due_at is None
    assert cod.status == OrderStatus.CONFIRMED
    assert cod_payment.status == PaymentStatus.PENDING_DELIVERY


def test_attempt_is_recorded_before_the_push_is_sent(fake_daraja, api_user, products):
    _order, payment, _ = place(api_user, [ItemRequest(product_id=products[0].pk, quantity=1)])

    events = list(payment.events.values_list("kind", "to_status"))
    assert events == [
        (EventKind.CREATED, PaymentStatus.PENDING),
        (EventKind.PUSH_ACCEPTED, PaymentStatus.INITIATED),
    ]
    assert payment.checkout_request_id
    assert payment.next_query_at is not None


def test_idempotency_key_is_per_owner(fake_daraja, api_user, products, django_user_model):
    other = django_user_model.objects.create_user("other")
    items = [ItemRequest(product_id=products[0].pk, quantity=1)]

    first, _, created_first = place(api_user, items, idempotency_key="abc")
    again, _, created_again = place(api_user, items, idempotency_key="abc")
    theirs, _, created_theirs = place(other, items, idempotency_key="abc")

    assert (created_first, created_again, created_theirs) == (True, False, True)
    assert again.pk == first.pk
    assert theirs.pk != first.pk
    assert len(fake_daraja.pushes) == 2
