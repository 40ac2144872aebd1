import pytest
from django.urls import reverse

from payments.callback_urls import callback_token
from payments.models import PaymentStatus


@pytest.fixture
def callback_path():
    """The tokenised STK callback path we hand to Daraja."""
    return reverse("payments:stk-callback", kwargs={"token": callback_token()})


@pytest.fixture
def initiated(fake_daraja, place_order):
    """An M-Pesa payment whose push Daraja accepted: waiting for its callback."""
    _order, payment = place_order()
    assert payment.status == PaymentStatus.INITIATED
    return payment
