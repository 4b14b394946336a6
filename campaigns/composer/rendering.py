"""Per-recipient rendering of campaign content, with templates compiled once per campaign.

Staff-written content is a Django template run in a sandbox: its own ``Engine`` with no loaders
(no ``{% include %}`` / ``{% extends %}`` of files) and no tag libraries to ``{% load %}``. On top
of that every template is checked when it is saved, not when it is sent:

- only a short list of tags (``if``, ``for``, ``with``, ``firstof``, ``now``, ``comment``,
  ``spaceless``) and harmless filters may appear (no ``safe``, so contact data is always escaped);
- every variable must be one of ``MERGE_FIELDS`` (or a name bound by ``for`` / ``with``), so a
  typo is an error with its line number, and nothing else (settings, other contacts, Python
  attributes) is reachable. The context holds plain strings and dicts only;
- a ``{{``, ``{%``, ``}}`` or ``%}`` outside a complete token (which Django would send as typed)
  and brackets written as HTML codes (``&#123;&#123;``, which the CSS inliner decodes) are refused,
  and the body is checked once more in its layout after inlining, as it will be sent;
- Django's errors are reworded for the people who write campaigns (``_explain``).

``compile_campaign`` wraps the body in its layout, inlines the CSS once (template tokens are
protected while the HTML goes through the inliner) and derives the plain-text template from the
HTML, so that per recipient only three compiled templates are rendered.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass, field
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import urlsplit

import css_inline
import markdown
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.template import Context, Engine, Template, TemplateSyntaxError
from django.template.base import FilterExpression, Lexer, TokenType, VariableNode
from django.template.defaulttags import FirstOfNode, ForNode, NowNode, TemplateLiteral, WithNode
from django.urls import get_script_prefix, reverse

from audiences.models import Contact
from campaigns.composer.attachments import campaign_attachments
from campaigns.models import Campaign, Layout, Recipient
from campaigns.tokens import LinkPurpose, link_token

MERGE_FIELDS = (
    "first_name",
    "last_name",
    "full_name",
    "email",
    "attributes",
    "unsubscribe_url",
    "preferences_url",
    "view_online_url",
)
URL_FIELDS = ("unsubscribe_url", "preferences_url", "view_online_url")

# Block tags staff content may use; everything else (load, include, extends, debug, url, csrf_token,
# autoescape, filter, cycle, regroup, partial, ...) is refused before the template is even parsed.
ALLOWED_TAGS = frozenset(
    {
        "if",
        "elif",
        "else",
        "endif",
        "for",
        "empty",
        "endfor",
        "with",
        "endwith",
        "firstof",
        "now",
        "comment",
        "endcomment",
        "spaceless",
        "endspaceless",
    }
)
# Filters that only transform values. "safe"/"safeseq" are missing on purpose: they would let
# contact data (which subscribers type themselves) into the HTML unescaped.
ALLOWED_FILTERS = frozenset(
    {
        "add",
        "capfirst",
        "center",
        "cut",
        "date",
        "default",
        "default_if_none",
        "escape",
        "first",
        "floatformat",
        "join",
        "last",
        "length",
        "linebreaksbr",
        "ljust",
        "lower",
        "pluralize",
        "rjust",
        "slice",
        "striptags",
        "title",
        "truncatechars",
        "truncatewords",
        "upper",
        "urlencode",
        "wordcount",
        "yesno",
    }
)


FORLOOP_KEYS = frozenset({"counter", "counter0", "revcounter", "revcounter0", "first", "last", "length"})


class TemplateProblem(ValueError):
    """Content that will not render; the message says where."""


@lru_cache(maxsize=1)
def sandbox_engine() -> Engine:
    # debug=True only makes parsing record line numbers, which the error messages need.
    return Engine(
        dirs=[],
        app_dirs=False,
        libraries={},
        builtins=["django.template.defaulttags", "django.template.defaultfilters"],
        string_if_invalid="",
        autoescape=True,
        debug=True,
    )


@lru_cache(maxsize=1)
def _allowed_filter_functions() -> frozenset:
    filters: dict = {}
    for library in sandbox_engine().template_builtins:
        filters.update(library.filters)
    return frozenset(id(filters[name]) for name in ALLOWED_FILTERS if name in filters)


# --- checking and compiling one template ------------------------------------------------------------


def compile_template(source: str, *, part: str, fields: tuple[str, ...] = MERGE_FIELDS) -> Template:
    """Compile staff-written template text, or raise ``TemplateProblem`` saying what and where."""
    _check_delimiters(source, part=part)
    _check_tags(source, part=part)
    try:
        template = sandbox_engine().from_string(source)
    except TemplateSyntaxError as error:
        raise _syntax_problem(error, part=part) from None
    _check_variables(template.nodelist, part=part, fields=fields, bound=frozenset())
    return template


def _where(source: str, offset: int, *, part: str) -> str:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return f"{part}, line {line}, column {column}"


# Django reads a token only when it opens and closes on one line; anything else is sent as typed.
_DJANGO_TOKEN = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}")
_STRAY_DELIMITER = re.compile(r"{{|{%|}}|%}")
_STYLE_BLOCK = re.compile(r"<style\b.*?</style\s*>", re.IGNORECASE | re.DOTALL)
_DELIMITER_ADVICE = {
    "{{": "“{{” is not closed. Finish the merge field with “}}” on the same line, for example "
    "{{ first_name }}, or remove the “{{”.",
    "{%": "“{%” is not closed. Finish the tag with “%}” on the same line, for example "
    "{% if first_name %}…{% endif %}, or remove the “{%”.",
    "}}": "“}}” closes nothing. Start the merge field with “{{”, for example {{ first_name }}, or remove the “}}”.",
    "%}": "“%}” closes nothing. Start the tag with “{%”, for example {% if first_name %}, or remove the “%}”.",
}


def _check_delimiters(source: str, *, part: str) -> None:
    """A ``{{``, ``{%``, ``}}`` or ``%}`` outside a complete token would go out literally.

    Closing pairs inside ``<style>`` are CSS (``.a{width:100%}}``), not template syntax.
    """
    styles = [match.span() for match in _STYLE_BLOCK.finditer(source)]
    position = 0
    for gap_end, next_start in [*((m.start(), m.end()) for m in _DJANGO_TOKEN.finditer(source)), (len(source), 0)]:
        for stray in _STRAY_DELIMITER.finditer(source, position, gap_end):
            delimiter = stray.group(0)
            if delimiter in {"}}", "%}"} and any(start <= stray.start() < end for start, end in styles):
                continue
            where = _where(source, stray.start(), part=part)
            raise TemplateProblem(f"{where}: {_DELIMITER_ADVICE[delimiter]}")
        position = next_start


# Braces, percent and hash signs written as HTML character references: the CSS inliner (and any mail
# client) decodes them, so "&#123;&#123; settings.SECRET_KEY &#125;&#125;" would become a merge field
# after the save-time check, or show up literally in the message.
_OPEN = r"(?:{|&(?:#0*123|#x0*7b|lbrace|lcub);?)"
_CLOSE = r"(?:}|&(?:#0*125|#x0*7d|rbrace|rcub);?)"
_MARK = r"(?:%|#|&(?:#0*37|#x0*25|percnt|#0*35|#x0*23|num);?)"
_ANY_DELIMITER = re.compile(rf"{_OPEN}(?:{_OPEN}|{_MARK})|(?:{_CLOSE}|{_MARK}){_CLOSE}", re.IGNORECASE)


def check_encoded_delimiters(source: str, *, part: str) -> None:
    """Refuse merge-field brackets written as HTML codes (``&#123;&#123;``) in an HTML part."""
    for match in _ANY_DELIMITER.finditer(source):
        if "&" in match.group(0):
            raise TemplateProblem(
                f"{_where(source, match.start(), part=part)}: “{match.group(0)}” is a merge-field bracket written as "
                "an HTML code. Mail programs turn it into a real bracket, so it is not allowed. Type the brackets "
                "themselves, for example {{ first_name }}, or leave them out."
            )


# --- template errors in the user's words ---------------------------------------------------------------

_OPENERS = {
    "endif": "if",
    "else": "if",
    "elif": "if",
    "endfor": "for",
    "empty": "for",
    "endwith": "with",
    "endcomment": "comment",
    "endspaceless": "spaceless",
}
_OPENER_EXAMPLES = {
    "if": "{% if first_name %}Hello {{ first_name }}{% else %}Hello{% endif %}",
    "for": "{% for key in attributes %}{{ key }}{% endfor %}",
    "with": '{% with name=first_name|default:"member" %}Hello {{ name }}{% endwith %}',
    "comment": "{% comment %}a note{% endcomment %}",
    "spaceless": "{% spaceless %}…{% endspaceless %}",
}


def _syntax_problem(error: TemplateSyntaxError, *, part: str) -> TemplateProblem:
    """Django's message for developers, said for the person who wrote the campaign."""
    debug = getattr(error, "template_debug", None) or {}
    line = debug.get("line")
    where = f"{part}, line {line}, column {len(debug.get('before', '')) + 1}" if line else part
    return TemplateProblem(f"{where}: {_explain(str(error), debug.get('during', ''))}")


def _explain(message: str, token: str) -> str:
    shown = f"“{token}”" if token else "This"
    if match := re.match(r"Unclosed tag on line \d+: '(\w+)'", message):
        name = match.group(1)
        example = _OPENER_EXAMPLES.get(name, "")
        return f"{shown} is never closed. Add {{% end{name} %}} where it should end, for example {example}."
    if match := re.match(r"Invalid block tag on line \d+: '(\w+)', expected (.*?)\. Did you", message):
        expected = re.findall(r"'(\w+)'", match.group(2))
        closing = next((name for name in expected if name.startswith("end")), expected[-1] if expected else "")
        return f"{shown} does not fit here: a tag opened before it must be closed first with {{% {closing} %}}."
    if match := re.match(r"Invalid block tag on line \d+: '(\w+)'", message):
        opener = _OPENERS.get(match.group(1))
        if opener:
            return f"{shown} has no {{% {opener} … %}} before it. Use them as a pair: {_OPENER_EXAMPLES[opener]}."
        return f"{shown} is not a tag campaigns can use."
    if match := re.match(r"(\w+) requires (\d+) arguments?, (\d+) provided", message):
        name, needed = match.group(1), int(match.group(2))
        if needed > 1:
            return (
                f"the filter “|{name}” needs a value after a colon, in quotes, for example "
                f'{{{{ first_name|{name}:"member" }}}}. Check that both quotes are there.'
            )
        return f"the filter “|{name}” takes no value after it: write {{{{ first_name|{name} }}}}."
    if match := re.match(r"Invalid filter: '(\w+)'", message):
        name = match.group(1)
        close = difflib.get_close_matches(name, sorted(ALLOWED_FILTERS), n=1, cutoff=0.5)
        hint = f" Did you mean “|{close[0]}”?" if close else ""
        return f"there is no filter “|{name}”.{hint} Filters you can use: {', '.join(sorted(ALLOWED_FILTERS))}."
    if message.startswith("Could not parse"):
        return (
            f"{shown} cannot be read. A merge field is one name without spaces (first_name, attributes.club), "
            'and text in quotes needs both quotes: {{ first_name|default:"member" }}.'
        )
    if message.startswith("Empty variable tag"):
        return "“{{ }}” is empty: put a merge field inside, for example {{ first_name }}, or remove it."
    if message.startswith("Empty block tag"):
        return "“{% %}” is empty: write a tag inside, for example {% if first_name %}, or remove it."
    if " if " in f" {message} " or "if tag" in message or "if expression" in message:
        return (
            f"{shown} is not a condition campaigns understand. Write for example {{% if first_name %}}…{{% endif %}} "
            'or {% if attributes.club == "Rowing" %}…{% endif %}.'
        )
    if "'for'" in message:
        return f"{shown} is not a loop campaigns understand. Write for example {_OPENER_EXAMPLES['for']}."
    if "'with'" in message:
        return f"{shown} needs a name and a value, for example {_OPENER_EXAMPLES['with']}."
    plain = message.replace(" Did you forget to register or load this tag?", "")
    return f"{shown} cannot be used: {plain}"


def _check_tags(source: str, *, part: str) -> None:
    for token in Lexer(source).tokenize():
        if token.token_type != TokenType.BLOCK:
            continue
        name = token.contents.split()[0] if token.contents.split() else ""
        if name not in ALLOWED_TAGS:
            raise TemplateProblem(
                f"{part}, line {token.lineno}: the tag '{{% {name} %}}' is not allowed in campaign content. "
                f"Allowed tags: {', '.join(sorted(t for t in ALLOWED_TAGS if not t.startswith('end')))}."
            )


def _check_variables(nodelist, *, part: str, fields: tuple[str, ...], bound: frozenset[str]) -> None:
    for node in nodelist:
        line = getattr(getattr(node, "token", None), "lineno", None)
        expressions, names = _node_expressions(node)
        for expression in expressions:
            _check_expression(expression, part=part, line=line, fields=fields, bound=bound)
        inner = bound | names
        for attribute in node.child_nodelists:
            children = getattr(node, attribute, None)
            if children:
                _check_variables(children, part=part, fields=fields, bound=inner)


def _node_expressions(node) -> tuple[list[FilterExpression], frozenset[str]]:
    """The expressions a node evaluates, and the names it binds for its children."""
    if isinstance(node, VariableNode):
        return [node.filter_expression], frozenset()
    if isinstance(node, ForNode):
        return [node.sequence], frozenset([*node.loopvars, "forloop"])
    if isinstance(node, WithNode):
        return list(node.extra_context.values()), frozenset(node.extra_context)
    if isinstance(node, FirstOfNode):
        return list(node.vars), frozenset([node.asvar] if node.asvar else [])
    if isinstance(node, NowNode):
        return [], frozenset([node.asvar] if node.asvar else [])
    conditions = getattr(node, "conditions_nodelists", None)
    if conditions is not None:  # IfNode
        return [e for condition, _ in conditions if condition is not None for e in _condition(condition)], frozenset()
    return [], frozenset()


def _condition(condition):
    if isinstance(condition, TemplateLiteral):
        yield condition.value
        return
    for side in ("first", "second"):
        operand = getattr(condition, side, None)
        if operand is not None:
            yield from _condition(operand)


def _check_expression(expression: FilterExpression, *, part: str, line, fields, bound) -> None:
    where = f"{part}, line {line}" if line else part
    variables = [expression.var] + [arg for _, args in expression.filters for lookup, arg in args if lookup]
    for func, _ in expression.filters:
        if id(func) not in _allowed_filter_functions():
            name = getattr(func, "_filter_name", None) or func.__name__
            raise TemplateProblem(f"{where}: the filter '{name}' is not allowed in campaign content.")
    for variable in variables:
        lookups = getattr(variable, "lookups", None)
        if not lookups:
            continue  # a literal: "text" or 3
        head = lookups[0]
        if head in bound:
            # Loop / with names hold strings or attribute values: no lookups into them, so that
            # {{ key.upper }} cannot reach Python methods (forloop.counter and friends are fine).
            if len(lookups) > 1 and not (head == "forloop" and lookups[1] in FORLOOP_KEYS):
                raise TemplateProblem(f"{where}: '{{{{ {variable.var} }}}}' is not allowed (use {{{{ {head} }}}}).")
            continue
        if head not in fields:
            raise TemplateProblem(f"{where}: unknown merge field '{{{{ {variable.var} }}}}'.{_suggest(head, fields)}")
        if head == "attributes" and len(lookups) == 2 and hasattr(dict, lookups[1]):
            # Django falls back to attributes when a key is missing: {{ attributes.items }} would
            # call dict.items on a plain dict. Refused whatever the context's dict type is.
            raise TemplateProblem(f"{where}: '{{{{ {variable.var} }}}}' is not allowed: '{lookups[1]}' is reserved.")
        depth = 2 if head == "attributes" else 1
        if len(lookups) > depth:
            raise TemplateProblem(
                f"{where}: '{{{{ {variable.var} }}}}' is not a merge field"
                + (" (use attributes.NAME)." if head == "attributes" else f" (use {{{{ {head} }}}}).")
            )


def _suggest(name: str, fields) -> str:
    close = difflib.get_close_matches(name, fields, n=1)
    available = ", ".join(f for f in fields if f != "content")
    return f" Did you mean '{close[0]}'?" if close else f" Available: {available}."


# --- assembling a campaign: layout, preheader, CSS inlining ---------------------------------------

LAYOUT_TOKEN = re.compile(
    r"{{\s*(content|preheader|logo|postal_address|primary_colour|background_colour|text_colour)\s*}}"
)
LAYOUT_TOKENS = ("content", "preheader", "logo", "postal_address", "primary_colour", "background_colour", "text_colour")
TEMPLATE_TOKEN = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.DOTALL)
# Invisible filler after the preheader stops inboxes from pulling body text into the preview line.
PREHEADER_FILLER = "&#847;&zwnj;&nbsp;" * 40


