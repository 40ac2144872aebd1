"""Who may see figures: collections, success rates and refunds are read by staff who may view payments."""

FIGURES_PERMISSION = "payments.view_payment"


def can_see_figures(user) -> bool:
    return bool(user and user.is_active and user.is_staff and user.has_perm(FIGURES_PERMISSION))
