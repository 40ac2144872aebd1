import datetime as dt

from ninja import Schema


class PaymentOut(Schema):
    id: int
    status: str
    method: str
    amount: float
    currency: str
    phone: str
    mpesaReceiptNumber: str | None
    resultCode: str | None
    resultDesc: str | None
    failureReason: str | None
    retryable: bool
    orderId: int
    orderStatus: str
    createdAt: dt.datetime
    updatedAt: dt.datetime