def preheader_html(preheader: str) -> str:
    if not preheader.strip():
        return ""
    return (
        '<div class="cobalt-preheader" data-preheader="1" style="display:none;font-size:1px;line-height:1px;'
        'max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all;color:transparent">'
        f"{html.escape(preheader, quote=False)}{PREHEADER_FILLER}</div>"
    )


def layout_source(layout: Layout, *, body: str, preheader: str, sender: str = "", postal_address: str = "") -> str:
    """The layout with its design tokens filled in and the body in place of ``{{ content }}``.

    ``postal_address`` is the sending organisation's (its page); the installation's ``POSTAL_ADDRESS``
    when it has none. Its lines are joined with commas, and braces dropped: the layout is compiled
    as a template, and an address is typed by an organisation's administrators."""
    logo = (
        f'<img src="{html.escape(layout.logo_url)}" alt="{html.escape(sender or layout.name)}" height="48">'
        if layout.logo_url
        else html.escape(sender or "")
    )
    values = {
        "content": body,
        "preheader": preheader_html(preheader),
        "logo": logo,
        "postal_address": html.escape(_postal_line(postal_address.strip() or settings.POSTAL_ADDRESS)),
        "primary_colour": html.escape(layout.primary_colour),
        "background_colour": html.escape(layout.background_colour),
        "text_colour": html.escape(layout.text_colour),
    }
    colours = {k: values[k] for k in ("primary_colour", "background_colour", "text_colour")}
    css = LAYOUT_TOKEN.sub(lambda m: colours.get(m.group(1), ""), layout.css or "")
    has_preheader_slot = bool(re.search(r"{{\s*preheader\s*}}", layout.html))
    source = LAYOUT_TOKEN.sub(lambda m: values[m.group(1)], layout.html)
    if css.strip():
        style = f"<style>\n{css}\n</style>\n"
        source = (
            re.sub(r"</head>", lambda _: style + "</head>", source, count=1, flags=re.I)
            if "</head>" in source.lower()
            else style + source
        )
    if not has_preheader_slot and values["preheader"]:
        source = _after_body_tag(source, values["preheader"])
    return source


