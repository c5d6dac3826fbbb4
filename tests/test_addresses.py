"""One email-address rule: record validation, run parameters and mail composition must agree on every address.

A supplier row whose owner_email passes validation used to be rejected when its report was composed, which
failed the whole run after the results were stored. Every address below is checked against all of them.
"""

from __future__ import annotations

import re

import polars as pl
import pytest
from pydantic import ValidationError

from flows.params import RunParameters
from reports.mail import parse_address
from suppliers.addresses import ADDRESS_PATTERN, is_address
from suppliers.errors import ConfigError
from suppliers.validate import validate_frame

GOOD = [
    "a.b+c@example.org",
    "x@sub.example.co.uk",
    "o'brien@example.ie",
    "first_last-1@x-y.example",
    "{a}~&=?^!#$%*/|@example.com",  # every dot-atom special
    # A single-label domain is an address to mail as well: the default sender is supplier-eval@localhost.
    "a@b",
    "supplier-eval@localhost",
]
BAD = [
    "jörg@example.de",  # non-ASCII local part
    "a@exämple.de",  # non-ASCII domain
    "a@@b.com",
    "a b@c.com",
    "a@exa mple.com",
    '"x"@y.com',  # quoted local part
    "a@b.com\nBcc: x@y.com",
    "a@b.com\r\nBcc: x@y.com",
    "a@b.com, c@d.com",
    "n/a",
    "a@",
    "@b.com",
    "a.@b.com",
    ".a@b.com",
    "a..b@c.com",
    "a@b.com.",
    "a@-b.com",
    "a@b-.com",
    "a@b_c.com",
    "a@" + "x" * 64 + ".com",  # a domain label is at most 63 characters
    "a@[127.0.0.1]",
]


def _supplier_rows(addresses: list[str], column: str) -> pl.DataFrame:
    n = len(addresses)
    other = "contact_email" if column == "owner_email" else "owner_email"
    return pl.DataFrame(
        {
            "supplier_id": [f"S{i}" for i in range(1, n + 1)],
            "name": ["Acme"] * n,
            "category": ["metal"] * n,
            "criticality": ["major"] * n,
            column: addresses,
            other: ["ok@example.com"] * n,
            "status": ["approved"] * n,
            "certificate_expiry": [None] * n,
            "active": ["true"] * n,
        },
        schema_overrides={"certificate_expiry": pl.String},
    )


def _agree(address: str) -> dict[str, bool]:
    """Whether each of the three checks accepts ``address``."""
    try:
        parsed = parse_address(address, role="recipient")
        assert parsed.addr_spec == address  # accepted as written, never "repaired" into another address
        mail = True
    except ConfigError:
        mail = False
    try:
        RunParameters(recipients=(address,))
        params = True
    except ValidationError:
        params = False
    return {"is_address": is_address(address), "mail": mail, "params": params}


@pytest.mark.parametrize("address", GOOD)
def test_good_addresses_pass_everywhere(address):
    assert _agree(address) == {"is_address": True, "mail": True, "params": True}


@pytest.mark.parametrize("address", BAD)
def test_bad_addresses_fail_everywhere(address):
    assert _agree(address) == {"is_address": False, "mail": False, "params": False}


@pytest.mark.parametrize("column", ["owner_email", "contact_email"])
def test_schema_validation_agrees_and_quarantines_with_a_readable_reason(column):
    good, quarantine = validate_frame("suppliers", _supplier_rows(GOOD + BAD, column), "suppliers.csv")
    assert good.get_column(column).to_list() == GOOD
    assert quarantine.select("row", "column", "value", "reason").rows() == [
        (len(GOOD) + i, column, address, f"{column} is not a valid email address")
        for i, address in enumerate(BAD, start=1)
    ]


def test_a_row_that_passes_validation_can_be_mailed():
    _, quarantine = validate_frame("suppliers", _supplier_rows(GOOD + BAD, "owner_email"), "suppliers.csv")
    kept = set(GOOD + BAD) - set(quarantine.get_column("value"))
    for address in kept:
        assert parse_address(address, role="recipient").addr_spec == address


def test_surrounding_whitespace_is_trimmed_by_validation_and_mail_alike():
    # A cell is trimmed when it is validated, and parse_address strips too; is_address itself does not trim.
    good, quarantine = validate_frame("suppliers", _supplier_rows([" a@b.example\n"], "owner_email"), "s.csv")
    assert quarantine.height == 0 and good.get_column("owner_email").to_list() == ["a@b.example"]
    assert parse_address(" a@b.example\n").addr_spec == "a@b.example"
    assert not is_address(" a@b.example") and not is_address("a@b.example\n")


def test_the_pattern_is_anchored_at_both_ends_for_re_and_polars():
    assert ADDRESS_PATTERN.startswith("^") and ADDRESS_PATTERN.endswith("$")
    texts = GOOD + BAD + ["a@b.com trailing", "leading a@b.com", "a@b.com\n"]
    in_polars = pl.Series(texts).str.contains(ADDRESS_PATTERN).to_list()
    in_python = [re.search(ADDRESS_PATTERN, t) is not None and not t.endswith("\n") for t in texts]
    assert in_polars == in_python == [is_address(t) for t in texts]


def test_is_address_refuses_non_text():
    assert not is_address(None)  # type: ignore[arg-type]
    assert not is_address(b"a@b.com")  # type: ignore[arg-type]
