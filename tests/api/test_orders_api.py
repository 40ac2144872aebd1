from decimal import Decimal

import pytest

from backoffice.services import api_token_issue
from orders.models import Order, OrderStatus, Product
from payments.models import Payment, PaymentStatus
from tests.conftest import ApiClient, order_body

ORDERS = "/api/v1/orders"


# --- placing an order with the original service's body ---------------------------------------------
def test_original_body_is_accepted_and_answered_in_camel_case(fake_daraja, api_client, products):
    body = order_body(product_id=products[1].pk, quantity=2, phone="0708374149")

    response = api_client.post_json(ORDERS, body)

    assert response.status_code == 201, response.content
    order, payment = response.json()["order"], response.json()["payment"]
    assert order["status"] == "PENDING"
    assert order["paymentMethod"] == "mpesa"
    assert order["total"] == 900.0
    assert order["currency"] == "KES"
    assert len(order["reference"]) == 8
    assert order["items"] == [
        {
            "productId": products[1].pk,
            "name": "Tea 500 g",
            "quantity": 2,
            "unitPrice": 450.0,
            "lineTotal": 900.0,
        }
    ]
    assert order["shipping"] == {
        "fullName": "Test User",
        "address": "123 Test St",
        "city": "Nairobi",
        "postalCode": "00100",
        "phone": "+254700000000",
    }
    assert order["payment"]["id"] == payment["id"]
    assert [p["id"] for p in order["payments"]] == [payment["id"]]
    assert {"createdAt", "updatedAt"} <= order.keys()
    assert payment["status"] == "initiated"
    assert payment["method"] == "mpesa"
    assert payment["amount"] == 900.0
    assert "checkoutRequestId" not in payment and "checkoutRequestId" not in order["payments"][0]
    assert Payment.objects.get(pk=payment["id"]).checkout_request_id.startswith("ws_CO_")
    assert payment["mpesaReceiptNumber"] is None
    assert payment["orderId"] == order["id"]
    assert payment["orderStatus"] == "PENDING"
    assert payment["retryable"] is False
    assert payment["phone"] == "2547*****149"  # never the full number in an API answer
    assert fake_daraja.pushes[0]["PartyA"] == "254708374149"
    assert fake_daraja.pushes[0]["Amount"] == 900


def test_order_can_be_read_back_by_its_owner(fake_daraja, api_client, products):
    created = api_client.post_json(ORDERS, order_body(product_id=products[0].pk)).json()["order"]

    response = api_client.get(f"{ORDERS}/{created['id']}")

    assert response.status_code == 200
    assert response.json()["reference"] == created["reference"]
    assert response.json()["payments"][0]["status"] == "initiated"


def test_total_with_cents_is_charged_in_whole_shillings_rounded_up(fake_daraja, api_client, db):
    product = Product.objects.create(sku="SOAP", name="Soap", price=Decimal("10.20"))

    response = api_client.post_json(ORDERS, order_body(product_id=product.pk))

    assert response.status_code == 201
    assert response.json()["order"]["total"] == 10.2
    assert response.json()["payment"]["amount"] == 11.0
    assert fake_daraja.pushes[0]["Amount"] == 11


# --- validation --------------------------------------------------------------------------------------
def _without(body: dict, *path: str) -> dict:
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(lambda b: _without(b, "items"), "items", id="no-items"),
        pytest.param(lambda b: {**b, "items": []}, "items", id="empty-items"),
        pytest.param(lambda b: b["items"][0].update(quantity=0) or b, "items[0].quantity", id="quantity-0"),
        pytest.param(
            lambda b: b["items"][0].update(quantity=1001) or b, "items[0].quantity", id="quantity-huge"
        ),
        pytest.param(
            lambda b: b["items"][0].update(quantity="two") or b, "items[0].quantity", id="quantity-text"
        ),
        pytest.param(
            lambda b: b["items"][0].update(productId=99999) or b, "items[0].productId", id="unknown-product"
        ),
        pytest.param(lambda b: b["items"][0].update(price=-1) or b, "items[0].price", id="negative-price"),
        pytest.param(lambda b: _without(b, "shipping"), "shipping", id="no-shipping"),
        pytest.param(lambda b: b["shipping"].update(fullName="") or b, "shipping.fullName", id="empty-name"),
        pytest.param(lambda b: _without(b, "shipping", "city"), "shipping.city", id="no-city"),
        pytest.param(
            lambda b: b["payment"].update(method="bitcoin") or b, "payment.method", id="unknown-method"
        ),
        pytest.param(lambda b: _without(b, "payment"), "payment", id="no-payment"),
    ],
)
def test_invalid_orders_get_400_naming_the_field_and_nothing_is_charged(
    fake_daraja, api_client, products, mutate, field
):
    body = mutate(order_body(product_id=products[0].pk))

    response = api_client.post_json(ORDERS, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"]
    assert field in error["fields"], error["fields"]
    assert not Order.objects.exists()
    assert fake_daraja.pushes == []


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b'"text"'])
def test_body_that_is_not_a_json_object_gets_400_in_the_error_shape(fake_daraja, api_client, raw):
    response = api_client.post(ORDERS, data=raw, content_type="application/json")

    assert response.status_code == 400
    assert set(response.json()["error"]) >= {"code", "message", "fields"}
    assert not Order.objects.exists()