def _postal_line(address: str) -> str:
    lines = (line.strip().rstrip(",") for line in address.splitlines())
    return re.sub(r"[{}]", "", ", ".join(line for line in lines if line))


def _after_body_tag(source: str, insert: str) -> str:
    match = re.search(r"<body\b[^>]*>", source, re.I)
    if not match:
        return insert + source
    return source[: match.end()] + insert + source[match.end() :]


def campaign_layout(campaign: Campaign) -> Layout | None:
    return campaign.layout if campaign.layout_id else None


def campaign_html_source(campaign: Campaign) -> str:
    """The whole message as one template: layout + preheader + body (before CSS inlining)."""
    layout = campaign_layout(campaign)
    sender = campaign.from_email.rpartition("<")[0].strip().strip('"') or campaign.from_email
    if layout is not None:
        return layout_source(
            layout,
            body=campaign.html_body,
            preheader=campaign.preheader,
            sender=sender,
            postal_address=campaign.organisation.postal_address,  # the sending organisation's footer
        )
    return preheader_html(campaign.preheader) + campaign.html_body


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    # No remote stylesheets: compiling must not fetch URLs staff typed.
    return css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False, keep_at_rules=True)


def inline_css(source: str) -> tuple[str, bool]:
    """Inline ``<style>`` rules into the template source once. Returns (source, done).

    Template tokens become inert placeholders while the HTML goes through the inliner (it would
    escape quotes inside ``{{ x|default:"y" }}``). If the parser moved or dropped a token (e.g. a
    ``{% if %}`` between table rows is "foster-parented"), the source is returned unchanged and
    ``done`` is False: the caller then inlines each rendered message instead.
    """
    if "<style" not in source.lower():
        return source, True
    tokens: list[str] = []

    def protect(match: re.Match) -> str:
        tokens.append(match.group(0))
        return f"cobalttpl{len(tokens) - 1}x"

    protected = TEMPLATE_TOKEN.sub(protect, source)
    try:
        inlined = _inliner().inline(protected)
    except (css_inline.InlineError, ValueError):
        return source, False
    found = [int(n) for n in re.findall(r"cobalttpl(\d+)x", inlined)]
    if found != list(range(len(tokens))):
        return source, False
    return re.sub(r"cobalttpl(\d+)x", lambda m: tokens[int(m.group(1))], inlined), True


