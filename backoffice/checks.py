from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=False)
def simulator_only_in_simulator_environment(app_configs, **kwargs):
    """The built-in Daraja simulator must never be reachable outside MPESA_ENVIRONMENT=simulator."""
    from django.urls import NoReverseMatch, reverse

    if settings.MPESA_ENVIRONMENT == "simulator":
        return []
    try:
        reverse("simulator:oauth")
    except NoReverseMatch:
        return []
    return [
        Error(
            "The Daraja simulator is mounted although MPESA_ENVIRONMENT is not 'simulator'.",
            id="backoffice.E001",
        )
    ]


@register(Tags.security)
def callback_url_acceptable_to_safaricom(app_configs, **kwargs):
    """Safaricom drops callbacks to URLs with certain words, and production needs HTTPS (daraja.md §8)."""
    from payments.callback_urls import forbidden_words_in, stk_callback_url

    problems = []
    try:
        url = stk_callback_url()
    except Exception:  # URLconf not loadable yet: other checks report that.
        return []
    words = forbidden_words_in(url)
    if words:
        problems.append(
            Error(
                f"The callback URL {settings.MPESA_CALLBACK_BASE_URL}/… contains {', '.join(words)}, "
                "which Safaricom rejects in callback URLs.",
                hint="Serve the app under a host and path without those words (MPESA_CALLBACK_BASE_URL).",
                id="backoffice.E002",
            )
        )
    if settings.MPESA_ENVIRONMENT == "production" and not url.startswith("https://"):
        problems.append(
            Error("Production callbacks must use HTTPS (MPESA_CALLBACK_BASE_URL).", id="backoffice.E003")
        )
    return problems


@register(Tags.security, deploy=True)
def legacy_callback_restricted_outside_simulator(app_configs, **kwargs):
    """The original callback path has no secret: outside the simulator only Safaricom should reach it."""
    if (
        settings.MPESA_ENVIRONMENT == "simulator"
        or not settings.MPESA_LEGACY_CALLBACK_ENABLED
        or settings.MPESA_CALLBACK_ALLOWED_IPS
    ):
        return []
    return [
        Warning(
            "MPESA_LEGACY_CALLBACK_ENABLED is on without MPESA_CALLBACK_ALLOWED_IPS: anyone can post to "
            "/api/v1/payments/mpesa/callback and make this site send STK Queries to Daraja.",
            hint="Set MPESA_CALLBACK_ALLOWED_IPS to Safaricom's callback addresses, or turn the legacy path off "
            "once Daraja posts to the secret callback URL.",
            id="backoffice.W001",
        )
    ]


@register(Tags.security, deploy=True)
def callback_urls_survive_ssl_redirect(app_configs, **kwargs):
    """Daraja does not follow redirects: with SECURE_SSL_REDIRECT an http:// callback URL is answered 301."""
    if not settings.SECURE_SSL_REDIRECT:
        return []
    bases = {
        settings.MPESA_CALLBACK_BASE_URL,
        settings.MPESA_RESULT_BASE_URL or settings.MPESA_CALLBACK_BASE_URL,
    }
    if not any(base.startswith("http://") for base in bases):
        return []
    return [
        Warning(
            "SECURE_SSL_REDIRECT is on but a Daraja callback or result URL starts with http://: "
            "Daraja's POSTs there get a redirect and are lost.",
            hint="Use https:// in MPESA_CALLBACK_BASE_URL and MPESA_RESULT_BASE_URL.",
            id="backoffice.W002",
        )
    ]
