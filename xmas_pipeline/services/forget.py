"""Forgetting a person: every place the pipeline keeps their address, emptied of it.

The store's rows (`adapters.sql.forget`), the inbox files holding the address (signups,
bookings, email events, on any day), the outbox files (named after the idempotency key,
which holds it), and with Notion on: the person's Email Sequence page(s) moved to the
trash and the CRM contact's campaign fields cleared (the CRM page itself is the team's,
not the pipeline's). What remains is the address's salted hash, so the address is
suppressed from then on. What forgetting cannot reach is said, not hidden (`UNREACHABLE`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from upath import UPath

from xmas_pipeline.adapters.inbox import KINDS, Inbox, InboxFile
from xmas_pipeline.adapters.notion.sync import NotionSync
from xmas_pipeline.adapters.sql.forget import SqlForget
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.forget import file_mentions, mentions
from xmas_pipeline.core.ports import StoreSchemaError

UNREACHABLE = (
    "Dagster's event log and run history (runs before this one may name the address)",
    "the email provider's own logs (Resend keeps what it sent)",
    "backups and copies of the store, the inbox or the outbox made before now",
    "chat alerts already posted, and Notion's own page history and trash",
)


@dataclass
class ForgetReport:
    address_hash: str
    store: dict[str, int] = field(default_factory=dict)  # table -> rows removed
    inbox: dict[str, int] = field(default_factory=dict)  # kind -> files removed
    outbox: int = 0
    notion_pages_trashed: int = 0
    notion_logs_trashed: int = 0  # Email Analytics pages
    notion_contacts_cleared: int = 0
    notion: str = "off"

    @property
    def hash_prefix(self) -> str:
        return self.address_hash[:12]

    def counts(self) -> dict[str, int]:
        """Every count by place, for the CLI and the job's metadata."""
        return {
            **{f"store {name}": n for name, n in sorted(self.store.items())},
            **{f"inbox {kind}": n for kind, n in sorted(self.inbox.items())},
            "outbox files": self.outbox,
            "notion pages trashed": self.notion_pages_trashed,
            "notion analytics pages trashed": self.notion_logs_trashed,
            "notion contacts cleared": self.notion_contacts_cleared,
        }

    def summary(self) -> str:
        lines = [f"forgotten (kept only as hash {self.hash_prefix}…):"]
        lines += [f"  {place}: {count}" for place, count in self.counts().items()]
        lines.append(f"  notion: {self.notion}")
        lines.append("not reachable from here (see the README's Privacy section):")
        lines += [f"  - {item}" for item in UNREACHABLE]
        return "\n".join(lines)


def forget_inbox(inbox: Inbox, key: str) -> dict[str, int]:
    """Remove every inbox file, of any kind and day, that holds the address."""
    removed: dict[str, int] = {}
    for kind in KINDS:
        for day in inbox.days(kind):
            for item in inbox.files(kind, day):
                if file_mentions(inbox.read(item), key):
                    inbox.remove(item)
                    removed[kind] = removed.get(kind, 0) + 1
    return removed


def forget_outbox(folder: UPath, key: str) -> int:
    """Remove the outbox files whose name (the idempotency key) holds the address."""
    if not folder.exists():
        return 0
    # The key's "/" became "__" in the name: the address sits between two of them.
    found = [
        p
        for p in folder.iterdir()
        if f"__{key}__" in p.name.lower() or mentions(p.name.replace("__", "/"), key)
    ]
    for path in found:
        path.unlink()
    return len(found)


def forget_in_notion(
    notion: NotionSync,
    campaigns: Sequence[Campaign],
    key: str,
    known: tuple[list[str], list[str]],
) -> tuple[int, int, int]:
    """Trash the person's Email Sequence pages of every campaign and their Email
    Analytics pages (when that log is on), clear their CRM contact's campaign fields (each
    campaign's status property): (sequence pages, analytics pages, contacts). Pages are
    looked up too, not only taken from the store: a page made by hand, by an older tool or
    for a campaign this deployment does not run is theirs as well."""
    usable: list[Campaign] = []
    for campaign in campaigns:
        try:
            notion.prepare(campaign)
        except StoreSchemaError:
            # Its status property not made yet (before `notion setup`): nothing of it in
            # the CRM to clear; its pages are still found by address below.
            continue
        usable.append(campaign)
    if not usable:
        notion.prepare(campaigns[0])  # raises: no campaign's schema is usable
    pages = set(known[0]) | {p["id"] for p in notion.find_sequence_pages(key)}
    logged = {p["id"] for p in notion.find_analytics_pages(key)}
    for page_id in sorted(pages | logged):
        notion.trash_page(page_id)
    found = notion.find_contacts({key: key}).values()
    contacts = sorted({p for p in known[1] if p} | {c.page_id for c in found if c.page_id})
    c = notion.schema.contacts
    cleared: dict[str, None] = {c.booking_status: None, c.diagnostic_call_date: None}
    cleared.update({notion.status_property(campaign): None for campaign in usable})
    for page_id in contacts:
        notion.update_contact(page_id, cleared)
    return len(pages), len(logged), len(contacts)


def forget_person(
    key: str,
    *,
    store: SqlForget,
    inbox: Inbox,
    outbox: UPath | None,
    campaigns: Sequence[Campaign],
    notion: NotionSync | None = None,
) -> ForgetReport:
    """Forget `key` (a checked contact key) everywhere. Notion goes first (its page ids
    are in the store), then the inbox and the outbox, the store's rows last."""
    # Suppressed first: a signup ingested while this runs is already refused.
    report = ForgetReport(address_hash=store.suppress(key))
    if notion is not None:
        counts = forget_in_notion(notion, campaigns, key, store.notion_page_ids(key))
        report.notion_pages_trashed, report.notion_logs_trashed = counts[0], counts[1]
        report.notion_contacts_cleared = counts[2]
        report.notion = "done"
    report.inbox = forget_inbox(inbox, key)
    if outbox is not None:
        report.outbox = forget_outbox(outbox, key)
    report.store = store.erase(key)
    return report


class _Keyed(Protocol):
    @property
    def contact_key(self) -> str: ...


E = TypeVar("E", bound=_Keyed)


def drop_forgotten(
    inbox: Inbox, store: SqlForget, events: list[E], ref: Callable[[E], str]
) -> tuple[list[E], int]:
    """A day's events without those of forgotten addresses (a new signup, a late delivery
    event for an email sent before), whose inbox files are removed too: the address is
    kept nowhere in clear. (the rest, how many were suppressed)."""
    gone = store.forgotten_keys(e.contact_key for e in events if e.contact_key)
    if not gone:
        return events, 0
    kept = [e for e in events if e.contact_key not in gone]
    for event in events:
        parts = ref(event).split("/", 2)
        if event.contact_key in gone and len(parts) == 3 and parts[0] in KINDS:
            inbox.remove(InboxFile(parts[0], parts[1], parts[2], "", datetime.now(UTC)))
    return kept, len(events) - len(kept)