# --- the compiled campaign ---------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledCampaign:
    campaign_id: int
    subject: Template
    html: Template
    text: Template | None
    # (filename, content, mimetype), read once per campaign and shared by every message.
    attachments: tuple[tuple[str, bytes, str], ...] = ()
    inline_per_message: bool = False
    preheader: Template | None = None


def check_layout(source: str, *, css: str = "") -> Template:
    check_encoded_delimiters(source, part="Layout")
    if not re.search(r"{{\s*content\s*}}", source):
        raise TemplateProblem("Layout: it needs {{ content }} where the campaign body goes.")
    if not re.search(r"{{\s*unsubscribe_url\s*}}", source):
        raise TemplateProblem('Layout: the footer needs an unsubscribe link: <a href="{{ unsubscribe_url }}">.')
    if TEMPLATE_TOKEN.search(LAYOUT_TOKEN.sub("", css)):
        raise TemplateProblem("Layout CSS: only {{ primary_colour }}, {{ background_colour }}, {{ text_colour }}.")
    return compile_template(source, part="Layout", fields=MERGE_FIELDS + LAYOUT_TOKENS)


def check_campaign_source(*, html_body: str, preheader: str, layout: Layout | None, part: str) -> None:
    """At save, what ``compile_campaign`` will compile at send: the body in its layout, after the CSS
    inliner (which decodes character references). Each part is checked alone first, so that the
    message names the line the staff member wrote."""
    check_encoded_delimiters(html_body, part=part)
    if layout is not None:
        source = layout_source(layout, body=html_body, preheader=preheader)
    else:
        source = preheader_html(preheader) + html_body
    try:
        compile_template(inline_css(source)[0], part=part)
    except TemplateProblem as problem:
        raise TemplateProblem(f"Once the layout and its styles are applied: {problem}") from None


