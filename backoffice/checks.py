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
