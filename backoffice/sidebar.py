"""Sidebar entries show only to those who may open them (the page would answer 403 otherwise)."""

from collections.abc import Callable


def may_view(model_label: str) -> Callable:
    """A permission callback for Unfold's sidebar: the model's admin lets this person see its list."""

    def check(request) -> bool:
        from django.apps import apps
        from django.contrib import admin

        model_admin = admin.site._registry.get(apps.get_model(model_label))
        return bool(
            model_admin is not None
            and model_admin.has_module_permission(request)
            and model_admin.has_view_permission(request)
        )

    check.__name__ = f"may_view_{model_label.replace('.', '_')}"
    return check
