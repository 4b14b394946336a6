"""Per-recipient rendering: merge fields, defaults, escaping, the sandbox, layouts, CSS, text part."""

from __future__ import annotations

import pytest

from campaigns.composer.layouts import default_layout
from campaigns.composer.rendering import (
    TemplateProblem,
    compile_campaign,
    compile_template,
    html_to_text,
    link_report,
    markdown_to_html,
    preview_context,
    recipient_context,
    render_for,
)
from campaigns.models import Layout, Recipient
from tests.factories import CampaignFactory, ContactFactory

pytestmark = pytest.mark.django_db


def recipient_of(campaign, **contact_fields) -> Recipient:
    contact = ContactFactory(**contact_fields)
    return Recipient.objects.create(campaign=campaign, contact=contact, email=contact.email)


def render(campaign, recipient):
    return render_for(compile_campaign(campaign), recipient_context(recipient))


def test_it_fills_merge_fields_per_recipient():
    campaign = CampaignFactory(
        subject="News for {{ first_name }}",
        html_body="<p>{{ first_name }} {{ last_name }} rows at {{ attributes.club }} ({{ email }})</p>"
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="{{ preferences_url }}">Prefs</a> '
        '<a href="{{ view_online_url }}">Online</a>',
    )
    recipient = recipient_of(campaign, first_name="Ada", last_name="Lovelace", attributes={"club": "Thames RC"})

    rendered = render(campaign, recipient)

    assert rendered.subject == "News for Ada"
    assert f"Ada Lovelace rows at Thames RC ({recipient.email})" in rendered.html
    context = recipient_context(recipient)
    for name in ("unsubscribe_url", "preferences_url", "view_online_url"):
        assert f'href="{context[name]}"' in rendered.html
    assert context["unsubscribe_url"].startswith("http://127.0.0.1:8000/u/")


def test_it_uses_defaults_when_a_field_is_empty():
    campaign = CampaignFactory(
        html_body='<p>Hi {{ first_name|default:"member" }}, {{ attributes.club|default:"no club" }}</p>'
    )
    recipient = recipient_of(campaign, first_name="", attributes={})

    assert "<p>Hi member, no club</p>" in render(campaign, recipient).html


def test_contact_data_is_escaped_in_html_but_plain_in_subject_and_text():
    campaign = CampaignFactory(subject="For {{ first_name }}", html_body="<p>Hello {{ first_name }}</p>")
    recipient = recipient_of(campaign, first_name='<script>alert("x")</script>', attributes={})

    rendered = render(campaign, recipient)

    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in rendered.html
    assert rendered.subject == 'For <script>alert("x")</script>'
    assert 'Hello <script>alert("x")</script>' in rendered.text


def test_attribute_values_with_markup_are_escaped():
    campaign = CampaignFactory(html_body="<p>{{ attributes.club }}</p>")
    recipient = recipient_of(campaign, attributes={"club": '<img src=x onerror="alert(1)">'})

    html = render(campaign, recipient).html
    assert "<img" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ settings.SECRET_KEY }}", "unknown merge field '{{ settings.SECRET_KEY }}'"),
        ("{% load log %}", "the tag '{% load %}' is not allowed"),
        ("{% load static %}{% static 'x' %}", "the tag '{% load %}' is not allowed"),
        ('{% include "base.html" %}', "the tag '{% include %}' is not allowed"),
        ('{% extends "base.html" %}', "the tag '{% extends %}' is not allowed"),
        ("{{ request }}", "unknown merge field '{{ request }}'"),
        ("{% debug %}", "the tag '{% debug %}' is not allowed"),
        ("{% csrf_token %}", "the tag '{% csrf_token %}' is not allowed"),
        ("{% url 'admin:index' %}", "the tag '{% url %}' is not allowed"),
        ("{% autoescape off %}{{ first_name }}{% endautoescape %}", "the tag '{% autoescape %}' is not allowed"),
        ("{{ first_name|safe }}", "the filter 'safe' is not allowed"),
        ("{{ email.__class__ }}", "may not begin with underscores"),
        ("{{ email.upper }}", "is not a merge field"),
        ("{{ attributes.club.__class__ }}", "may not begin with underscores"),
        ("{{ first_name|default:secret }}", "unknown merge field '{{ secret }}'"),
        ("{% if user.is_staff %}x{% endif %}", "unknown merge field '{{ user.is_staff }}'"),
        ("{% for c in contacts %}{{ c.email }}{% endfor %}", "unknown merge field '{{ contacts }}'"),
        ("{{ attributes.items }}", "'{{ attributes.items }}' is not allowed: 'items' is reserved"),
        ("{% for k in attributes %}{{ k.upper }}{% endfor %}", "'{{ k.upper }}' is not allowed"),
        ("{% with a=attributes %}{{ a.keys }}{% endwith %}", "'{{ a.keys }}' is not allowed"),
    ],
)
def test_the_sandbox_refuses_anything_beyond_merge_fields(source, expected):
    with pytest.raises(TemplateProblem) as problem:
        compile_template(source, part="HTML body")
    assert expected in str(problem.value)


