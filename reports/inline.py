"""CSS inlined into the HTML templates once, when a template is loaded, instead of into every rendered message.

Mail clients strip ``<style>`` blocks, so every element must carry its styles in ``style=""``. Running an HTML
inliner over each rendered report cost as much as rendering it; here ``templates/_email.css`` (the one
stylesheet) is applied to the template *source*: each opening tag gets the declarations of the rules that
match it and its ancestors in the template, the way a browser's cascade would order them (specificity, then
order in the file; a ``style=""`` written in the template wins). A class that is only known at render time
(``class="badge band-{{ bk }}"``) becomes a ``style`` computed when rendering, from the same rules, cached.

The stylesheet may use element, class and ``element.class`` selectors and descendants of them (``.data th``),
which is all an email can rely on anyway; anything else is refused when the templates load. Its ``@media`` blocks
(the phone layout) cannot be inlined: they are kept as written in a ``<style>`` block at the end of the template's
``<head>``, with ``!important`` on each declaration to beat the inlined styles, as an inliner's ``keep_at_rules``
would keep them. Clients that honour a head ``<style>`` (Apple Mail, Gmail, most phone apps) apply them; the others
show the desktop layout.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["Stylesheet", "inline_template", "CHAIN_GLOBAL"]

CHAIN_GLOBAL = "_inline_style"  # the Jinja global that styles a class known only at render time
_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
_COMPOUND = re.compile(r"([a-z][a-z0-9]*)?((?:\.[A-Za-z_][A-Za-z0-9_-]*)*)")
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_MASK = re.compile(r"\x02(\d+)\x03")
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)((?:\s[^<>]*?)?)\s*(/?)>")
_ATTR = re.compile(r'\s(class|style)="([^"]*)"')
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})
_RAW_TEXT = frozenset({"style", "script", "title"})
_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_KEPT_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos", "nbsp"})

Element = tuple[str, frozenset[str]]  # tag name, classes


@dataclass(frozen=True)
class _Rule:
    compounds: tuple[tuple[str | None, frozenset[str]], ...]  # outermost ancestor first, the element last
    specificity: tuple[int, int]
    order: int
    declarations: tuple[tuple[str, str], ...]

    def matches(self, chain: tuple[Element, ...]) -> bool:
        *ancestors, element = chain
        if not _compound_matches(self.compounds[-1], element):
            return False
        wanted = list(self.compounds[:-1])
        for ancestor in reversed(ancestors):  # descendant combinators only: nearest matching ancestor, outwards
            if wanted and _compound_matches(wanted[-1], ancestor):
                wanted.pop()
        return not wanted


def _compound_matches(compound: tuple[str | None, frozenset[str]], element: Element) -> bool:
    tag, classes = compound
    return (tag is None or tag == element[0]) and classes <= element[1]


def _split_at_rules(css: str, name: str) -> tuple[str, tuple[str, ...]]:
    """The stylesheet without its ``@...{ ... }`` blocks, and those blocks as written (braces may nest)."""
    plain: list[str] = []
    blocks: list[str] = []
    position = 0
    while (start := css.find("@", position)) >= 0:
        plain.append(css[position:start])
        opening = css.find("{", start)
        if opening < 0:
            raise ValueError(f"{name}: {css[start:start + 40].strip()!r} has no block")
        depth = 0
        for end in range(opening, len(css)):
            depth += {"{": 1, "}": -1}.get(css[end], 0)
            if depth == 0:
                break
        else:
            raise ValueError(f"{name}: {css[start:start + 40].strip()!r} is not closed")
        block = " ".join(css[start:end + 1].split())
        if not block.startswith("@media "):
            raise ValueError(f"{name}: only @media blocks can be kept for mail, not {block.split()[0]!r}")
        blocks.append(block)
        position = end + 1
    plain.append(css[position:])
    return "".join(plain), tuple(blocks)


class Stylesheet:
    """The rules of one stylesheet, and the ``style`` attribute they give an element in its ancestors' chain.

    ``kept`` is its ``@media`` blocks, as written: what goes into the ``<style>`` block of a document's head.
    """

    def __init__(self, css: str, *, name: str = "stylesheet") -> None:
        rules = []
        css, self.kept = _split_at_rules(_COMMENT.sub("", css), name)
        for match in _RULE.finditer(css):
            declarations = tuple(
                # Single quotes: the declarations go into a double-quoted style="" attribute.
                (prop.strip().lower(), value.strip().replace('"', "'"))
                for prop, _, value in (part.partition(":") for part in match[2].split(";") if part.strip())
            )
            for selector in match[1].split(","):
                compounds = []
                for part in selector.split():
                    parsed = _COMPOUND.fullmatch(part)
                    if not parsed or not part:
                        raise ValueError(f"{name}: selector {selector.strip()!r} is not supported in email; use "
                                         "element, .class, element.class and descendants of them")
                    compounds.append((parsed[1], frozenset(c for c in parsed[2].split(".") if c)))
                specificity = (sum(len(c) for _, c in compounds), sum(t is not None for t, _ in compounds))
                rules.append(_Rule(tuple(compounds), specificity, len(rules), declarations))
        self.rules = tuple(sorted(rules, key=lambda rule: (rule.specificity, rule.order)))
        self.style_of = lru_cache(maxsize=4096)(self._style_of)

    def _style_of(self, chain: tuple[Element, ...]) -> str:
        merged: dict[str, str] = {}
        for rule in self.rules:
            if rule.matches(chain):
                for prop, value in rule.declarations:
                    merged.pop(prop, None)
                    merged[prop] = value
        return " ".join(f"{prop}: {value};" for prop, value in merged.items())


def _classes(value: str) -> frozenset[str]:
    return frozenset(value.split())


def inline_template(source: str, sheet: Stylesheet, chains: list[tuple[Element, ...]]) -> str:
    """The template ``source`` with every opening tag styled from ``sheet``.

    A class attribute holding a Jinja expression becomes ``style="{{ _inline_style(n, 'tag', classes) }}"``,
    where ``n`` indexes ``chains`` (its ancestors, appended here) and ``classes`` is the attribute's value as a
    Jinja expression.
    """
    masked_parts: list[str] = []

    def mask(match: re.Match[str]) -> str:
        masked_parts.append(match[0])
        return f"\x02{len(masked_parts) - 1}\x03"

    # Named entities such as &middot; become their characters, as an HTML serialiser writes them: the reports
    # read the same in every client and in their plain-text searches.
    masked = _ENTITY.sub(lambda m: m[0] if m[1] in _KEPT_ENTITIES else html.unescape(m[0]), _JINJA.sub(mask, source))
    stack: list[Element] = []
    out: list[str] = []
    position = 0
    raw_until: str | None = None
    for tag_match in _TAG.finditer(masked):
        closing, tag, attributes = tag_match[1], tag_match[2].lower(), tag_match[3]
        if raw_until is not None:
            if closing and tag == raw_until:
                raw_until = None
            continue
        if closing:
            names = [name for name, _ in stack]
            if tag in names:
                del stack[len(names) - 1 - names[::-1].index(tag):]
            continue
        found = {name: value for name, value in _ATTR.findall(attributes)}
        klass, style = found.get("class", ""), found.get("style")
        static = frozenset(word for word in klass.split() if not _MASK.search(word))
        element = (tag, static)
        chain = (*stack, element)
        if _MASK.search(klass):
            if "{%" in _MASK.sub(lambda m: masked_parts[int(m[1])], klass):
                raise ValueError(f"a class attribute may hold {{{{ expressions }}}} only, not statements: {klass!r}")
            chains.append(tuple(stack))
            expression = _class_expression(klass, masked_parts)
            computed = f"{{{{ {CHAIN_GLOBAL}({len(chains) - 1}, {tag!r}, {expression}) }}}}"
        else:
            computed = sheet.style_of(chain)
        if computed:
            merged = f"{computed} {style}" if style else computed
            new_attributes = _ATTR.sub(lambda m: "" if m[1] == "style" else m[0], attributes)
            new_attributes += f' style="{merged}"'
            out.append(masked[position:tag_match.start(3)])
            out.append(new_attributes)
            position = tag_match.end(3)
        if tag in _RAW_TEXT:
            raw_until = tag
        elif tag not in _VOID and not tag_match[4]:
            stack.append(element)
    out.append(masked[position:])
    inlined = _MASK.sub(lambda m: masked_parts[int(m[1])], "".join(out))
    if sheet.kept and "</head>" in inlined:
        # Raw: the template engine must not read the CSS; one block, so a client that drops it drops all of it.
        kept = "{% raw %}<style>\n" + "\n".join(sheet.kept) + "\n</style>{% endraw %}\n"
        inlined = inlined.replace("</head>", kept + "</head>", 1)
    return inlined


def _class_expression(value: str, masked_parts: list[str]) -> str:
    """``badge band-{{ bk }}`` as the Jinja expression ``'badge band-' ~ (bk)``."""
    pieces = []
    position = 0
    for match in _MASK.finditer(value):
        if match.start() > position:
            pieces.append(repr(value[position:match.start()]))
        inner = masked_parts[int(match[1])][2:-2].strip("-").strip()
        pieces.append(f"({inner})")
        position = match.end()
    if position < len(value):
        pieces.append(repr(value[position:]))
    return " ~ ".join(pieces)


def load_stylesheet(path: Path) -> Stylesheet:
    return Stylesheet(path.read_text(encoding="utf-8"), name=path.name)
