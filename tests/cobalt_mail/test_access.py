"""The permission walk: every URL the resolver knows, requested by every kind of visitor, answers
as the table in ``cobalt_mail.permissions.VIEW_ROLES`` says.

The URLs are found from the URL resolver (namespaces included), so a new page cannot escape the
walk: a URL name missing from the table fails ``test_every_url_name_is_in_the_permission_table``.
Each URL is requested with GET and with an empty POST, with the ids of real objects of
organisation A (a club under the national body P, beside its sibling club B), as:

- an anonymous visitor: sent to the login page (public pages: anything but that);
- a logged-in user without any membership: logged out and sent to the login page;
- each role of A: 403 below the role the table asks for, and anything but 403 or the login page
  at or above it;
- B's administrator and P's administrator: 404 for every URL naming one of A's objects (their
  existence is not revealed) with an audit entry, except A's campaign figures, which P (the
  parent) may see;

and never a 500. One test per visitor and method walks every URL on one set of data, and reports
every wrong answer at once (URL name, visitor, got, expected).

``app_urls()`` (every URL name with an example path) is also used by the CSP and browser tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.shortcuts import resolve_url
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from api.keys import api_key_create
from api.webhooks import webhook_endpoint_create
from audiences.models import ImportJob, Suppression
from campaigns.models import Campaign, CampaignAttachment, CampaignTemplate
from cobalt_mail.permissions import (
    API_NAMESPACE,
    LOGGED_IN,
    OPERATOR,
    PUBLIC,
    PUBLIC_URL_NAMES,
    VIEW_ROLES,
    required_role,
)
from organisations.models import AuditEntry, Membership, Organisation, Role, SenderIdentity, role_at_least
from stats.models import CampaignStats
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    LayoutFactory,
    RecipientFactory,
    SegmentFactory,
)

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
ROLES = [Role.VIEWER, Role.EDITOR, Role.SENDER, Role.ADMINISTRATOR]
# What the parent organisation may see of a child's campaign: its figures (aggregate reports).
# The parent's administrators also set a child organisation's quotas.
PARENT_MAY_SEE = frozenset({"reports:campaign", "reports:campaign_live", "organisations:quota"})


# --- the URLs ---------------------------------------------------------------------------------------


def is_api_operation(name: str) -> bool:
    """The API's operations take a key, not a login: tests/api/ walks them with keys of each role."""
    return name.startswith(API_NAMESPACE) and name not in VIEW_ROLES


def app_urls() -> list[tuple[str, str]]:
    """(name, example path) for every named URL of the project but the admin's and the API
    operations', ids set to 1."""
    found = []

    def walk(patterns, prefix="", namespace=""):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                if entry.app_name == "admin":
                    continue
                child_ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                walk(entry.url_patterns, prefix + str(entry.pattern), child_ns)
            elif isinstance(entry, URLPattern) and entry.name and not is_api_operation(namespace + entry.name):
                route = prefix + str(entry.pattern)
                path = "/" + re.sub(r"<int:\w+>", "1", route).replace("<str:token>", "x")
                found.append((namespace + entry.name, path))

    walk(get_resolver().url_patterns)
    return found


def url_parameters(pattern) -> list[str]:
    """The keyword arguments a route or regular-expression pattern captures."""
    return list(pattern.regex.groupindex)


def every_url() -> Iterator[tuple[str, list[str]]]:
    """(full URL name, its keyword arguments) for every named URL, the admin's included, but the
    API operations'."""

    def walk(patterns, namespace="", inherited=()):
        for entry in patterns:
            parameters = [*inherited, *url_parameters(entry.pattern)]
            if isinstance(entry, URLResolver):
                child_ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                yield from walk(entry.url_patterns, child_ns, parameters)
            elif entry.name and not is_api_operation(namespace + entry.name):
                yield namespace + entry.name, parameters

    seen = set()
    for name, parameters in walk(get_resolver().url_patterns):
        if name not in seen:  # a name given twice reverses to its last pattern only
            seen.add(name)
            yield name, parameters


# --- organisation A's objects, and who asks -----------------------------------------------------