def compile_campaign(campaign: Campaign, *, with_attachments: bool = True) -> CompiledCampaign:
    """``with_attachments=False`` for pages that only show the message (preview, view online):
    the files (up to ``ATTACHMENT_MAX_BYTES`` each) are read only where a message is sent."""
    preheader = compile_template(campaign.preheader, part="Preheader")
    compile_template(campaign.html_body, part="HTML body")
    source, inlined = inline_css(campaign_html_source(campaign))
    html_template = compile_template(source, part="Layout" if campaign.layout_id else "HTML body")
    if campaign.text_body.strip():
        text_template = compile_template(campaign.text_body, part="Plain-text body")
    else:
        text_template = _text_template_from(source) if inlined else None
    return CompiledCampaign(
        campaign_id=campaign.pk,
        subject=compile_template(campaign.subject, part="Subject"),
        html=html_template,
        text=text_template,
        attachments=tuple(campaign_attachments(campaign)) if with_attachments else (),
        inline_per_message=not inlined,
        preheader=preheader if campaign.preheader.strip() else None,
    )


def _text_template_from(source: str) -> Template | None:
    """The plain-text part as a template derived once from the HTML template (None: per message)."""
    try:
        return compile_template(html_to_text(source), part="Plain-text body")
    except TemplateProblem:
        return None  # e.g. entities that decode into template syntax: convert each message instead


