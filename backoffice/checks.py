from django.conf import settings
from django.core.checks import Error, Tags, register


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