@dataclass
class Site:
    parent: Organisation
    club: Organisation  # "A": every id in the walk is one of its objects
    sibling: Organisation  # "B"
    ids: dict[str, int]
    users: dict[str, object]


def site_build(django_user_model) -> Site:
    parent = Organisation.objects.create(name="National body", slug="national")
    club = Organisation.objects.create(name="Club A", slug="club-a", parent=parent)
    sibling = Organisation.objects.create(name="Club B", slug="club-b", parent=parent)

    contact = ContactFactory(organisation=club, email="ada@club-a.example")
    contact_list = ContactListFactory(organisation=club, name="Club A members")
    contact_list.subscriptions.create(contact=contact)
    segment = SegmentFactory(organisation=club)
    layout = LayoutFactory(organisation=club)
    import_job = ImportJob.objects.create(
        organisation=club,
        original_name="members.csv",
        contact_list=contact_list,
        status=ImportJob.Status.DONE,
        rows_read=2,
        created=1,
        rejected=1,
        rejected_preview=[{"line": 3, "reason": "not an email address (no @ sign)", "email": "x", "values": ["x"]}],
    )
    draft = CampaignFactory(organisation=club, layout=layout)
    draft.include_lists.add(contact_list)
    attachment = CampaignAttachment.objects.create(
        campaign=draft,
        file="attachments/programme.pdf",
        filename="programme.pdf",
        content_type="application/pdf",
        size=9,
    )
    template = CampaignTemplate.objects.create(
        organisation=club, name="Newsletter", subject="News", html_body="<p>x</p>"
    )
    now = timezone.now()
    sent = CampaignFactory(
        organisation=club, layout=layout, status=Campaign.Status.SENT, started_at=now, finished_at=now
    )
    sent.include_lists.add(contact_list)
    recipient = RecipientFactory(campaign=sent, contact=contact, sent=True)
    CampaignStats.objects.create(campaign=sent, sent=1, delivered=1)
    suppression = Suppression.objects.create(
        email="gone@club-a.example", reason=Suppression.Reason.HARD_BOUNCE, organisation=club
    )
    api_key, _ = api_key_create(organisation=club, role=Role.VIEWER, name="Membership site")
    webhook = webhook_endpoint_create(organisation=club, url="https://1.1.1.1/hooks/cobalt", event_types=["bounce"])

    def user(username: str, organisation: Organisation | None = None, role: str = ""):
        created = django_user_model.objects.create_user(username=username, password=PASSWORD)
        if organisation is not None:
            Membership.objects.create(user=created, organisation=organisation, role=role)
        return created

    users = {"anonymous": None, "no membership": user("nora.nomember")}
    users |= {f"A {role}": user(f"a.{role}", club, role) for role in ROLES}
    users["B administrator"] = user("b.administrator", sibling, Role.ADMINISTRATOR)
    users["P administrator"] = user("p.administrator", parent, Role.ADMINISTRATOR)
    ids = {
        "organisation": club.pk,
        "contact": contact.pk,
        "list": contact_list.pk,
        "segment": segment.pk,
        "import": import_job.pk,
        "suppression": suppression.pk,
        "draft": draft.pk,
        "sent": sent.pk,
        "recipient": recipient.pk,
        "attachment": attachment.pk,
        "template": template.pk,
        "layout": layout.pk,
        "membership": Membership.objects.get(user=users[f"A {Role.VIEWER}"]).pk,
        "api_key": api_key.pk,
        "webhook": webhook.pk,
        # A row only: the walk's "Check now" and "Remove" find no SES and say so (tests/organisations/test_senders.py
        # talks to the local SES).
        "sender_identity": SenderIdentity.objects.create(organisation=club, kind="domain", value="club-a.example").pk,
    }
    return Site(parent=parent, club=club, sibling=sibling, ids=ids, users=users)


@pytest.fixture
def site(django_user_model, settings, tmp_path) -> Site:
    settings.MEDIA_ROOT = tmp_path
    settings.AWS_SES_REGION_ENDPOINT_URL = "http://127.0.0.1:9"  # no SES here: refused at once, never AWS
    return site_build(django_user_model)


