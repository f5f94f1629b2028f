"""The outbox sender: writes each message to a folder instead of sending it.

Each message becomes `<idempotency key with / as __>.eml` (the full MIME message, as a
mail client would receive it) and `.html` (the body alone, for previewing in a browser).
Writing is atomic and idempotent: a key already in the outbox is not written again, just
as Resend deduplicates a repeated `Idempotency-Key`.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from upath import UPath

from xmas_pipeline.core.ports import OutgoingEmail, SendResult


def outbox_name(idempotency_key: str) -> str:
    """`christmas-2025/jane@x.com/email-3` -> `christmas-2025__jane@x.com__email-3`."""
    name = idempotency_key.replace("/", "__")
    if name.startswith(".") or "\\" in name or "\x00" in name:
        raise ValueError(f"unsafe outbox name: {idempotency_key!r}")
    return name


def build_mime(email: OutgoingEmail) -> EmailMessage:
    message = EmailMessage()
    # EmailMessage refuses header values with CR/LF: a last line of defence.
    message["From"] = email.from_email
    message["To"] = email.to
    message["Subject"] = email.subject
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="xmas-pipeline.local")
    message["X-Message-Id"] = email.message_id
    message["X-Idempotency-Key"] = email.idempotency_key
    for name, value in sorted(email.tags.items()):
        message[f"X-Tag-{name.title()}"] = value
    for name, value in email.headers.items():
        message[name] = value
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


class OutboxSender:
    """`EmailSender` that writes to a folder (a local path or any `UPath`)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = UPath(folder)

    def path_for(self, idempotency_key: str, suffix: str) -> UPath:
        return self.folder / f"{outbox_name(idempotency_key)}{suffix}"

    def send(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        self.folder.mkdir(parents=True, exist_ok=True)
        return [self._send_one(email) for email in emails]

    def _send_one(self, email: OutgoingEmail) -> SendResult:
        provider_id = "outbox-" + hashlib.sha256(email.idempotency_key.encode()).hexdigest()[:20]
        try:
            eml = self.path_for(email.idempotency_key, ".eml")
            if eml.exists():  # already accepted under this key: deduplicated
                return SendResult(email.message_id, email.idempotency_key, "sent", provider_id)
            mime = build_mime(email).as_bytes()
        except ValueError as exc:  # a header the MIME writer refuses
            return SendResult(email.message_id, email.idempotency_key, "failed", error=str(exc))
        # The .html first, then the .eml by rename: the .eml marks acceptance.
        self._write_atomic(self.path_for(email.idempotency_key, ".html"), email.html.encode())
        self._write_atomic(eml, mime)
        return SendResult(email.message_id, email.idempotency_key, "sent", provider_id)

    def _write_atomic(self, target: UPath, data: bytes) -> None:
        if getattr(self.folder, "protocol", "") not in ("", "file", "local"):
            target.write_bytes(data)
            return
        tmp = f"{target.path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target.path)