def test_missing_attributes_render_empty_and_never_reach_python_attributes():
    from django.template import Context

    campaign = CampaignFactory(html_body="<p>[{{ attributes.shoe }}][{{ attributes.club }}]</p>")
    recipient = recipient_of(campaign, attributes={"club": "Oars"})
    assert "<p>[][Oars]</p>" in render(campaign, recipient).html
    # Even a template that skipped the checker cannot call dict methods through the context.
    unchecked = compile_template("x", part="t").engine.from_string("[{{ attributes.items }}]")
    assert unchecked.render(Context(recipient_context(recipient))) == "[]"


def test_unknown_fields_and_bad_syntax_point_at_the_line():
    with pytest.raises(
        TemplateProblem,
        match=r"HTML body, line 3: unknown merge field '\{\{ frist_name \}\}'. "
        r"Did you mean 'first_name'\?",
    ):
        compile_template("<p>\nHello\n{{ frist_name }}</p>", part="HTML body")
    with pytest.raises(TemplateProblem, match=r"HTML body, line 2, column 1: .* is never closed"):
        compile_template("<p>x</p>\n{% if first_name %}<p>y</p>", part="HTML body")


def test_allowed_logic_still_works():
    template = compile_template(
        "{% if attributes.club %}{{ attributes.club|upper }}{% else %}none{% endif %}"
        "{% with name=first_name|default:'you' %}-{{ name }}{% endwith %}"
        "{% for key in attributes %}[{{ key }}{% if forloop.last %}.{% endif %}]{% endfor %}",
        part="HTML body",
    )
    from django.template import Context

    assert template.render(Context({"attributes": {"club": "oars"}, "first_name": ""})) == "OARS-you[club.]"


def test_the_default_layout_wraps_the_body_with_footer_and_postal_address(settings):
    settings.POSTAL_ADDRESS = "Cobalt Rowing, 5 River Lane, Oxford"
    campaign = CampaignFactory(html_body="<p>Body text</p>", layout=default_layout())
    recipient = recipient_of(campaign)

    rendered = render(campaign, recipient)

    assert "<p>Body text</p>" in rendered.html
    assert "Cobalt Rowing, 5 River Lane, Oxford" in rendered.html
    unsubscribe = recipient_context(recipient)["unsubscribe_url"]
    assert f'href="{unsubscribe}"' in rendered.html
    assert "Cobalt Rowing, 5 River Lane, Oxford" in rendered.text
    assert f"Unsubscribe ({unsubscribe})" in rendered.text


def test_layout_css_is_inlined_once_at_compile_time():
    layout = Layout.objects.create(
        name="Green",
        primary_colour="#0a7d33",
        html='<html><head></head><body><h1 class="title">News</h1>{{ content }}'
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>',
        css=".title { color: {{ primary_colour }}; } p { margin: 0 0 12px 0; }",
    )
    campaign = CampaignFactory(html_body='<p>Hi {{ first_name|default:"member" }}</p>', layout=layout)

    compiled = compile_campaign(campaign)
    source = compiled.html.source

    # The style rules are in the compiled template itself, not applied per message.
    assert "<style" not in source
    assert 'style="color: #0a7d33;"' in source
    assert '{{ first_name|default:"member" }}' in source  # template tokens survive the inliner
    assert not compiled.inline_per_message
    rendered = render_for(compiled, preview_context(None))
    assert '<h1 class="title" style="color: #0a7d33;">News</h1>' in rendered.html
    assert '<p style="margin: 0 0 12px 0;">Hi Alex</p>' in rendered.html


