"""The preview's link check fetches each address for real (a django-q2 task), against a local server."""

from __future__ import annotations

import socket

import pytest
from django.urls import reverse
from django_q.brokers import get_broker
from django_q.models import OrmQ

from campaigns.composer import linkcheck
from campaigns.composer.layouts import default_layout
from campaigns.models import LinkCheckResult
from campaigns.tasks import links_check
from tests.factories import CampaignFactory
from tests.link_server import LinkServer

pytestmark = pytest.mark.django_db

Outcome = LinkCheckResult.Outcome


@pytest.fixture
def server():
    with LinkServer() as running:
        yield running


@pytest.fixture(autouse=True)
def link_settings(settings):
    settings.LINK_CHECK_ALLOW_PRIVATE = True  # the local server is on loopback
    settings.LINK_CHECK_TIMEOUT = 2.0


@pytest.fixture(autouse=True)
def empty_queue():
    get_broker().purge_queue()
    yield
    get_broker().purge_queue()


def queued_task_args() -> list:
    from django.conf import settings

    if "redis" in settings.Q_CLUSTER:
        from django_q.signing import SignedPackage

        broker = get_broker()
        tasks = [SignedPackage.loads(broker.connection.lindex(broker.list_key, i)) for i in range(broker.queue_size())]
    else:
        tasks = [entry.task for entry in OrmQ.objects.all()]
    return [(task["func"], task["args"]) for task in tasks]


def campaign_linking(*urls: str, **fields):
    body = "".join(f'<p><a href="{url}">Link {n}</a></p>' for n, url in enumerate(urls, 1))
    return CampaignFactory(html_body=body, **fields)


