"""Django's Content-Security-Policy middleware, plus a floor under the policies views set themselves.

Django's middleware builds the header from ``SECURE_CSP`` and leaves alone a response whose view
already set one (the campaign preview and the view-online page serve campaign HTML under a
stricter policy of their own). Such a hand-written policy can forget a directive that has no
``default-src`` fallback, e.g. ``base-uri`` or ``frame-ancestors``, and then that directive allows
everything. This middleware appends those directives from ``SECURE_CSP`` when the view's policy
lacks them. Appending one of them can only restrict: a missing directive of this kind allows
everything, and no fetch directive is ever added, since adding ``img-src`` to a policy whose
``default-src`` is ``'none'`` would loosen it.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware import csp
from django.utils.csp import CSP, build_policy

HEADER = str(CSP.HEADER_ENFORCE)  # a plain str: WSGI servers refuse other header types
# Directives that do not fall back to default-src (plus object-src, whose site-wide value is 'none').
FLOOR_DIRECTIVES = ("object-src", "base-uri", "form-action", "frame-ancestors")


class ContentSecurityPolicyMiddleware(csp.ContentSecurityPolicyMiddleware):
    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        own_policy = response.get(HEADER)
        response = super().process_response(request, response)
        if own_policy is not None:
            response[HEADER] = policy_with_floor(own_policy, settings.SECURE_CSP)
        return response


def policy_with_floor(policy: str, site_policy: dict) -> str:
    """``policy`` with the site-wide value of each floor directive it does not set itself."""
    present = {part.split()[0].lower() for part in policy.split(";") if part.strip()}
    missing = {name: site_policy[name] for name in FLOOR_DIRECTIVES if name in site_policy and name not in present}
    if not missing:
        return policy
    return f"{policy.rstrip().rstrip(';')}; {build_policy(missing)}"
