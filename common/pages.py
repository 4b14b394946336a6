"""Pages every app shows the same way."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def confirm_page(
    request: HttpRequest,
    *,
    title: str,
    text: str,
    button: str,
    cancel: str,
    tab: str = "",
    crumbs: tuple[tuple[str, str], ...] = (),
) -> HttpResponse:
    """The confirmation page every destructive action shows before its POST.

    ``tab`` puts it under the audiences tabs; ``crumbs`` ((label, url), …) under a breadcrumb.
    """
    context = {"title": title, "text": text, "button": button, "cancel": cancel, "tab": tab, "crumbs": crumbs}
    return render(request, "confirm.html", context)