@pytest.mark.parametrize("phone", ["0712abc678", "020 2222222", "+255712345678", "0712", "", None])
def test_invalid_mpesa_phone_is_refused_before_any_daraja_call(fake_daraja, api_client, products, phone):
    response = api_client.post_json(ORDERS, order_body(product_id=products[0].pk, phone=phone))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_phone"
    assert "payment.phone" in error["fields"]
    assert fake_daraja.oauth_calls == 0 and fake_daraja.pushes == []
    assert not Order.objects.exists()


def test_price_sent_by_the_client_that_differs_from_the_catalogue_is_refused(
    fake_daraja, api_client, products
):
    response = api_client.post_json(ORDERS, order_body(product_id=products[1].pk, price="1.00"))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "price_mismatch"
    assert "450" in error["fields"]["items[0].price"]
    assert not Order.objects.exists()
    assert not Payment.objects.exists()
    assert fake_daraja.pushes == []


@pytest.mark.parametrize("price", ["450.00", 450, "450", 450.0])
def test_price_sent_by_the_client_that_matches_the_catalogue_is_accepted(
    fake_daraja, api_client, products, price
):
    response = api_client.post_json(ORDERS, order_body(product_id=products[1].pk, price=price))

    assert response.status_code == 201
    assert fake_daraja.pushes[0]["Amount"] == 450


def test_totals_and_unknown_fields_sent_by_the_client_are_ignored(fake_daraja, api_client, products):
    body = {**order_body(product_id=products[1].pk), "total": 1, "amount": 1, "currency": "USD", "userId": 1}
    body["payment"]["amount"] = 1

    response = api_client.post_json(ORDERS, body)

    assert response.status_code == 201
    assert response.json()["order"]["total"] == 450.0
    assert response.json()["order"]["currency"] == "KES"
    assert fake_daraja.pushes[0]["Amount"] == 450


def test_inactive_product_cannot_be_ordered(fake_daraja, api_client, products):
    Product.objects.filter(pk=products[0].pk).update(is_active=False)

    response = api_client.post_json(ORDERS, order_body(product_id=products[0].pk))

    assert response.status_code == 400
    assert "items[0].productId" in response.json()["error"]["fields"]


def test_order_above_the_mpesa_limit_is_refused_before_any_daraja_call(fake_daraja, api_client, db):
    car = Product.objects.create(sku="CAR", name="Car", price=Decimal("250001.00"))

    response = api_client.post_json(ORDERS, order_body(product_id=car.pk))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "amount_out_of_range"
    assert fake_daraja.pushes == []


# --- payment methods ------------------------------------------------------------------------------
def test_card_payment_gets_a_clear_refusal(fake_daraja, api_client, products):
    response = api_client.post_json(ORDERS, order_body(product_id=products[0].pk, method="card"))

    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert error["code"] == "payment_method_unavailable"
    assert "Card" in error["message"]
    assert not Order.objects.exists()


def test_cash_on_delivery_confirms_the_order_without_calling_daraja(fake_daraja, api_client, products):
    response = api_client.post_json(ORDERS, order_body(product_id=products[0].pk, method="cod", phone=None))

    assert response.status_code == 201
    assert response.json()["order"]["status"] == OrderStatus.CONFIRMED
    assert response.json()["payment"]["status"] == PaymentStatus.PENDING_DELIVERY
    assert response.json()["payment"]["retryable"] is False
    assert fake_daraja.oauth_calls == 0 and fake_daraja.pushes == []


# --- Idempotency-Key ------------------------------------------------------------------------------
def test_same_idempotency_key_returns_the_same_order_and_charges_once(fake_daraja, api_client, products):
    body = order_body(product_id=products[0].pk)

    first = api_client.post_json(ORDERS, body, HTTP_IDEMPOTENCY_KEY="checkout-7f3a")
    second = api_client.post_json(ORDERS, body, HTTP_IDEMPOTENCY_KEY="checkout-7f3a")

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["order"]["id"] == first.json()["order"]["id"]
    assert second.json()["payment"]["id"] == first.json()["payment"]["id"]
    assert Order.objects.count() == 1
    assert len(fake_daraja.pushes) == 1


def test_different_idempotency_keys_and_different_users_make_separate_orders(
    fake_daraja, api_client, other_api_client, products
):
    body = order_body(product_id=products[0].pk)

    a = api_client.post_json(ORDERS, body, HTTP_IDEMPOTENCY_KEY="k1").json()["order"]["id"]
    b = api_client.post_json(ORDERS, body, HTTP_IDEMPOTENCY_KEY="k2").json()["order"]["id"]
    c = other_api_client.post_json(ORDERS, body, HTTP_IDEMPOTENCY_KEY="k1").json()["order"]["id"]

    assert len({a, b, c}) == 3


