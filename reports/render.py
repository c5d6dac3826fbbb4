"""Render supplier reports and the officer digest from plain-dict contexts (Jinja2, CSS inlined for mail).

Templates live in ``reports/templates``. HTML templates (``*.html.j2``) are autoescaped; plain-text templates
(``*.txt.j2``) are not, so ``&`` stays ``&`` in the text part. A missing context key is an error
(``StrictUndefined``), never a silently empty cell.

Units of ``criteria[].value`` (and the confidence bounds): ``rate`` is a fraction 0–1 shown as a percentage,
``ppm`` parts per million, ``days`` days, ``count`` a whole number, ``score`` a plain score. A criterion whose
``measured`` is false shows "not measured" and its ``not_measured_reason`` instead of a value, and no points;
when ``evaluation.renormalised``, each measured criterion shows the weight it counted with (``effective_weight``).

Band colours: band names come from the rule set. Names ``A``..``D`` (in a rule set of at most four bands) keep
their fixed colours; any other name is coloured by its position, best band green to worst band red, from
``evaluation.band_rank`` (0 = best) and ``evaluation.band_count`` in a supplier report, and from each band's
``rank`` and the digest's ``band_count`` in the digest. An unknown band (no rank) is grey, never an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from reports.inline import CHAIN_GLOBAL, Element, Stylesheet, inline_template

__all__ = [
    "Rendered",
    "render_supplier_report",
    "render_digest",
    "render_supplier_html",
    "render_supplier_text",
    "supplier_sections_html",
    "LazyRendered",
    "render_buyer_message",
    "buyer_subject",
    "supplier_report_subject",
    "digest_subject",
    "format_value",
    "band_colour",
]

TEMPLATE_DIR = Path(__file__).parent / "templates"
STYLESHEET = "_email.css"  # the one stylesheet of every HTML report, inlined into the templates when they load
DASH = "—"
MAX_LATE_LINES = 25
LETTER_BANDS = ("A", "B", "C", "D")  # the classic names keep their fixed colours
BAND_COLOURS = 4  # CSS classes band-0 (best, green) .. band-3 (worst, red), plus band-none (grey)
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Rendered:
    """One rendered document: HTML with its CSS inlined, and the plain-text alternative."""

    html: str
    text: str


def render_supplier_report(context: Mapping[str, Any]) -> Rendered:
    """Render one supplier's evaluation report."""
    return _render("supplier_report", context)


SECTIONS_START, SECTIONS_END = "<!--supplier-sections-->", "<!--/supplier-sections-->"


def render_supplier_html(context: Mapping[str, Any]) -> str:
    """One supplier's report, the HTML document alone (the report file; its text part is made when mailed)."""
    return _unquote(_template("supplier_report.html.j2", context))


def render_supplier_text(context: Mapping[str, Any], *, sections_only: bool = False) -> str:
    """One supplier's report as plain text; its sections alone (no title, audit or legend) for a buyer message."""
    return _template("_supplier_body.txt.j2" if sections_only else "supplier_report.txt.j2", context)


def supplier_sections_html(document: str) -> str:
    """The sections of a rendered supplier report (what a buyer message shows of it), cut out of the document."""
    start = document.index(SECTIONS_START) + len(SECTIONS_START)
    return document[start:document.index(SECTIONS_END, start)]


class LazyRendered(Rendered):
    """A rendering made when it is first read (when a message is composed), then kept."""

    def __init__(self, make: Callable[[], Rendered]) -> None:  # noqa: D107 - frozen: set through object
        object.__setattr__(self, "_make", make)
        object.__setattr__(self, "_made", None)

    def _rendered(self) -> Rendered:
        if self._made is None:
            object.__setattr__(self, "_made", self._make())
        return self._made

    @property
    def html(self) -> str:  # type: ignore[override]
        return self._rendered().html

    @property
    def text(self) -> str:  # type: ignore[override]
        return self._rendered().text


def render_buyer_message(context: Mapping[str, Any]) -> Rendered:
    """A buyer's message: the summary of all their suppliers, then each supplier's report sections."""
    return _render("buyer", context)


def buyer_subject(context: Mapping[str, Any]) -> str:
    """E.g. ``Supplier evaluations as of 2026-06-30: 72 suppliers, 3 need attention``. Always one line."""
    count, attention = context["totals"]["suppliers"], context["totals"]["attention"]
    return _one_line(f"{_what_if(context)}Supplier evaluations as of {context['as_of']}: {count} "
                     f"{_plural(count, 'supplier')}" + (f", {attention} {_plural(attention, 'needs', 'need')} "
                                                         "attention" if attention else ""))