# --- contexts --------------------------------------------------------------------------------------


class ContactAttributes(dict):
    """A contact's attributes: a missing key is "" so that Django's lookup never falls back to
    Python attributes of the dict ({{ attributes.items }} must not call dict.items)."""

    def __missing__(self, key: str) -> str:
        return ""


_LINK_VIEWS = {
    LinkPurpose.UNSUBSCRIBE: ("unsubscribe_url", "campaigns:unsubscribe"),
    LinkPurpose.PREFERENCES: ("preferences_url", "campaigns:preferences"),
    LinkPurpose.VIEW_ONLINE: ("view_online_url", "campaigns:view_online"),
}
_PATH_TOKEN = "C0BALTLINKT0KEN"
# The token of inert links (previews, test sends, the view-online copy): no page accepts it.
PREVIEW_TOKEN = "preview"


@lru_cache(maxsize=16)
def _link_templates(site_url: str, script_prefix: str) -> dict[LinkPurpose, tuple[str, str]]:
    """(merge field, URL with a placeholder token) per link. reverse() and the thread-local URL
    state cost more than signing, and the engine makes three links per message."""
    return {
        purpose: (field_name, site_url + reverse(view_name, args=[_PATH_TOKEN]))
        for purpose, (field_name, view_name) in _LINK_VIEWS.items()
    }


