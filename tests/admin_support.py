"""Driving admin action dialogs: a GET shows the dialog; the change is its POST (with a CSRF token)."""

from django.contrib.messages import get_messages


def dialog_post(client, url: str, **fields):
    """POST an Unfold action dialog as its HTMX form does."""
    return client.post(url, {"_form_submitted": "on", **fields}, HTTP_HX_REQUEST="true")


def post_action(client, url: str, **fields):
    """dialog_post, returning (response, [message texts])."""
    response = dialog_post(client, url, **fields)
    return response, [str(m) for m in get_messages(response.wsgi_request)]
