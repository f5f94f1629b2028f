"""What Notion should show about each contact, read from the SQL store in a few queries
per batch (`ContactSnapshot`): the sequence, the first send of each step, the current
booking and its reminders, the exit flags, the latest failure still current."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa

from xmas_pipeline.adapters.sql.engine import SqlDatabase, utc
from xmas_pipeline.adapters.sql.tables import contacts, messages, outcomes, sequences
from xmas_pipeline.core.booking_state import BOOKED
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.email_events import stronger_state
from xmas_pipeline.core.ports import ContactSnapshot

CHUNK = 500  # keys per IN (...) list


def _chunks(keys: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(keys), CHUNK):
        yield keys[start : start + CHUNK]


class SqlSnapshots(SqlDatabase):
    def contact_snapshots(
        self, campaign: Campaign, keys: Iterable[str]
    ) -> dict[str, ContactSnapshot]:
        """The snapshot of each key the store knows (a key it does not know is left out)."""
        self.prepare(campaign)
        wanted = sorted(set(keys))
        out: dict[str, ContactSnapshot] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(wanted):
                out.update(self._snapshots(conn, campaign.slug, chunk))
        return out

    def _snapshots(
        self, conn: sa.Connection, slug: str, keys: list[str]
    ) -> dict[str, ContactSnapshot]:
        seqs = {
            r["contact_key"]: dict(r)
            for r in conn.execute(
                sa.select(sequences).where(
                    sequences.c.campaign == slug, sequences.c.contact_key.in_(keys)
                )
            ).mappings()
        }
        people = {
            r["contact_key"]: dict(r)
            for r in conn.execute(
                sa.select(contacts).where(
                    contacts.c.campaign == slug, contacts.c.contact_key.in_(keys)
                )
            ).mappings()
        }
        sent: dict[str, list[Any]] = {}
        for row in conn.execute(
            sa.select(
                messages.c.contact_key,
                messages.c.kind,
                messages.c.step_number,
                messages.c.booking_uid,
                sa.func.min(messages.c.sent_at),
            )
            .where(messages.c.campaign == slug, messages.c.contact_key.in_(keys))
            .group_by(
                messages.c.contact_key,
                messages.c.kind,
                messages.c.step_number,
                messages.c.booking_uid,
            )
        ):
            sent.setdefault(row[0], []).append(row)
        failures: dict[str, str] = {}
        for key, step_id, reason in conn.execute(
            sa.select(outcomes.c.contact_key, outcomes.c.step_id, outcomes.c.reason)
            .where(
                outcomes.c.campaign == slug,
                outcomes.c.status == "failed",
                outcomes.c.contact_key.in_(keys),
            )
            .order_by(outcomes.c.at)
        ):
            failures[key] = f"{step_id}: {reason}"  # the latest wins (ordered by time)

        result: dict[str, ContactSnapshot] = {}
        for key in keys:
            seq, person = seqs.get(key), people.get(key)
            if seq is None and person is None:
                continue
            person = person or {}
            booked = person.get("booking_status") == BOOKED
            uid = str(person.get("booking_uid") or "") if booked else ""
            nurture: dict[int, Any] = {}
            reminders: dict[int, Any] = {}
            for _, kind, number, booking_uid, first in sent.get(key, []):
                if kind == "nurture":
                    nurture[int(number)] = utc(first)
                elif uid and booking_uid == uid:
                    reminders[int(number)] = utc(first)
            flags = [seq or {}, person]
            call_date = person.get("call_date")
            result[key] = ContactSnapshot(
                contact_key=key,
                email=str((seq or {}).get("email") or person.get("email") or key),
                sequence=seq,
                nurture_sent=nurture,
                reminders_sent=reminders,
                booking_uid=uid,
                meeting_time=utc(call_date) if booked and call_date is not None else None,
                booking_status=str(person.get("booking_status") or ""),
                campaign_status=str(person.get("campaign_status") or ""),
                unsubscribed=any(bool(f.get("unsubscribed")) for f in flags),
                paused=any(bool(f.get("paused")) for f in flags),
                delivery_state=stronger_state(
                    str((seq or {}).get("delivery_state") or ""),
                    str(person.get("delivery_state") or ""),
                ),
                last_error=failures.get(key, ""),
            )
        return result
