"""The API keys page: an organisation's administrators create keys (shown once) and revoke them."""

from __future__ import annotations

from datetime import datetime, time

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from api.forms import KeyForm
from api.keys import KeyRefused, api_key_create, api_key_revoke
from api.models import ApiKey
from organisations.scope import get_or_404


@require_http_methods(["GET", "POST"])
def keys(request: HttpRequest) -> HttpResponse:
    form = KeyForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        expires_on = form.cleaned_data["expires_on"]
        expires_at = timezone.make_aware(datetime.combine(expires_on, time.max)) if expires_on is not None else None
        try:
            key, raw = api_key_create(
                organisation=request.organisation,
                role=form.cleaned_data["role"],
                name=form.cleaned_data["name"],
                created_by=request.user,
                expires_at=expires_at,
                request=request,
            )
        except KeyRefused as refusal:
            form.add_error(None, str(refusal))
        else:
            # Shown on this answer only: the key is not stored, so it cannot be shown again.
            created = (key, raw)
            form = KeyForm()
    context = {
        "keys": ApiKey.objects.filter(organisation=request.organisation).select_related("created_by"),
        "form": form,
        "created": created,
        "tab": "api_keys",
    }
    return render(request, "api/keys.html", context, status=400 if form.errors else 200)


@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_or_404(request, ApiKey, pk=pk)
    try:
        api_key_revoke(key=key, request=request)
    except KeyRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"The key “{key.name}” is revoked: programs using it get 401 from now on.")
    return redirect("api_keys:list")
