"""Forgetting in the outbox: the files named after a person's messages, and only those."""

from __future__ import annotations

from pathlib import Path

from upath import UPath

from xmas_pipeline.adapters.outbox import OutboxSender
from xmas_pipeline.core.ports import OutgoingEmail
from xmas_pipeline.services.forget import forget_outbox


def email(key: str, step: str = "email-1", suffix: str = "") -> OutgoingEmail:
    message_id = f"christmas-2025/{key}/{step}"
    return OutgoingEmail(
        message_id=message_id,
        idempotency_key=message_id + suffix,
        to=key,
        from_email="BusOS <hello@example.com>",
        subject="Hi",
        html="<p>Hi</p>",
        text="Hi",
    )


def test_forget_removes_each_message_file_of_the_address_and_only_those(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    sender = OutboxSender(folder)
    people = ["jane@x.com", "ajane@x.com", "a__b@x.com", "jane@x.community"]
    sender.send([email(k) for k in people])
    sender.send([email("jane@x.com", "email-2"), email("jane@x.com", suffix="/resend-r1")])
    sender.send([email("a__b@x.com", "email-2")])

    assert forget_outbox(UPath(folder), "jane@x.com") == 6  # 3 messages, .eml and .html
    assert forget_outbox(UPath(folder), "a__b@x.com") == 4
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted(
        f"christmas-2025__{k}__email-1{ext}"
        for k in ("ajane@x.com", "jane@x.community")
        for ext in (".eml", ".html")
    )
    assert forget_outbox(UPath(tmp_path / "none"), "jane@x.com") == 0
