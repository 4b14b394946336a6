"""The sender domains' checklist: SES (the local moto server) and DNS (a loopback server the tests
run, tests/dns_server.py) against the mailbox providers' bulk-sender rules. No test reaches the
internet; boto3 is never mocked."""

from __future__ import annotations

import time

import boto3
import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from reports import senderdns
from reports.senderdns import SesIdentity, Status
from stats.models import CampaignStats
from tests.conftest import screenshot
from tests.dns_server import LoopbackDNS
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

DOMAIN = "cobalt.example"  # the default SENDER_ADDRESSES' domain, verified by the `ses` fixture
MAIL_FROM = f"bounce.{DOMAIN}"
FEEDBACK_MX = "10 feedback-smtp.us-east-1.amazonses.com"
URL = "/reports/senders/"


@pytest.fixture
def dns(settings):
    server = LoopbackDNS()
    settings.DNS_NAMESERVERS = [server.address]
    cache.clear()
    yield server
    server.stop()
    cache.clear()


@pytest.fixture
def ses_api(ses):
    return boto3.client("ses", region_name="us-east-1", endpoint_url=ses.url)


def mail_from_set(ses_api) -> None:
    ses_api.set_identity_mail_from_domain(Identity=DOMAIN, MailFromDomain=MAIL_FROM)


def all_published(dns: LoopbackDNS) -> None:
    dns.txt(DOMAIN, "v=spf1 include:amazonses.com -all")
    dns.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; rua=mailto:dmarc@cobalt.example")
    dns.set(MAIL_FROM, "MX", FEEDBACK_MX + ".")
    dns.txt(MAIL_FROM, "v=spf1 include:amazonses.com ~all")


def items(response, domain: str = DOMAIN) -> dict[str, senderdns.Item]:
    assert response.status_code == 200
    report = next(report for report in response.context["reports"] if report.domain == domain)
    return {item.title: item for item in report.items}


def item(response, starts: str) -> senderdns.Item:
    found = [value for title, value in items(response).items() if title.startswith(starts)]
    assert len(found) == 1, list(items(response))
    return found[0]


def test_the_page_needs_a_login(client, dns):
    response = client.get(URL)
    assert response.status_code == 302
    assert "/login/" in response["Location"]
    assert dns.queries == []


def test_settings_links_to_the_checklist(staff_client):
    response = staff_client.get(reverse("settings"))
    assert reverse("reports:senders") in response.content.decode()
    assert "Sender domains: DNS checklist" in response.content.decode()


def test_a_domain_with_everything_published_is_ok_throughout(staff_client, dns, ses, ses_api, settings):
    settings.SITE_URL = "https://mail.cobalt.example"
    mail_from_set(ses_api)
    all_published(dns)
    campaign = CampaignFactory(started_at=timezone.now())
    CampaignStats.objects.create(campaign=campaign, delivered=2000, complained=1)
    response = staff_client.get(URL)
    statuses = {title: value.status for title, value in items(response).items()}
    assert set(statuses.values()) == {Status.OK}, statuses
    assert [value.status for value in response.context["account_items"]] == [Status.OK, Status.OK]
    html = response.content.decode()
    assert "Policy p=reject" in html
    assert f"{MAIL_FROM} MX {FEEDBACK_MX}" in html
    assert 'data-status="todo"' not in html


def test_a_missing_spf_record_on_the_mail_from_domain_names_the_record_to_publish(staff_client, dns, ses_api):
    mail_from_set(ses_api)
    all_published(dns)
    dns.set(MAIL_FROM, "TXT")
    spf = item(staff_client.get(URL), "SPF")
    assert spf.status == Status.TODO
    assert spf.publish == (senderdns.Record(MAIL_FROM, "TXT", "v=spf1 include:amazonses.com ~all"),)


def test_an_spf_record_without_amazonses_is_to_be_replaced(staff_client, dns, ses_api):
    mail_from_set(ses_api)
    all_published(dns)
    dns.txt(MAIL_FROM, "v=spf1 mx -all")
    spf = item(staff_client.get(URL), "SPF")
    assert spf.status == Status.TODO
    assert "does not include amazonses.com" in spf.text
    assert spf.found == (f"{MAIL_FROM} TXT v=spf1 mx -all",)