def recipient_links(recipient_id: int, *, online_copy: bool = False) -> dict[str, str]:
    """The three link fields of one recipient, each with its own token (campaigns/tokens.py).

    ``online_copy``: the links of the view-online page, which people forward and post. Its
    unsubscribe and preference links are inert (they lead to the "link not valid" page, which says
    to use the email itself), so the page grants nothing but reading the email.
    """
    links = {}
    for purpose, (field_name, template) in _link_templates(settings.SITE_URL, get_script_prefix()).items():
        live = purpose is LinkPurpose.VIEW_ONLINE or not online_copy
        token = link_token(recipient_id=recipient_id, purpose=purpose) if live else PREVIEW_TOKEN
        links[field_name] = template.replace(_PATH_TOKEN, token)
    return links


def inert_links(token: str) -> dict[str, str]:
    """Links for previews and test sends: every one carries ``token`` and opens nothing."""
    templates = _link_templates(settings.SITE_URL, get_script_prefix()).values()
    return {field_name: template.replace(_PATH_TOKEN, token) for field_name, template in templates}


def merge_context(*, first_name: str, last_name: str, email: str, attributes, links: dict[str, str]) -> dict:
    """The merge fields of one message: the only builder of a context, for recipients (the engine,
    the view-online page), previews and test sends alike. Plain strings and dicts only."""
    return {
        "first_name": first_name,
        "last_name": last_name,
        "full_name": " ".join(part for part in (first_name, last_name) if part),
        "email": email,
        "attributes": ContactAttributes(attributes if isinstance(attributes, dict) else {}),
        **links,
    }


def recipient_context(recipient: Recipient, *, online_copy: bool = False) -> dict:
    """The recipient's merge fields; ``online_copy`` for the view-online page (see ``recipient_links``).

    A single message (API) brings its own fields (``merge_data``); a campaign's come from the contact.
    """
    links = recipient_links(recipient.pk, online_copy=online_copy)
    data = recipient.merge_data
    if isinstance(data, dict):
        return merge_context(
            first_name=str(data.get("first_name") or ""),
            last_name=str(data.get("last_name") or ""),
            email=recipient.email,
            attributes=data.get("attributes") or {},
            links=links,
        )
    contact = recipient.contact
    return merge_context(
        first_name=contact.first_name if contact else "",
        last_name=contact.last_name if contact else "",
        email=recipient.email,
        attributes=contact.attributes if contact else {},
        links=links,
    )


SAMPLE_CONTACT = {"first_name": "Alex", "last_name": "Sample", "email": "alex.sample@example.com", "attributes": {}}


def preview_context(contact: Contact | None, *, email: str | None = None) -> dict:
    """Context for previews and test sends: a real contact's data (or a sample), inert links."""
    if contact is None:
        data = dict(SAMPLE_CONTACT)
    else:
        data = {
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "email": contact.email,
            "attributes": contact.attributes,
        }
    if email:
        data["email"] = email
    return merge_context(**data, links=inert_links(PREVIEW_TOKEN))


# --- rendering -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    html: str
    text: str
    attachments: tuple[tuple[str, bytes, str], ...] = field(default=(), repr=False)
    preheader: str = ""  # also inside ``html`` (hidden); here for previews that show an inbox line


def render_for(compiled: CompiledCampaign, context: dict) -> RenderedMessage:
    template_context = Context(context, autoescape=True)
    html_body = compiled.html.render(template_context)
    if compiled.inline_per_message:
        html_body = inline_css(html_body)[0]
    # Subject and plain text are not HTML: render them without escaping.
    plain_context = Context(context, autoescape=False)
    subject = " ".join(compiled.subject.render(plain_context).split())
    text = _tidy_text(compiled.text.render(plain_context)) if compiled.text else html_to_text(html_body)
    preheader = " ".join(compiled.preheader.render(plain_context).split()) if compiled.preheader else ""
    return RenderedMessage(
        subject=subject, html=html_body, text=text, attachments=compiled.attachments, preheader=preheader
    )


