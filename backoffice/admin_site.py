from django.conf import settings


def environment_callback(request):
    colours = {"simulator": "info", "sandbox": "warning", "production": "danger"}
    env = settings.MPESA_ENVIRONMENT
    return [f"M-Pesa: {env}", colours.get(env, "info")]
