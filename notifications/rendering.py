"""Rendering message templates (Django template syntax) and refusing broken ones when they are saved.

Templates are edited by staff, so they only ever see a context of plain strings, numbers and booleans
(notifications.context): no model objects whose attributes could be walked. SMS and email text are
rendered without HTML escaping; an email's HTML part is rendered with it.
"""

import re
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.template import Context, Engine, TemplateSyntaxError
from django.template.loader import render_to_string

_INVALID = "\x00INVALID[%s]\x00"
_INVALID_RE = re.compile("\x00INVALID\\[(.*?)\\]\x00")


class TemplateProblem(Exception):
    pass


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


@cache
def _engine(*, autoescape: bool, strict: bool) -> Engine:
    return Engine(
        autoescape=autoescape,
        string_if_invalid=_INVALID if strict else "",
        libraries={"humanize": "django.contrib.humanize.templatetags.humanize"},
    )


class _RecordingContext(Context):
    """Remembers every top-level name the template asked for and did not find (also inside {% if %})."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.missing: set[str] = set()

    def __getitem__(self, key):
        try:
            return super().__getitem__(key)
        except KeyError:
            self.missing.add(key)
            raise


def validate_template(source: str, *, autoescape: bool = False, context: dict | None = None) -> str:
    """Render `source` against the sample context; raise TemplateProblem on a syntax error, an error
    while rendering, or a variable the context does not have. Returns the sample rendering."""
    from notifications.context import SAMPLE_CONTEXT

    if not source:
        return ""
    try:
        template = _engine(autoescape=autoescape, strict=True).from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"Template syntax error: {exc}") from exc
    recording = _RecordingContext(dict(context or SAMPLE_CONTEXT), autoescape=autoescape)
    try:
        output = template.render(recording)
    except Exception as exc:
        raise TemplateProblem(f"The template fails when rendered: {exc}") from exc
    unknown = recording.missing | set(_INVALID_RE.findall(output))
    if unknown:
        raise TemplateProblem(
            "Unknown variable(s): "
            + ", ".join(sorted(unknown))
            + ". See the list of variables under the template."
        )
    return output


def _render(source: str, context: dict, *, autoescape: bool) -> str:
    if not source:
        return ""
    template = _engine(autoescape=autoescape, strict=False).from_string(source)
    # Context() escapes by default whatever the engine says: say it here too.
    return template.render(Context(context, autoescape=autoescape))


def _tidy_text(text: str) -> str:
    # {% if %} blocks leave double spaces and blank edges behind; an SMS pays for every character.
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def render_message(
    *, channel: str, subject: str, body: str, html_body: str, context: dict
) -> RenderedMessage:
    text = _tidy_text(_render(body, context, autoescape=False))
    if channel != "email":
        return RenderedMessage(subject="", text=text, html="")
    rendered_subject = " ".join(_render(subject, context, autoescape=False).split())
    if html_body:
        html = _render(html_body, context, autoescape=True)
    else:
        html = render_to_string(
            "notifications/email/base.html",
            {
                "subject": rendered_subject,
                "text": text,
                "business_name": context.get("business_name") or settings.NOTIFICATIONS_BUSINESS_NAME,
            },
        )
    return RenderedMessage(subject=rendered_subject, text=text, html=html)
