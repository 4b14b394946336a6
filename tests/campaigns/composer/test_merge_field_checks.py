"""Save-time checks of merge fields: stray brackets, brackets hidden in HTML codes, errors in the
user's words, and new campaigns opening in the rich-text editor."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.composer.rendering import TemplateProblem, compile_template, html_to_text
from campaigns.models import Campaign, Layout
from tests.campaigns.composer.test_compose import campaign_post

pytestmark = pytest.mark.django_db


def save_errors(staff_client, **fields) -> str:
    response = staff_client.post(reverse("campaigns:create"), campaign_post(**fields))
    assert response.status_code == 200, "the campaign should have been refused"
    assert not Campaign.objects.exists()
    return response.content.decode()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("subject", "Autumn news for {{ first_name ", "Subject, line 1, column 17: “{{” is not closed."),
        ("preheader", "See you {% if first_name ", "Preheader, line 1, column 9: “{%” is not closed."),
        ("html_body", "<p>Hi</p>\n<p>{ first_name }}</p>", "HTML body, line 2, column 17: “}}” closes nothing."),
        ("text_body", "Hi\n\nbye %}", "Plain-text body, line 3, column 5: “%}” closes nothing."),
        ("html_body", "<p>{{ first_name\n}}</p>", "HTML body, line 1, column 4: “{{” is not closed."),
    ],
)
def test_it_refuses_stray_merge_field_brackets_naming_field_line_and_column(staff_client, field, value, message):
    assert message in save_errors(staff_client, **{field: value}).replace("&quot;", '"')


def test_it_refuses_a_stray_bracket_in_the_markdown_body(staff_client):
    errors = save_errors(staff_client, body_mode="markdown", html_body="", body_source="# Hi\n\nSee you {{ soon")
    assert "Markdown body, line 3, column 9: “{{” is not closed." in errors


def test_it_refuses_a_stray_bracket_in_a_layout(staff_client):
    data = {"name": "Bad", "primary_colour": "#000000", "background_colour": "#ffffff", "text_colour": "#000000"}
    html = '<body>{{ content }}\n<a href="{{ unsubscribe_url }}">x</a> {% if first_name </body>'
    response = staff_client.post(reverse("compose:layout_create"), {**data, "html": html, "css": ""})

    assert response.status_code == 400
    assert "Layout, line 2, column 39: “{%” is not closed." in response.content.decode()
    assert not Layout.objects.filter(name="Bad").exists()


def test_it_allows_closing_braces_in_style_blocks():
    source = "<style>@media (max-width:600px){.a{width:100%}}</style><p>Hi {{ first_name }}</p>"
    assert compile_template(source, part="HTML body")


@pytest.mark.parametrize(
    "hidden",
    [
        "&#123;&#123; settings.SECRET_KEY &#125;&#125;",
        "&#x7B;{ settings.SECRET_KEY }&#x7d;",
        "&lbrace;% debug %&rbrace;",
        "&#0123&#123; first_name &#125;&#125;",
    ],
)
def test_it_refuses_merge_fields_hidden_in_html_codes(staff_client, hidden):
    errors = save_errors(staff_client, html_body=f"<p>Hello</p>\n<p>{hidden}</p>")
    assert "HTML body, line 2, column 4:" in errors
    assert "is a merge-field bracket written as an HTML code" in errors


def test_it_refuses_merge_fields_hidden_in_html_codes_in_a_layout(staff_client):
    data = {"name": "Bad", "primary_colour": "#000000", "background_colour": "#ffffff", "text_colour": "#000000"}
    html = '<body>{{ content }}<a href="{{ unsubscribe_url }}">x</a>&#123;&#123; settings.DEBUG &#125;&#125;</body>'
    response = staff_client.post(reverse("compose:layout_create"), {**data, "html": html, "css": ""})

    assert response.status_code == 400
    assert "written as an HTML code" in response.content.decode()


def test_it_checks_the_body_as_it_will_be_rendered_in_its_layout(staff_client):
    # A layout saved before the checks existed hides a merge field in HTML codes; its CSS makes the
    # inliner decode it. The save of a campaign using it says so, instead of the send failing.
    layout = Layout.objects.create(
        name="Old",
        html='<html><head></head><body>{{ content }}<a href="{{ unsubscribe_url }}">x</a>'
        "<span>&#123;&#123; attributes.items &#125;&#125;</span></body></html>",
        css="p { color: red; }",
    )
    errors = save_errors(staff_client, layout=str(layout.pk)).replace("&#x27;", "'")
    assert "This layout cannot be used until it is fixed" in errors


def test_it_saves_merge_fields_and_percent_signs_that_are_fine(staff_client):
    body = '<p style="width:100%">{{ first_name|default:"member" }} 100% {% if first_name %}yes{% endif %}</p>'
    response = staff_client.post(
        reverse("campaigns:create"), campaign_post(subject="50% off for {{ first_name }}", html_body=body)
    )
    assert response.status_code == 302
    assert Campaign.objects.get().html_body == body


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "<p>x</p>\n  {% if first_name %}<p>y</p>",
            "HTML body, line 2, column 3: “{% if first_name %}” is never closed. Add {% endif %} where it should end",
        ),
        (
            "{% if first_name %}x{% endfor %}",
            "HTML body, line 1, column 21: “{% endfor %}” does not fit here: a tag opened before it must be closed "
            "first with {% endif %}.",
        ),
        ("Hi {% else %}", "HTML body, line 1, column 4: “{% else %}” has no {% if … %} before it."),
        ("{% endfor %}", "“{% endfor %}” has no {% for … %} before it."),
        (
            "{{ first_name|default }}",
            "the filter “|default” needs a value after a colon, in quotes, for example "
            '{{ first_name|default:"member" }}',
        ),
        ('{{ first_name|default:"member }}', "Check that both quotes are there."),
        ('{{ first_name|upper:"x" }}', "the filter “|upper” takes no value after it: write {{ first_name|upper }}."),
        ("{{ first_name|capitalise }}", "there is no filter “|capitalise”. Did you mean “|capfirst”?"),
        ("{{ first name }}", "“{{ first name }}” cannot be read. A merge field is one name without spaces"),
        ("{{ }}", "“{{ }}” is empty: put a merge field inside"),
        ("{% if first_name first_name %}x{% endif %}", "is not a condition campaigns understand"),
        ("{% for key %}{% endfor %}", "is not a loop campaigns understand"),
    ],
)
def test_it_explains_template_errors_in_the_users_words(source, expected):
    with pytest.raises(TemplateProblem) as raised:
        compile_template(source, part="HTML body")
    message = str(raised.value)
    assert expected in message
    assert "Did you forget to register or load this tag" not in message
    assert "requires 2 arguments" not in message


def test_it_shows_errors_in_the_users_words_on_the_form(staff_client):
    errors = save_errors(staff_client, html_body="<p>{% if first_name %}Hi</p>{% endfor %}").replace("&quot;", '"')
    assert "does not fit here" in errors
    assert "register or load" not in errors


def test_it_opens_new_campaigns_in_the_rich_text_editor(staff_client):
    response = staff_client.get(reverse("campaigns:create"))
    assert response.context["form"]["body_mode"].value() == "rich"
    assert 'data-mode="rich">' in response.content.decode()
    campaign = Campaign.objects.create(name="Old", subject="x", from_email="news@cobalt.example", html_body="<p>x</p>")
    edit = staff_client.get(reverse("campaigns:edit", args=[campaign.pk]))
    assert edit.context["form"]["body_mode"].value() == "html"  # existing campaigns keep their editor


def test_the_text_part_shows_the_description_of_images():
    text = html_to_text(
        '<p>The boat:</p><p><img src="https://club.example/a.png" alt="Our new eight &amp; crew" width="552"></p>'
        '<p><a href="https://club.example/shop"><img alt=\'Shop\' src="b.png"></a></p>'
        '<p><img src="spacer.gif" alt=""><img src="c.png"> <img data-alt="x" src="d.png"></p>'
    )
    assert text == "The boat:\n[Our new eight & crew]\n[Shop] (https://club.example/shop)\n"