def start_and_run(staff_client, campaign, django_capture_on_commit_callbacks) -> dict[str, LinkCheckResult]:
    """Press "check" as the page does, then run the queued task as a qcluster worker would."""
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("compose:link_check", args=[campaign.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200  # still running: the panel keeps polling
    assert 'hx-trigger="every 1s"' in response.content.decode()
    assert queued_task_args() == [("campaigns.tasks.links_check", (campaign.pk,))]
    links_check(campaign.pk)
    return {row.url: row for row in LinkCheckResult.objects.filter(campaign=campaign)}


def test_it_reports_status_final_address_and_time_of_each_link(
    staff_client, server, django_capture_on_commit_callbacks
):
    ok, missing, no_head, chain = (
        server.url("/ok"),
        server.url("/missing"),
        server.url("/no-head"),
        server.url("/hop/3"),
    )
    campaign = campaign_linking(ok, missing, no_head, chain)

    results = start_and_run(staff_client, campaign, django_capture_on_commit_callbacks)

    assert (results[ok].outcome, results[ok].http_status, results[ok].final_url) == (Outcome.OK, 200, ok)
    assert (results[missing].outcome, results[missing].http_status) == (Outcome.BROKEN, 404)
    assert "does not exist" in results[missing].detail
    assert (results[no_head].outcome, results[no_head].http_status) == (Outcome.OK, 200)
    assert (results[chain].outcome, results[chain].final_url) == (Outcome.OK, server.url("/hop/0"))
    assert all(row.state == "done" and row.elapsed_ms is not None for row in results.values())
    # HEAD first; GET only where HEAD was refused; every hop of the redirect chain followed.
    requests = [(method, path) for method, path, _ in server.requests]
    assert ("HEAD", "/no-head") in requests and ("GET", "/no-head") in requests
    assert ("GET", "/ok") not in requests
    assert [path for _, path in requests if path.startswith("/hop/")] == ["/hop/3", "/hop/2", "/hop/1", "/hop/0"]

    panel = staff_client.get(reverse("compose:link_results", args=[campaign.pk]), HTTP_HX_REQUEST="true")
    assert panel.status_code == 286  # done: htmx stops polling
    html = panel.content.decode()
    assert "200 OK" in html and ">404<" in html and "hop/0" in html and " s</td>" in html
    assert links_check(campaign.pk) == 0  # a task delivered twice fetches nothing again


def test_a_link_slower_than_the_time_limit_is_reported_as_not_answering(
    staff_client, server, settings, django_capture_on_commit_callbacks
):
    settings.LINK_CHECK_TIMEOUT = 0.5
    server.server.slow_seconds = 3
    slow = server.url("/slow")

    results = start_and_run(staff_client, campaign_linking(slow), django_capture_on_commit_callbacks)

    assert results[slow].outcome == Outcome.UNREACHABLE
    assert results[slow].detail == "No answer within 0.5 s."
    assert 400 <= results[slow].elapsed_ms < 2000


def test_a_redirect_loop_is_reported_not_followed_for_ever(server):
    result = linkcheck.link_fetch(server.url("/loop"), timeout=2, allow_private=True)

    assert result.outcome == Outcome.BROKEN and "goes round in circles" in result.detail
    assert len(server.requests) == linkcheck.MAX_REDIRECTS + 1


def test_private_addresses_are_not_fetched_when_the_setting_is_off(
    staff_client, server, settings, django_capture_on_commit_callbacks
):
    settings.LINK_CHECK_ALLOW_PRIVATE = False
    local = server.url("/ok")

    results = start_and_run(staff_client, campaign_linking(local), django_capture_on_commit_callbacks)

    assert results[local].outcome == Outcome.REFUSED
    assert "private or local network (127.0.0.1)" in results[local].detail
    assert server.requests == []  # not one byte sent


def test_a_redirect_to_a_private_address_is_not_followed(server, monkeypatch):
    # Here 127.0.0.1 plays a public site whose page redirects into the private network (127.0.0.2).
    monkeypatch.setattr(linkcheck, "address_is_public", lambda address: address == "127.0.0.1")
    server.server.redirect_target = f"http://127.0.0.2:{server.port}/ok"

    result = linkcheck.link_fetch(server.url("/to-other-host"), timeout=2, allow_private=False)

    assert result.outcome == Outcome.REFUSED
    assert result.final_url == server.server.redirect_target
    assert [path for _, path, _ in server.requests] == ["/to-other-host"]


def test_the_name_is_resolved_once_per_hop_and_the_checked_address_is_the_one_connected_to(server, monkeypatch):
    # No DNS here: the club's name resolves, once, to the local server; a second lookup would
    # give an address that answers nothing (as a rebinding DNS server might).
    lookups = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "club.test":
            lookups.append(host)
            address = "127.0.0.1" if len(lookups) == 1 else "127.0.0.9"
            return real_getaddrinfo(address, port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    result = linkcheck.link_fetch(f"http://club.test:{server.port}/no-head", timeout=2, allow_private=True)

    assert (result.outcome, result.status) == (Outcome.OK, 200)
    assert lookups == ["club.test"]  # HEAD and GET went to the address checked
    assert [host for _, _, host in server.requests] == [f"club.test:{server.port}"] * 2


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.10",
        "127.0.0.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared (carrier-grade NAT)
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fec0::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",  # 6to4 around 127.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo around 10.0.0.1
    ],
)
def test_addresses_outside_the_public_internet_are_not_public(address):
    assert not linkcheck.address_is_public(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:82b::200e"])
def test_public_addresses_are_public(address):
    assert linkcheck.address_is_public(address)


def test_merge_field_links_mail_and_phone_links_are_listed_but_not_fetched(
    staff_client, server, django_capture_on_commit_callbacks
):
    ok = server.url("/ok")
    campaign = campaign_linking(
        ok,
        "https://club.example/members/{{ email|urlencode }}",
        "mailto:secretary@club.example",
        "tel:+44 20 7946 0000",
        "www.club.example",
        ok,
        layout=default_layout(),  # its footer holds {{ unsubscribe_url }}
    )

    results = start_and_run(staff_client, campaign, django_capture_on_commit_callbacks)

    assert results["https://club.example/members/{{ email }}"].outcome == Outcome.SKIPPED
    assert "merge field" in results["https://club.example/members/{{ email }}"].detail
    assert results["{{ unsubscribe_url }}"].outcome == Outcome.SKIPPED
    assert results["mailto:secretary@club.example"].outcome == Outcome.SKIPPED
    assert results["tel:+44 20 7946 0000"].outcome == Outcome.SKIPPED
    assert results["www.club.example"].outcome == Outcome.INVALID
    assert results[ok].outcome == Outcome.OK and results[ok].text == "Link 1 · Link 6"  # one check per address
    assert [path for _, path, _ in server.requests] == ["/ok"]
    panel = staff_client.get(reverse("compose:link_results", args=[campaign.pk])).content.decode()
    assert "{{ unsubscribe_url }}" in panel and "filled in for each recipient" in panel


def test_the_preview_starts_a_check_for_changed_links_and_shows_a_finished_one(
    staff_client, server, django_capture_on_commit_callbacks
):
    campaign = campaign_linking(server.url("/ok"))
    preview = reverse("compose:preview", args=[campaign.pk])
    first = staff_client.get(preview).content.decode()
    assert f'hx-post="{reverse("compose:link_check", args=[campaign.pk])}" hx-trigger="load"' in first

    start_and_run(staff_client, campaign, django_capture_on_commit_callbacks)
    checked = staff_client.get(preview).content.decode()
    assert 'id="link-results"' in checked and "200 OK" in checked
    assert 'hx-trigger="load"' not in checked and 'hx-trigger="every 1s"' not in checked

    campaign.html_body += f'<a href="{server.url("/missing")}">New</a>'
    campaign.save()
    changed = staff_client.get(preview).content.decode()
    assert 'hx-trigger="load"' in changed  # the message changed: a new check starts by itself


def test_https_is_checked_against_the_site_name_while_connecting_to_the_checked_address(tmp_path, monkeypatch):
    import ssl

    from tests.link_server import TlsLinkServer, self_signed_certificate

    cert_path, key_path = self_signed_certificate(tmp_path, "club.test")
    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, *a, **k: real_getaddrinfo("127.0.0.1" if host == "club.test" else host, port, *a, **k),
    )
    with TlsLinkServer(cert_path, key_path) as server:
        # Not trusted (self-signed): a browser would warn, so the check says so.
        untrusted = linkcheck.link_fetch(f"https://club.test:{server.port}/ok", timeout=2, allow_private=True)
        assert untrusted.outcome == Outcome.UNREACHABLE and "certificate is not valid" in untrusted.detail

        monkeypatch.setattr(linkcheck, "_tls_context", lambda: ssl.create_default_context(cafile=cert_path))
        trusted = linkcheck.link_fetch(f"https://club.test:{server.port}/ok", timeout=2, allow_private=True)
        # Trusted, but the certificate names club.test, not the address connected to.
        by_address = linkcheck.link_fetch(f"https://127.0.0.1:{server.port}/ok", timeout=2, allow_private=True)

    assert (trusted.outcome, trusted.status) == (Outcome.OK, 200)
    assert by_address.outcome == Outcome.UNREACHABLE and "certificate" in by_address.detail
