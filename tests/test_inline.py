"""The stylesheet inlined into the templates when they load gives every element the styles an HTML inliner
(css_inline, run over each rendered document) gives it, element by element; a selector mail cannot rely on is
refused."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from typing import Any

import css_inline
import jinja2
import pytest
from test_templates import digest, supplier_report

from reports.inline import Stylesheet, inline_template
from reports.render import STYLESHEET, TEMPLATE_DIR, _environment


class Styles(HTMLParser):
    """Each element's tag and its style declarations, in document order."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        style = dict(attrs).get("style") or ""
        declarations = (part.partition(":") for part in style.split(";") if part.strip())
        self.elements.append((tag, {prop.strip(): " ".join(value.split()) for prop, _, value in declarations}))


def inlined_afterwards(name: str, context: Mapping[str, Any]) -> str:
    """The document rendered from the template as written, with a <style> block, then run through css_inline."""
    plain = _environment().overlay(loader=jinja2.FileSystemLoader(TEMPLATE_DIR))
    html = plain.get_template(name).render(dict(context))
    css = (TEMPLATE_DIR / STYLESHEET).read_text(encoding="utf-8")
    html = html.replace("</head>", f"<style>{css}</style></head>", 1)
    return css_inline.CSSInliner(load_remote_stylesheets=False, keep_style_tags=False, keep_at_rules=True).inline(html)


def head_style(html: str) -> str:
    """The text of the document's <style> block, blanks collapsed."""
    match = re.search(r"<head>.*<style>(.*?)</style>.*</head>", html, re.S)
    assert match, "a <style> block in the head"
    return " ".join(match[1].split())


CASES: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "supplier report": ("supplier_report.html.j2", lambda: supplier_report(False)),
    "digest": ("digest.html.j2", lambda: digest(True)),
}


@pytest.mark.parametrize("case", CASES)
def test_every_element_gets_the_styles_an_inliner_would_give_it(case: str) -> None:
    name, context = CASES[case]
    ours_html, theirs_html = _environment().get_template(name).render(context()), inlined_afterwards(name, context())
    ours = [e for e in Styles(ours_html).elements if e[0] != "style"]
    theirs = [e for e in Styles(theirs_html).elements if e[0] not in ("tbody", "style")]
    assert len(ours) == len(theirs) > 100
    assert [e for e in ours if e[1]], "the report is styled"
    assert ours == theirs
    # The phone layout (@media) cannot be inlined: it is kept in the head, as the inliner keeps it.
    assert head_style(ours_html) == head_style(theirs_html)
    assert head_style(ours_html).startswith("@media only screen and (max-width: 480px) {")


def test_a_selector_mail_clients_do_not_support_is_refused_when_the_templates_load() -> None:
    for selector in ("a:hover", "td > p", "[data-x]", "#id"):
        with pytest.raises(ValueError, match="not supported in email"):
            Stylesheet(f"{selector} {{ color: red; }}")


def test_a_class_known_only_when_rendering_is_styled_from_the_same_rules() -> None:
    sheet = Stylesheet(".data td { padding: 1px; } .up { color: green; } .num { text-align: right; }")
    chains: list = []
    source = inline_template('<table class="data"><tr><td class="num {{ trend }}">x</td></tr></table>', sheet, chains)
    assert "{{ _inline_style(0, 'td', 'num ' ~ (trend)) }}" in source and chains == [
        (("table", frozenset({"data"})), ("tr", frozenset()))]
    style = sheet.style_of((*chains[0], ("td", frozenset({"num", "up"}))))
    assert sorted(part.strip() for part in style.split(";") if part.strip()) == [
        "color: green", "padding: 1px", "text-align: right"]
