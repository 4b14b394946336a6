"""The campaign editor in Chromium: merge fields survive every switch between rich text, HTML and
Markdown byte for byte, new campaigns open in rich text, and images go in through the image button."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from campaigns.models import Campaign
from tests.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Quotes, an ampersand, a comparison and a doubled space: everything an editor likes to "fix".
GREETING = '{{ first_name|default:"member" }}'
CONDITION = '{% if attributes.club == "Rowing & Sculling" %}'
COMPARISON = "{% if attributes.age > '17' %}"
SPACED = "{{  last_name }}"
TOKENS = (GREETING, CONDITION, "{% endif %}", COMPARISON, SPACED)

HTML_SOURCE = (
    f"<p>Hello {GREETING},</p>\n"
    f"<p>{CONDITION}Welcome back, {SPACED}!{{% endif %}}</p>\n"
    f"<p>{COMPARISON}Adults' race{{% endif %}}</p>"
)
MARKDOWN_SOURCE = (
    f"Hello {GREETING},\n\n{CONDITION}Welcome back, {SPACED}!{{% endif %}}\n\n{COMPARISON}Adults' race{{% endif %}}"
)
RICH_LINES = (
    f"Hello {GREETING},",
    f"{CONDITION}Welcome back, {SPACED}!{{% endif %}}",
    f"{COMPARISON}Adults' race{{% endif %}}",
)
LABELS = {"rich": "Rich text", "html": "HTML", "markdown": "Markdown"}


def choose(page, mode: str) -> None:
    page.click(f"label.body-mode-choice:has-text('{LABELS[mode]}')")
    expect(page.locator(f"#body-mode input[value={mode}]")).to_be_checked()
    # The switch is done when the editor shows (a switch away from Markdown converts on the server).
    expect(page.locator(f".body-pane[data-mode={mode}]")).to_be_visible()


def write_body(page, mode: str) -> None:
    choose(page, mode)
    if mode == "html":
        page.fill("#id_html_body", HTML_SOURCE)
    elif mode == "markdown":
        page.fill("#id_body_source", MARKDOWN_SOURCE)
    else:
        page.locator(".ql-editor").click()
        for number, line in enumerate(RICH_LINES):
            if number:
                page.keyboard.press("Enter")
            page.keyboard.type(line)


def body_in(page, mode: str) -> str:
    if mode == "html":
        return page.locator("#id_html_body").input_value()
    if mode == "markdown":
        return page.locator("#id_body_source").input_value()
    # What the editor shows and what the form will submit for it.
    return page.locator(".ql-editor").inner_text() + "\n" + page.locator("#id_html_body").input_value()


def new_campaign(page, live_server, name: str) -> None:
    page.goto(f"{live_server.url}/campaigns/new/")
    page.fill("#id_name", name)
    page.fill("#id_subject", f"News for {GREETING}")


def save(page) -> Campaign:
    page.click("button:has-text('Save draft')")
    page.wait_for_url(re.compile(r"/campaigns/\d+/$"))
    return Campaign.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("rich", "html"),
        ("html", "rich"),
        ("rich", "markdown"),
        ("markdown", "rich"),
        ("html", "markdown"),
        ("markdown", "html"),
    ],
)
def test_it_keeps_merge_fields_when_switching_editors(logged_in_page, live_server, start, end):
    page = logged_in_page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    new_campaign(page, live_server, f"Switch {start} to {end}")
    write_body(page, start)

    choose(page, end)
    shown = body_in(page, end)
    for token in TOKENS:
        assert token in shown, f"{token} changed when switching {start} -> {end}:\n{shown}"

    # ... and back again, then saved as it is.
    choose(page, start)
    back = body_in(page, start)
    for token in TOKENS:
        assert token in back, f"{token} changed when switching {end} -> {start}:\n{back}"
    choose(page, end)
    campaign = save(page)
    stored = campaign.html_body + campaign.body_source
    for token in TOKENS:
        assert token in stored
    assert campaign.body_mode == end
    assert not dialogs


def test_it_keeps_merge_fields_inside_link_addresses_through_the_rich_text_editor(logged_in_page, live_server):
    link = '<p><a href="{{ attributes.page|default:"https://club.example/join" }}">Join us</a></p>'
    page = logged_in_page
    new_campaign(page, live_server, "Links")
    choose(page, "html")
    page.fill("#id_html_body", link)
    choose(page, "rich")
    expect(page.locator(".ql-editor a")).to_have_text("Join us")
    choose(page, "html")
    # Quill adds rel/target to links; the address with its merge field is as it was typed.
    assert 'href="{{ attributes.page|default:"https://club.example/join" }}"' in body_in(page, "html")


def test_it_opens_new_campaigns_in_the_rich_text_editor(logged_in_page, live_server):
    page = logged_in_page
    page.goto(f"{live_server.url}/campaigns/new/")
    expect(page.locator("#body-mode input[value=rich]")).to_be_checked()
    expect(page.locator(".ql-editor")).to_be_visible()
    expect(page.locator("#id_html_body")).to_be_hidden()


def boat_picture(width: int, height: int) -> bytes:
    """A river, a hull and eight oars: something to recognise in the screenshot."""
    image = Image.new("RGB", (width, height), (150, 200, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, height * 0.55, width, height), fill=(40, 90, 150))
    hull = (width * 0.15, height * 0.5, width * 0.85, height * 0.6)
    draw.ellipse(hull, fill=(240, 240, 240))
    for oar in range(8):
        x = width * (0.22 + oar * 0.08)
        draw.line((x, height * 0.55, x - width * 0.05, height * 0.8), fill=(250, 200, 40), width=max(2, width // 150))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_it_uploads_an_image_from_the_rich_text_editor_with_alt_text(logged_in_page, live_server, settings, tmp_path):
    settings.SITE_URL = live_server.url
    settings.MEDIA_ROOT = tmp_path
    page = logged_in_page
    new_campaign(page, live_server, "Regatta photos")
    page.locator(".ql-editor").click()
    page.keyboard.type(f"Hello {GREETING}, here is the boat:")
    page.keyboard.press("Enter")

    page.click(".ql-toolbar button.ql-image")
    dialog = page.get_by_role("dialog", name="Insert an image")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Image file").set_input_files(
        {"name": "boat.png", "mimeType": "image/png", "buffer": boat_picture(1600, 800)}
    )
    dialog.get_by_role("button", name="Insert image").click()
    expect(dialog.locator(".image-dialog-error")).to_contain_text("Describe the image")
    dialog.get_by_label("Describe the image").fill("Our new eight on the river")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "composer-image-dialog-phone")
    dialog.get_by_role("button", name="Insert image").click()
    expect(dialog).to_be_hidden()

    image = page.locator(".ql-editor img[alt='Our new eight on the river']")
    expect(image).to_be_visible()
    source = image.get_attribute("src")
    assert source.startswith(f"{live_server.url}/media/campaign-images/")
    assert page.evaluate("document.querySelector('.ql-editor img').naturalWidth") == 1200
    page.set_viewport_size({"width": 1280, "height": 900})
    screenshot(page, "composer-rich-text-with-image")

    campaign = save(page)
    # At most as wide as the layout's column; the file itself is 1,200 px for sharp screens.
    assert f'<img src="{source}" alt="Our new eight on the river" width="552">' in campaign.html_body
    assert GREETING in campaign.html_body

    # Opened again, the editor shows the image with its description and changes nothing.
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/edit/")
    expect(page.locator(".ql-editor img[alt='Our new eight on the river']")).to_be_visible()
    assert page.locator("#id_html_body").input_value() == campaign.html_body

    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/preview/")
    frame_image = page.frame_locator("#preview-frame").locator("img[alt='Our new eight on the river']")
    expect(frame_image).to_be_visible()
    assert frame_image.evaluate("image => image.naturalWidth") == 1200
    page.click("#preview-tabs a:has-text('Plain text')")
    expect(page.locator("#preview-text")).to_contain_text("[Our new eight on the river]")