def render_digest(context: Mapping[str, Any]) -> Rendered:
    """Render the officer digest: everyone by band, what changed, insufficient data, data quality."""
    return _render("digest", context)


def _one_line(text: str) -> str:
    """No CR, LF or other control characters (header injection), and no runs of blanks."""
    return " ".join(_NOT_ONE_LINE.sub(" ", text).split())


def supplier_report_subject(context: Mapping[str, Any]) -> str:
    """The mail subject, e.g. ``Supplier evaluation: Acme Ltd (S-001) as of 2026-11-24: band B``.

    Without a band (insufficient data) it ends ``: insufficient data``. Always a single line.
    """
    supplier, evaluation = context["supplier"], context["evaluation"]
    band = evaluation["band"]
    outcome = "insufficient data" if evaluation["insufficient_data"] or band is None or band == "" else f"band {band}"
    return _one_line(
        f"{_what_if(context)}Supplier evaluation: {supplier['name']} ({supplier['supplier_id']}) "
        f"as of {evaluation['as_of']}: {outcome}"
    )


def digest_subject(context: Mapping[str, Any]) -> str:
    """The mail subject, e.g. ``Supplier evaluation digest as of 2026-11-24: 120 suppliers``. Always one line."""
    return _one_line(
        f"{_what_if(context)}Supplier evaluation digest as of {context['as_of']}: "
        f"{context['totals']['suppliers_evaluated']} suppliers"
    )


def _what_if(context: Mapping[str, Any]) -> str:
    return "What-if: " if context.get("run", {}).get("what_if") else ""


# ---- formatting filters -------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    """True for None, NaN and infinity. StrictUndefined raises here: a missing key never renders as a dash."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the missing key
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _fixed(value: Any, decimals: int = 1) -> str:
    """Round half up, the way people round (91.25 → ``91.3``), not banker's rounding of the binary float."""
    quantum = Decimal(1).scaleb(-decimals)
    return str(Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_UP))


def _dash(value: Any) -> Any:
    return DASH if _missing(value) or value == "" else value


def _score(value: Any) -> str:
    return DASH if _missing(value) else _fixed(value)


def _signed(value: Any) -> str:
    """Score change with its sign (a true minus sign); zero shows as ``±0.0``."""
    if _missing(value):
        return DASH
    text = _fixed(value)
    if float(text) == 0:
        return "±0.0"
    return f"+{text}" if not text.startswith("-") else f"\u2212{text[1:]}"


def _pct(value: Any, decimals: int = 1) -> str:
    """A fraction 0–1 as a percentage: 0.935 → ``93.5 %``."""
    return DASH if _missing(value) else f"{_fixed(float(value) * 100, decimals)} %"


def _thousands(value: Any) -> str:
    return (
        DASH
        if _missing(value)
        else f"{int(Decimal(repr(float(value))).quantize(Decimal(1), ROUND_HALF_UP)):,}"
    )


def _number(value: Any) -> str:
    """A weight or other plain number: no trailing ``.0``."""
    if _missing(value):
        return DASH
    value = float(value)
    return f"{int(value):,}" if value == int(value) else _fixed(value)


def format_value(value: Any, unit: str) -> str:
    """Format a metric value for people: rate ``93.5 %``, ppm ``1,250 ppm``, days ``3.4 days``, None ``—``."""
    if _missing(value):
        return DASH
    if unit == "rate":
        return _pct(value)
    if unit == "ppm":
        return f"{_thousands(value)} ppm"
    if unit == "days":
        return f"{_fixed(value)} days"
    if unit == "count":
        return _thousands(value)
    if unit == "score":
        return _score(value)
    return f"{float(value):,.2f} {unit}".strip()


def _interval(low: Any, high: Any, unit: str) -> str:
    """A confidence interval in the metric's unit: ``90.7–95.5 %``; a dash when either bound is missing."""
    if _missing(low) or _missing(high):
        return DASH
    if unit == "rate":
        return f"{_fixed(float(low) * 100)}–{_fixed(float(high) * 100)} %"
    return f"{format_value(low, unit)} – {format_value(high, unit)}"