def object_for(name: str, parameter: str) -> str | None:
    """Which of A's objects a URL's argument names (None: not an object of A)."""
    namespace = name.partition(":")[0]
    if namespace not in {"audiences", "campaigns", "compose", "reports", "organisations", "api_keys", "webhooks"}:
        return None
    if parameter == "pk":
        if namespace == "api_keys":
            return "api_key"
        if namespace == "webhooks":
            return "webhook"
        if namespace == "organisations":
            if name.startswith("organisations:sender_"):
                return "sender_identity"
            if name == "organisations:quota":
                return "organisation"
            return "membership" if name.startswith("organisations:member_") else None
        if namespace == "audiences":
            kind = name.split(":")[1].split("_")[0]  # contact_edit → contact, import_detail → import
            return kind if kind in {"contact", "list", "segment", "import", "suppression"} else None
        if name == "reports:timeline":
            return "recipient"
        return "sent" if namespace == "reports" else "draft"
    return {"attachment_pk": "attachment", "template_pk": "template", "layout_pk": "layout"}.get(parameter)


# Arguments that name no object of an organisation: tokens, file names, the admin's app labels.
PLAIN_ARGUMENTS = {
    "token": "x",
    "name": "x.png",
    "app_label": "auth",
    "content_id": "0" * 32,
}


# Every admin page has the one entry "admin" (site operators only), refused by the middleware before
# any admin code runs: a sample of them stands for the ~80 (each one is still checked to be in the
# table by test_every_url_name_is_in_the_permission_table).
ADMIN_SAMPLE = re.compile(r"admin:(index|app_list|login|auth_user_\w+|campaigns_campaign_\w+)$")


@dataclass
class Url:
    name: str
    path: str
    names_an_object: bool  # one of A's objects is in the path


def walk_urls(site: Site) -> list[Url]:
    urls = []
    for name, parameters in every_url():
        if name.startswith("admin:") and not ADMIN_SAMPLE.match(name):
            continue
        kwargs, names_an_object = {}, False
        for parameter in parameters:
            kind = None if VIEW_ROLES.get(name, ("",))[0] == PUBLIC else object_for(name, parameter)
            if kind is not None:
                kwargs[parameter], names_an_object = site.ids[kind], True
            elif parameter in PLAIN_ARGUMENTS:
                kwargs[parameter] = PLAIN_ARGUMENTS[parameter]
            elif name.startswith("admin:"):
                kwargs[parameter] = "1"  # refused before any admin code runs
            elif name == "campaigns:layout_colours":
                kwargs[parameter] = site.ids["layout"]
            else:  # a new page with an id: say in object_for() which object of A it names
                raise AssertionError(f"{name}: which of A's objects does its argument {parameter!r} name?")
        urls.append(Url(name, reverse(name, kwargs=kwargs), names_an_object))
    # Logging out ends the session the rest of the walk needs: last.
    return sorted(urls, key=lambda url: url.name == "logout")


# --- what the table says each visitor gets ----------------------------------------------------------