def test_the_default_layout_uses_the_layout_colours():
    layout = default_layout()
    layout.primary_colour = "#aa0000"
    layout.save()
    campaign = CampaignFactory(layout=layout)

    html = render_for(compile_campaign(campaign), preview_context(None)).html
    assert "background-color: #aa0000" in html
    assert "<style" not in html


def test_a_tag_the_html_parser_would_move_falls_back_to_inlining_each_message():
    layout = Layout.objects.create(
        name="Table",
        html='<html><body><table>{% if first_name %}<tr><td class="c">{{ first_name }}</td></tr>{% endif %}'
        '</table>{{ content }}<a href="{{ unsubscribe_url }}">u</a></body></html>',
        css=".c { color: red; }",
    )
    campaign = CampaignFactory(layout=layout)

    compiled = compile_campaign(campaign)
    assert compiled.inline_per_message
    html = render_for(compiled, preview_context(None)).html
    assert '<td class="c" style="color: red;">Alex</td>' in html


def test_the_preheader_is_hidden_preview_text_and_not_in_the_text_part():
    campaign = CampaignFactory(preheader="Hi {{ first_name }}, this week", html_body="<p>Body</p>")
    rendered = render_for(compile_campaign(campaign), preview_context(None))

    assert 'data-preheader="1" style="display:none;' in rendered.html
    assert "Hi Alex, this week" in rendered.html
    assert rendered.html.index("Hi Alex, this week") < rendered.html.index("<p>Body</p>")
    assert "this week" not in rendered.text


def test_the_text_part_is_readable():
    text = html_to_text(
        "<html><head><style>p{color:red}</style><title>T</title></head><body>"
        "<h1>Spring regatta</h1><p>Join us &amp; bring <b>friends</b>.</p>"
        '<ul><li>Saturday</li><li>Sunday</li></ul><p><a href="https://example.org/r">Sign up</a></p></body></html>'
    )
    assert text == "Spring regatta\nJoin us & bring friends.\n- Saturday\n- Sunday\n\nSign up (https://example.org/r)\n"


def test_staff_written_text_part_wins_over_the_generated_one():
    campaign = CampaignFactory(html_body="<p>HTML</p>", text_body="Plain for {{ first_name }}")
    assert render_for(compile_campaign(campaign), preview_context(None)).text == "Plain for Alex\n"


def test_the_text_part_is_derived_once_from_the_template():
    campaign = CampaignFactory(html_body='<p>Hi {{ first_name }}</p><p><a href="{{ unsubscribe_url }}">Leave</a></p>')
    compiled = compile_campaign(campaign)

    assert compiled.text is not None
    assert "Leave ({{ unsubscribe_url }})" in compiled.text.source
    context = preview_context(None)
    assert render_for(compiled, context).text == f"Hi Alex\nLeave ({context['unsubscribe_url']})\n"


def test_markdown_keeps_merge_fields_in_text_and_links():
    html = markdown_to_html('# Hello {{ first_name|default:"member" }}\n\n[Unsubscribe]({{ unsubscribe_url }}) _now_')
    assert '<h1>Hello {{ first_name|default:"member" }}</h1>' in html
    assert '<a href="{{ unsubscribe_url }}">Unsubscribe</a> <em>now</em>' in html


def test_the_link_check_lists_every_link_with_a_verdict():
    links = link_report(
        '<a href="https://example.org/a?b=1">Good</a><a href="htps//broken">Typo</a>'
        '<a href="https://exa mple.org">Space</a><a href="mailto:info@example.org">Mail</a>'
        '<a href="mailto:nobody">Bad mail</a><a href="">Empty</a><a href="#top">Anchor</a>'
    )
    verdicts = {link.text: link.ok for link in links}
    assert verdicts == {
        "Good": True,
        "Typo": False,
        "Space": False,
        "Mail": True,
        "Bad mail": False,
        "Empty": False,
        "Anchor": True,
    }
    assert links[1].problem == "The address should start with https:// (or http://, mailto:)."