def _tidy_text(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


_BLOCK_END = re.compile(r"</(p|div|h[1-6]|li|tr|table|blockquote|ul|ol)>|<br\s*/?>", re.IGNORECASE)
_LIST_ITEM = re.compile(r"<li\b[^>]*>", re.IGNORECASE)
_LINK = re.compile(r"<a\s[^>]*href=[\"']([^\"']+)[\"'][^>]*>(.*?)</a>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_HIDDEN = re.compile(r"<(style|script|head|title)\b.*?</\1>", re.IGNORECASE | re.DOTALL)
_PREHEADER = re.compile(r"<div[^>]*data-preheader[^>]*>.*?</div>", re.IGNORECASE | re.DOTALL)


_IMAGE = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ALT = re.compile(r"""[\s/]alt\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)


def html_to_text(markup: str) -> str:
    """A readable plain-text part: images as "[alt text]", links as "text (url)", blocks as lines, no tags."""
    text = _HIDDEN.sub("", markup)
    text = _PREHEADER.sub("", text)
    text = _IMAGE.sub(_image_as_text, text)
    text = _LINK.sub(_link_as_text, text)
    text = _LIST_ITEM.sub("- ", text)
    text = _BLOCK_END.sub("\n", text)
    text = html.unescape(_TAG.sub("", text))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _image_as_text(match: re.Match) -> str:
    """An image is its description; one without (or with alt="": decorative) is left out."""
    alt = _ALT.search(match.group(0))
    description = " ".join(next((group for group in alt.groups() if group is not None), "").split()) if alt else ""
    return f"[{description}]" if description else ""


def _link_as_text(match: re.Match) -> str:
    label = " ".join(_TAG.sub("", match.group(2)).split())
    url = match.group(1)
    if not label or html.unescape(label) == html.unescape(url):
        return url
    return f"{label} ({url})"


def unescape_template_tokens(markup: str) -> str:
    """Rich-text editors entity-encode quotes inside {{ x|default:"y" }}; give the tokens back."""
    return TEMPLATE_TOKEN.sub(lambda m: html.unescape(m.group(0)).replace("\u00a0", " "), markup)


# --- Markdown -------------------------------------------------------------------------------------


def markdown_to_html(source: str) -> str:
    """Markdown to HTML, leaving template tokens exactly as written (links may hold merge fields)."""
    tokens: list[str] = []

    def protect(match: re.Match) -> str:
        tokens.append(match.group(0))
        return f"cobalttpl{len(tokens) - 1}x"

    converted = markdown.markdown(TEMPLATE_TOKEN.sub(protect, source), extensions=["extra", "sane_lists"])
    return re.sub(r"cobalttpl(\d+)x", lambda m: tokens[int(m.group(1))], converted)


# --- link check -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkCheck:
    text: str
    href: str
    ok: bool
    problem: str = ""


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[list[str]] = []
        self._open: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in {"a", "area"}:
            self._open = [dict(attrs).get("href") or "", ""]
            self.links.append(self._open)
            if tag == "area":
                self._open = None

    def handle_endtag(self, tag):
        if tag == "a":
            self._open = None

    def handle_data(self, data):
        if self._open is not None:
            self._open[1] += data


_url_validator = URLValidator(schemes=["http", "https"])


def link_report(markup: str) -> list[LinkCheck]:
    """Every link in the rendered HTML with whether it is well formed."""
    collector = _LinkCollector()
    collector.feed(markup)
    collector.close()
    return [
        LinkCheck(text=" ".join(text.split()), href=href, ok=not problem, problem=problem)
        for href, text in collector.links
        for problem in [_link_problem(href.strip())]
    ]


def _link_problem(href: str) -> str:
    if not href:
        return "The link has no address."
    if href.startswith("#"):
        return ""
    scheme = urlsplit(href).scheme.lower()
    if scheme == "mailto":
        try:
            validate_email(href[7:].split("?")[0])
        except ValidationError:
            return "The email address after mailto: is not valid."
        return ""
    if scheme == "tel":
        return "" if re.fullmatch(r"tel:\+?[0-9 ()./-]{3,}", href) else "The phone number is not valid."
    if scheme not in {"http", "https"}:
        return "The address should start with https:// (or http://, mailto:)."
    try:
        _url_validator(href)
    except ValidationError:
        return "The address is not a well-formed URL (spaces or an invalid host?)."
    return ""