def is_login_redirect(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith(resolve_url(settings.LOGIN_URL) + "?")


def answer_problem(visitor: str, url: Url, method: str, response) -> str | None:
    """What is wrong with the answer (None: as the table says)."""
    status = response.status_code
    if status == 500 or (status > 500 and url.name != "health"):  # /health/ answers 503 when unwell
        return "a server error (expected never)"
    needed = required_role(url.name, method)
    login = is_login_redirect(response)
    if needed == PUBLIC:
        return "a redirect to the login page (expected: a public page)" if login else None
    if visitor in ("anonymous", "no membership"):
        return None if login else "expected a redirect to the login page"
    role = Role.ADMINISTRATOR if visitor in ("B administrator", "P administrator") else visitor.split()[1]
    if needed == OPERATOR:
        return None if status == 403 else "expected 403 (site operators only)"
    allowed = needed == LOGGED_IN or role_at_least(role, needed)
    if not allowed:
        return None if status == 403 else f"expected 403 (needs {needed})"
    if status == 403 or login:
        return f"expected access ({role} may, the table needs {needed})"
    if visitor.startswith("A ") or not url.names_an_object:
        return None
    if visitor == "P administrator" and url.name in PARENT_MAY_SEE:
        return None if status < 400 or method != "GET" else "expected the parent to see its child's figures"
    # 405: the page does not take this method, refused before any object is looked up.
    return None if status in (404, 405) else "expected 404 (another organisation's object)"


def visitor_client(site: Site, visitor: str) -> Client:
    client = Client(raise_request_exception=False)
    if site.users[visitor] is not None:
        client.force_login(site.users[visitor])
    return client


def walk(site: Site, visitor: str, method: str) -> list[str]:
    """Request every URL as the visitor; one line per answer the table does not allow."""
    client = visitor_client(site, visitor)
    user = site.users[visitor]
    problems = []
    for url in walk_urls(site):
        if user is not None and "_auth_user_id" not in client.session:
            client.force_login(user)  # a refused non-member, or logging out, ended the session
        audit_before = AuditEntry.objects.filter(action=AuditEntry.Action.FORBIDDEN).count()
        response = getattr(client, method.lower())(url.path)
        problem = answer_problem(visitor, url, method, response)
        if problem is None and response.status_code == 404 and url.names_an_object and visitor[0] in "BP":
            audited = AuditEntry.objects.filter(action=AuditEntry.Action.FORBIDDEN).count() > audit_before
            problem = None if audited else "404 without an audit entry (expected one)"
        logged_in = "_auth_user_id" in client.session
        if problem is None and visitor == "no membership" and logged_in and url.name not in PUBLIC_URL_NAMES:
            problem = "still logged in (a user without membership is logged out)"
        if problem:
            where = f" → {response['Location']}" if response.status_code in (301, 302) else ""
            problems.append(
                f"{url.name} ({url.path}) {method} as {visitor}: got {response.status_code}{where}, {problem}"
            )
    return problems


# --- the tests --------------------------------------------------------------------------------------


def test_every_url_name_is_in_the_permission_table():
    missing = [name for name, _ in every_url() if required_role(name, "GET") is None]
    assert missing == [], f"URL names without an entry in cobalt_mail.permissions.VIEW_ROLES: {missing}"


def test_every_entry_of_the_permission_table_is_a_url():
    names = {name for name, _ in every_url()}
    stale = sorted(name for name in VIEW_ROLES if name != "admin" and name not in names)
    assert stale == [], f"VIEW_ROLES entries no URL has: {stale}"


def test_the_walk_covers_the_pages_and_names_real_objects(site):
    urls = {url.name: url for url in walk_urls(site)}
    assert {"home", "campaigns:list", "audiences:contacts", "reports:index", "admin:index", "login"} <= set(urls)
    assert urls["campaigns:detail"].path == f"/campaigns/{site.ids['draft']}/"
    assert urls["reports:timeline"].path == f"/reports/recipients/{site.ids['recipient']}/timeline/"
    assert urls["compose:attachment_delete"].names_an_object
    assert urls["organisations:member_remove"].path == f"/organisations/members/{site.ids['membership']}/remove/"
    assert not urls["campaigns:unsubscribe"].names_an_object


VISITORS = ["anonymous", "no membership", *(f"A {role}" for role in ROLES), "B administrator", "P administrator"]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("visitor", VISITORS)
def test_every_url_answers_each_visitor_as_the_permission_table_says(site, visitor, method):
    problems = walk(site, visitor, method)
    assert problems == [], f"{len(problems)} wrong answers:\n" + "\n".join(problems)


def test_the_public_pages_answer_without_login(client):
    assert client.get("/u/not-a-token/").status_code == 404  # a plain "link not valid" page
    assert client.get("/login/").status_code == 200
    assert client.post("/tracking/ses/", data=b"{}", content_type="text/plain").status_code == 400


def test_staff_see_the_home_page_with_navigation(staff_client):
    response = staff_client.get("/")
    assert response.status_code == 200
    for label in (b"Campaigns", b"Audiences", b"Reports", b"Settings", b"Log out"):
        assert label in response.content


def test_logout_requires_post_and_ends_the_session(staff_client):
    assert staff_client.post("/logout/").status_code == 302
    assert staff_client.get("/").status_code == 302