def band_colour(band: Any, rank: Any = None, count: Any = None) -> str:
    """The CSS colour key of a band: ``0`` (best, green) .. ``3`` (worst, red), or ``none`` (grey).

    ``A``..``D`` keep their fixed colours unless the rule set has more than four bands. Any other name is
    coloured by its position ``rank`` (0 = best) among ``count`` bands; without ``count``, by ``rank`` alone
    (clamped to red). No band, or an unknown band without a rank, is ``none``.
    """
    _missing(rank), _missing(count)  # a missing key is an error even where the letter colour would do
    if _missing(band) or band == "":
        return "none"
    known_count = isinstance(count, int) and count > 0
    if band in LETTER_BANDS and (not known_count or count <= len(LETTER_BANDS)):
        return str(LETTER_BANDS.index(band))
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
        return "none"
    worst = BAND_COLOURS - 1
    if not known_count or rank >= count:
        return str(min(rank, worst))
    if count == 1:
        return "0"
    return str(int((Decimal(rank * worst) / Decimal(count - 1)).quantize(Decimal(1), ROUND_HALF_UP)))


def _trend(change: Any) -> str:
    """CSS class for a score change: ``up``, ``down`` or ``flat`` (no change, or no previous score)."""
    if _missing(change):
        return "flat"
    text = _fixed(change)
    return "flat" if float(text) == 0 else ("up" if float(text) > 0 else "down")


def _column(value: Any, width: int, align: str = "left", truncate: bool = True) -> str:
    """Pad to a width for plain-text tables; names may be shortened with an ellipsis, identifiers never."""
    text = " ".join(str(_dash(value)).split())
    if truncate and len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return text.rjust(width) if align == "right" else text.ljust(width)


def _plural(count: Any, singular: str, plural: str | None = None) -> str:
    return singular if count == 1 else (plural or singular + "s")


# ---- environment --------------------------------------------------------------------------------------


class _InliningLoader(jinja2.FileSystemLoader):
    """Loads ``*.html.j2`` templates with ``_email.css`` already inlined into their tags (see reports.inline)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.sheet = Stylesheet((folder / STYLESHEET).read_text(encoding="utf-8"), name=STYLESHEET)
        self.chains: list[tuple[Element, ...]] = []

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str | None, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        if template.endswith(".html.j2"):
            source = inline_template(source, self.sheet, self.chains)
        return source, filename, uptodate

    def style(self, chain_index: int, tag: str, classes: str) -> str:
        """The style of an element whose classes are known only when rendering."""
        return self.sheet.style_of((*self.chains[chain_index], (tag, frozenset(str(classes).split()))))


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    loader = _InliningLoader(TEMPLATE_DIR)
    env = jinja2.Environment(
        loader=loader,
        # select_autoescape() matches name endings: its defaults leave "x.html.j2" (ends ".j2") unescaped; *.txt.j2 raw.
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2"),
            disabled_extensions=("txt", "txt.j2", "css"),
            default_for_string=True,
            default=True,
        ),
        undefined=jinja2.StrictUndefined,
        auto_reload=False,  # the templates ship with the code: no stat of every template at every render
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        dash=_dash,
        score=_score,
        signed=_signed,
        pct=_pct,
        thousands=_thousands,
        number=_number,
        value=format_value,
        interval=_interval,
        band_colour=band_colour,
        trend=_trend,
        col=_column,
        plural=_plural,
    )
    env.globals.update(MAX_LATE_LINES=MAX_LATE_LINES, DASH=DASH)
    env.globals[CHAIN_GLOBAL] = loader.style
    return env


def _template(name: str, context: Mapping[str, Any]) -> str:
    try:
        return _environment().get_template(name).render(dict(context))
    except jinja2.UndefinedError as exc:
        exc.add_note(f"while rendering reports/templates/{name}: the context is missing a key the template uses")
        raise


def _render(name: str, context: Mapping[str, Any]) -> Rendered:
    env = _environment()
    data = dict(context)
    try:
        html = env.get_template(f"{name}.html.j2").render(data)
        text = env.get_template(f"{name}.txt.j2").render(data)
    except jinja2.UndefinedError as exc:
        exc.add_note(
            f"while rendering reports/templates/{name}: the context is missing a key the template uses"
        )
        raise
    return Rendered(html=_unquote(html), text=text)


def _unquote(html: str) -> str:
    # Every attribute in the templates is double-quoted, so an apostrophe needs no escaping: it reads as itself.
    return html.replace("&#39;", "'")
