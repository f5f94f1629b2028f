"""`NotionStore`: the state store on Notion (notion-client, Notion-Version 2025-09-03).

The Email Sequence DB holds one page per contact and campaign; the contacts DB (BusinessX
Canada CRM) gets the score, segment and campaign status. Bookings, reminder outcomes and
email events are kept in an SQL ledger and mirrored where people read them. Each part
lives in its own module: `workspace` (schema), `pages` (the page cache), `signups`,
`sequences` (the frame, sent status), `send_log`, `bookings`, `setup`.
"""

from __future__ import annotations

from xmas_pipeline.adapters.notion.bookings import NotionBookings
from xmas_pipeline.adapters.notion.signups import NotionSignups


class NotionStore(NotionSignups, NotionBookings):
    """`StateStore` on Notion, with its SQL ledger (`ledger`) for bookings and events."""