def test_without_a_custom_mail_from_spf_passes_for_ses_and_alignment_is_recommended(staff_client, dns, ses):
    all_published(dns)
    response = staff_client.get(URL)
    assert item(response, "SPF").status == Status.OK
    mail_from = item(response, "Custom MAIL FROM")
    assert mail_from.status == Status.RECOMMENDED  # DKIM already aligns DMARC
    assert [(record.name, record.type) for record in mail_from.publish] == [(MAIL_FROM, "MX"), (MAIL_FROM, "TXT")]
    assert mail_from.publish[0].value == FEEDBACK_MX
    assert item(response, "DMARC aligned").status == Status.OK


def test_an_aligned_mail_from_without_its_mx_record_asks_for_it(staff_client, dns, ses_api):
    mail_from_set(ses_api)
    all_published(dns)
    dns.set(MAIL_FROM, "MX", "10 mail.elsewhere.example.")
    mail_from = item(staff_client.get(URL), "Custom MAIL FROM")
    assert mail_from.status == Status.RECOMMENDED
    assert mail_from.publish == (senderdns.Record(MAIL_FROM, "MX", FEEDBACK_MX),)


def test_a_missing_dmarc_record_asks_for_p_none(staff_client, dns, ses):
    all_published(dns)
    dns.set(f"_dmarc.{DOMAIN}", "TXT")
    dmarc = item(staff_client.get(URL), "DMARC policy")
    assert dmarc.status == Status.TODO
    assert dmarc.publish == (senderdns.Record(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=none"),)


@pytest.mark.parametrize("policy", ["none", "quarantine", "reject"])
def test_any_dmarc_policy_meets_the_rule(staff_client, dns, ses, policy):
    all_published(dns)
    dns.txt(f"_dmarc.{DOMAIN}", f"v=DMARC1; p={policy}")
    dmarc = item(staff_client.get(URL), "DMARC policy")
    assert dmarc.status == Status.OK
    assert dmarc.text.startswith(f"Policy p={policy}:")


def test_a_dmarc_record_without_a_policy_is_to_be_replaced(staff_client, dns, ses):
    all_published(dns)
    dns.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; rua=mailto:x@cobalt.example")
    assert item(staff_client.get(URL), "DMARC policy").status == Status.TODO


def test_a_subdomain_sender_inherits_its_parents_dmarc_policy(staff_client, dns, ses, settings):
    settings.SENDER_ADDRESSES = ["news@club.cobalt.example"]
    dns.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; sp=quarantine")
    response = staff_client.get(URL)
    dmarc = next(
        value for value in items(response, "club.cobalt.example").values() if value.title.startswith("DMARC p")
    )
    assert dmarc.status == Status.OK
    assert "p=quarantine (from cobalt.example" in dmarc.text


def test_dkim_verified_in_ses_is_ok_and_aligns_dmarc(staff_client, dns, ses):
    all_published(dns)
    response = staff_client.get(URL)
    assert item(response, "DKIM").status == Status.OK
    assert "SES signs every message with DKIM" in item(response, "DKIM").text


def test_a_domain_ses_does_not_sign_for_asks_to_turn_on_dkim_and_fails_alignment(staff_client, dns, ses_api):
    ses_api.delete_identity(Identity=DOMAIN)
    all_published(dns)
    response = staff_client.get(URL)
    dkim = item(response, "DKIM")
    assert dkim.status == Status.TODO
    assert "turn on Easy DKIM" in dkim.text
    assert item(response, "Custom MAIL FROM").status == Status.TODO  # now the only way to align
    assert item(response, "DMARC aligned").status == Status.TODO


def test_pending_dkim_names_the_three_cname_records():
    identity = SesIdentity(
        reachable=True,
        dkim={"DkimEnabled": True, "DkimVerificationStatus": "Pending", "DkimTokens": ["a1", "b2", "c3"]},
    )
    dkim = senderdns.dkim_item(DOMAIN, identity)
    assert dkim.status == Status.TODO
    assert "waiting" in dkim.text
    assert dkim.publish[0] == senderdns.Record(f"a1._domainkey.{DOMAIN}", "CNAME", "a1.dkim.amazonses.com")
    assert len(dkim.publish) == 3


def test_a_silent_name_server_shows_could_not_be_checked_within_seconds(staff_client, dns, ses_api):
    mail_from_set(ses_api)
    dns.silent = True
    started = time.monotonic()
    response = staff_client.get(URL)
    elapsed = time.monotonic() - started
    assert elapsed < 2 * senderdns.LOOKUP_SECONDS + 1, elapsed  # the lookups run side by side
    found = items(response)
    assert found["DMARC policy (at least p=none)"].status == Status.UNKNOWN
    assert item(response, "SPF").status == Status.UNKNOWN
    assert item(response, "Custom MAIL FROM").status == Status.UNKNOWN
    assert item(response, "DKIM").status == Status.OK  # SES answered
    assert "Could not be checked" in response.content.decode()
    assert dns.queries


def test_an_unreachable_ses_shows_could_not_be_checked(staff_client, dns, settings):
    settings.AWS_SES_REGION_ENDPOINT_URL = f"http://127.0.0.1:{dns.port}"  # UDP only: TCP is refused
    all_published(dns)
    response = staff_client.get(URL)
    assert item(response, "DKIM").status == Status.UNKNOWN
    assert item(response, "DMARC policy").status == Status.OK


def test_a_second_view_asks_dns_nothing(staff_client, dns, ses_api):
    mail_from_set(ses_api)
    all_published(dns)
    staff_client.get(URL)
    asked = len(dns.queries)
    assert asked >= 4
    dns.set(f"_dmarc.{DOMAIN}", "TXT")  # a change within the hour is not seen until "Check again"
    response = staff_client.get(URL)
    assert len(dns.queries) == asked
    assert item(response, "DMARC policy").status == Status.OK


def test_check_again_forgets_the_domain_and_looks_it_up_anew(staff_client, dns, ses):
    all_published(dns)
    staff_client.get(URL)
    asked = len(dns.queries)
    dns.set(f"_dmarc.{DOMAIN}", "TXT")
    response = staff_client.post(URL, {"domain": DOMAIN})
    assert response.status_code == 302
    response = staff_client.get(URL)
    assert len(dns.queries) > asked
    assert item(response, "DMARC policy").status == Status.TODO


def test_check_again_refuses_a_domain_that_is_not_a_sender(staff_client, dns):
    response = staff_client.post(URL, {"domain": "elsewhere.example"})
    assert response.status_code == 400
    assert "not one of the sender domains" in response.content.decode()


def test_hostile_dns_text_is_shown_as_text(staff_client, dns, ses_api):
    mail_from_set(ses_api)
    all_published(dns)
    dns.txt(f"_dmarc.{DOMAIN}", 'v=DMARC1; p=none; rua=mailto:<script>alert("x")</script>@cobalt.example')
    dns.txt(MAIL_FROM, "v=spf1 <img src=x onerror=alert(1)> ~all")
    html = staff_client.get(URL).content.decode()
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_complaint_rate_at_or_above_three_per_mille_is_to_do(staff_client, dns, ses):
    campaign = CampaignFactory(started_at=timezone.now())
    CampaignStats.objects.create(campaign=campaign, delivered=1000, complained=3)
    complaints = staff_client.get(URL).context["account_items"][1]
    assert complaints.status == Status.TODO
    assert "3 complaints from 1,000 delivered recipients (0.30%)" in complaints.text


def test_without_deliveries_the_complaint_rate_cannot_be_judged(staff_client, dns, ses):
    complaints = staff_client.get(URL).context["account_items"][1]
    assert complaints.status == Status.UNKNOWN


def test_one_click_unsubscribe_needs_an_https_site_url(staff_client, dns, ses, settings):
    settings.SITE_URL = "http://127.0.0.1:8000"
    unsubscribe = staff_client.get(URL).context["account_items"][0]
    assert unsubscribe.status == Status.TODO
    assert "https://" in unsubscribe.text


def test_the_checklist_fits_a_390_pixel_phone(logged_in_page, live_server, dns, ses_api):
    ses_api.delete_identity(Identity=DOMAIN)  # the longest page: records to publish everywhere
    page = logged_in_page
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}{URL}")
    assert page.get_by_role("heading", name="Sender domains: DNS checklist").is_visible()
    assert page.locator('[data-status="todo"]').count() >= 3
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "sender-dns-390")
    page.get_by_role("button", name="Check again").click()
    page.wait_for_url(f"{live_server.url}{URL}")
    assert page.get_by_text(f"{DOMAIN} was checked again just now.").is_visible()