# --- authentication and who sees what ----------------------------------------------------------
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Bearer not-a-real-token",
        "Token bo_whatever",
        "Basic dXNlcjpwYXNz",
        "Bearer " + "x" * 500,
    ],
)
def test_missing_or_bad_token_gets_401(fake_daraja, products, authorization):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    client = ApiClient()

    response = client.post_json(ORDERS, order_body(product_id=products[0].pk), **extra)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response["WWW-Authenticate"] == "Bearer"
    assert not Order.objects.exists()


def test_revoked_token_and_inactive_user_get_401(db, django_user_model):
    from django.utils import timezone

    revoked, revoked_raw, _ = api_token_issue(username="gone")
    revoked.revoked_at = timezone.now()
    revoked.save()
    _token, inactive_raw, _ = api_token_issue(username="left-company")
    django_user_model.objects.filter(username="left-company").update(is_active=False)

    for raw in (revoked_raw, inactive_raw):
        assert ApiClient(raw).get(f"{ORDERS}/1").status_code == 401


def test_another_users_order_and_payment_are_not_found(fake_daraja, api_client, other_api_client, products):
    created = api_client.post_json(ORDERS, order_body(product_id=products[0].pk)).json()
    order_id, payment_id = created["order"]["id"], created["payment"]["id"]

    for response in (
        other_api_client.get(f"{ORDERS}/{order_id}"),
        other_api_client.get(f"/api/v1/payments/{payment_id}/status"),
        other_api_client.get(f"/api/v1/payments/mpesa/{payment_id}/status"),
        other_api_client.post_json(f"/api/v1/payments/{payment_id}/retry"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert fake_daraja.queries == []
    assert Payment.objects.count() == 1


def test_staff_token_sees_every_order_and_payment(fake_daraja, api_client, staff_api_client, products):
    created = api_client.post_json(ORDERS, order_body(product_id=products[0].pk)).json()

    assert staff_api_client.get(f"{ORDERS}/{created['order']['id']}").status_code == 200
    assert staff_api_client.get(f"/api/v1/payments/{created['payment']['id']}/status").status_code == 200


# --- public catalogue and docs -----------------------------------------------------------------
def test_catalogue_is_public_and_lists_active_products_only(client, products):
    Product.objects.filter(pk=products[2].pk).update(is_active=False)

    response = client.get("/api/v1/products")

    assert response.status_code == 200
    assert response.json() == [
        {
            "id": products[0].pk,
            "sku": "DEMO-001",
            "name": "Test item",
            "description": "",
            "price": 10.0,
            "currency": "KES",
        },
        {
            "id": products[1].pk,
            "sku": "TEA-500",
            "name": "Tea 500 g",
            "description": "",
            "price": 450.0,
            "currency": "KES",
        },
    ]


def test_api_docs_and_openapi_schema_load(client, db):
    docs = client.get("/api/v1/docs")
    schema = client.get("/api/v1/openapi.json")

    assert docs.status_code == 200
    assert b"openapi.json" in docs.content
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/orders", "/api/v1/products", "/api/v1/payments/{payment_id}/retry"} <= paths.keys()
    assert "/api/v1/payments/mpesa/{payment_id}/status" in paths


def test_an_invalid_email_is_a_clear_400_and_no_order(api_client, products):
    body = {**order_body(product_id=products[0].pk, method="cod"), "email": "not-an-email"}

    response = api_client.post_json("/api/v1/orders", body)

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"email": "Not an email address."}
    assert not Order.objects.exists()


def test_product_id_beyond_any_database_id_is_a_400_not_a_crash(fake_daraja, api_client, products):
    # SQLite raised OverflowError looking the product up: a 500.
    response = api_client.post_json(ORDERS, order_body(product_id=2**70))

    assert response.status_code == 400, response.content
    assert "items[0].productId" in response.json()["error"]["fields"]
    assert not Order.objects.exists()


@pytest.mark.parametrize("field", ["fullName", "address", "city", "postalCode", "phone"])
def test_null_character_in_shipping_details_is_a_400_not_a_crash(fake_daraja, api_client, products, field):
    # PostgreSQL text cannot hold NUL: saving the order was a 500 (DataError).
    body = order_body(product_id=products[0].pk)
    body["shipping"][field] = "Nai\x00robi"

    response = api_client.post_json(ORDERS, body)

    assert response.status_code == 400, response.content
    assert f"shipping.{field}" in response.json()["error"]["fields"]
    assert not Order.objects.exists()
    assert fake_daraja.pushes == []


def test_null_character_in_the_idempotency_key_is_a_400_not_a_crash(fake_daraja, api_client, products):
    response = api_client.post_json(
        ORDERS, order_body(product_id=products[0].pk), HTTP_IDEMPOTENCY_KEY="order-1\x00"
    )

    assert response.status_code == 400, response.content
    assert "Idempotency-Key" in response.json()["error"]["fields"]
    assert not Order.objects.exists()
