"""The pure side of forgetting: the address checked, found as a whole address, hashed."""

from __future__ import annotations

import pytest

from xmas_pipeline.core.forget import checked_address, file_mentions, forgotten_hash, mentions


def test_a_well_formed_address_gives_its_contact_key() -> None:
    assert checked_address("  Jane.Doe@Example.COM ") == "jane.doe@example.com"


@pytest.mark.parametrize("text", ["", "   ", "jane", "jane@", "@x.com", "a b@x.com", "j@@x.com"])
def test_a_malformed_address_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(ValueError, match="email address"):
        checked_address(text)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("JANE@x.com", True),
        ("christmas-2025/jane@x.com/email-3", True),
        ("critical/jane@x.com", True),
        ("Jane Doe <Jane@X.COM>", True),
        ("ajane@x.com", False),
        ("jane@x.community", False),
        ("jane@x.co", False),
        ("nothing here", False),
    ],
)
def test_mentions_matches_whole_addresses_in_any_case(text: str, found: bool) -> None:
    assert mentions(text, "jane@x.com") is found


def test_file_mentions_reads_every_json_string_and_falls_back_to_text() -> None:
    nested = b'{"data": {"to": ["x@y.z", "Jane@X.com"]}, "n": 1}'
    assert file_mentions(nested, "jane@x.com")
    assert file_mentions(b'{"email": "jane\\u0040x.com"}', "jane@x.com")  # escaped in JSON
    assert not file_mentions(b'{"email": "ajane@x.com"}', "jane@x.com")
    assert file_mentions(b'{"email": "jane@x.com", broken', "jane@x.com")


def test_the_hash_is_salted_and_case_blind() -> None:
    digest = forgotten_hash("salt-1", "Jane@X.com")
    assert digest == forgotten_hash("salt-1", "jane@x.com")
    assert digest != forgotten_hash("salt-2", "jane@x.com")
    assert len(digest) == 64 and "jane" not in digest
