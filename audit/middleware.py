from audit.context import request_context
from common.net import client_ip


class AuditContextMiddleware:
    """After AuthenticationMiddleware: records written during the request know its user and address."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # request.user stays lazy: it is read only if a record is written without an actor.
        with request_context(user=getattr(request, "user", None), ip=client_ip(request)):
            return self.get_response(request)
