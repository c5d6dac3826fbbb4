"""The one definition of a valid email address, shared by record validation, run parameters and mail.

A supplier row whose ``owner_email`` passes validation must also be accepted when its report is composed;
so :mod:`suppliers.records` (the pattern of the email fields, which Pandera checks), :mod:`flows.params`
(``recipients``) and :mod:`reports.mail` (``parse_address``) all check against :data:`ADDRESS_PATTERN`.

The address is an ASCII ``addr-spec``: an RFC 5322 dot-atom local part and a domain of RFC 1035 labels
(a single label such as ``localhost`` is allowed — the default sender is ``supplier-eval@localhost``).
Quoted local parts, comments, IP-literal domains and non-ASCII (internationalised) addresses are refused.
"""

from __future__ import annotations

import re

__all__ = ["ADDRESS_PATTERN", "is_address"]

# RFC 5322 dot-atom local part and an RFC 1035-ish domain. Both halves are explicit ASCII classes, so the
# pattern means the same to Python's ``re`` and to the Rust regex engine Polars (and so Pandera) uses.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"

# Anchored at both ends: Pandera's ``str_matches`` only adds a leading ``^``. In Rust regex ``$`` is the
# end of the text; in Python ``$`` also matches before a final newline, so :func:`is_address` uses
# ``fullmatch`` rather than relying on the anchor.
ADDRESS_PATTERN: str = rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})*$"

_ADDRESS = re.compile(ADDRESS_PATTERN)


def is_address(text: str) -> bool:
    """Whether ``text`` is exactly one valid address (``name@example.com``), nothing before or after it.

    No trimming: ``" a@b.example"`` and ``"a@b.example\\n"`` are not addresses (callers that accept cell
    text trim it first, as validation and ``parse_address`` do).
    """
    return isinstance(text, str) and _ADDRESS.fullmatch(text) is not None
