"""Sequences in Notion: the frame the core plans from, and each send's write back (one
`pages.update` per email: the step's sent date, completion, clearing Last Error)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd

from xmas_pipeline.adapters.notion.props import iso_datetime, parse_datetime
from xmas_pipeline.adapters.notion.send_log import NotionSendLog
from xmas_pipeline.adapters.notion.workspace import (
    SEQUENCES,
    NotionStoreError,
    SequenceRow,
    cached_value,
    log,
)
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import OutcomeRecord, SentRecord
from xmas_pipeline.core.segments import classify
from xmas_pipeline.core.sequence_frame import normalise_sequences, sent_column, sequence_columns


class NotionSequences(NotionSendLog):
    def load_sequences(self, campaign: Campaign) -> pd.DataFrame:
        self.prepare(campaign)
        rows = self.load_rows(campaign)
        return self._frame(campaign, rows.values())

    def _frame(self, campaign: Campaign, rows: Iterable[SequenceRow]) -> pd.DataFrame:
        p = self.schema.sequences
        steps = len(campaign.steps)
        numbers = {
            "assessment_score": p.assessment_score,
            "red_systems": p.red_systems,
            "orange_systems": p.orange_systems,
            "yellow_systems": p.yellow_systems,
            "green_systems": p.green_systems,
            "gps_score": p.gps_score,
            "money_score": p.money_score,
            "revenue_leak_total": p.revenue_leak_total,
        }
        texts = {
            "first_name": p.first_name,
            "business_name": p.business_name,
            "weakest_system_1": p.weakest_system_1,
            "weakest_system_2": p.weakest_system_2,
        }
        records: list[dict[str, Any]] = []
        for row in rows:
            v = row.values
            record: dict[str, Any] = {
                "contact_key": row.contact_key,
                "email": str(v.get(p.email) or row.contact_key).strip(),
            }
            record.update({col: v.get(name) for col, name in numbers.items()})
            record.update({col: v.get(name) or "" for col, name in texts.items()})
            record["segment"] = (
                v.get(p.segment)
                or classify(int(v.get(p.red_systems) or 0), int(v.get(p.orange_systems) or 0)).value
            )
            # A hand-made row without a signup date starts when the page was created.
            record["signup_at"] = v.get(p.signup_date) or row.created_time or None
            for n in range(1, steps + 1):
                record[sent_column(n)] = v.get(p.sent(n))
            record["completed"] = bool(v.get(p.sequence_completed))
            record["exit_reason"] = v.get(p.exit_reason) or ""
            record["booked"] = bool(str(v.get(p.booking_uid) or "").strip())
            record["unsubscribed"] = bool(v.get(p.unsubscribed))
            record["paused"] = bool(v.get(p.paused))
            record["delivery_state"] = str(v.get(p.delivery_status) or "").strip().lower()
            records.append(record)
        frame = pd.DataFrame.from_records(records, columns=sequence_columns(steps))
        return normalise_sequences(frame, steps)

    def record_sent(self, campaign: Campaign, record: SentRecord) -> None:
        """One `pages.update`: the step's sent date (+ completion, + clearing Last Error)."""
        self.prepare(campaign)
        p = self.schema.sequences
        if record.kind == "reminder":
            column = p.reminder(record.step_number)
        elif 1 <= record.step_number <= len(campaign.steps):
            column = p.sent(record.step_number)
        else:
            raise ValueError(f"{campaign.name} has no email {record.step_number}")
        # The ledger keeps every send too: the send journal's claims check it, and it is
        # the reminder's only record when the booker has no sequence page.
        self.ledger.record_sent(campaign, record)
        if record.kind == "reminder" and self.row_for(campaign, record.contact_key) is None:
            return
        values: dict[str, Any] = {column: record.sent_at}
        if record.completes_sequence:
            values[p.sequence_completed] = True
        self.require(values)
        row = self.row_for(campaign, record.contact_key)
        if row is None:
            raise NotionStoreError(
                f"no Email Sequence page for {record.contact_key} in {campaign.name}"
            )
        if row.values.get(p.last_error):
            values[p.last_error] = ""  # it went out: the earlier failure is history
        cached = {n: cached_value(v) for n, v in values.items()}
        # A repeat of a write this run already made (a retried delivery) costs nothing.
        if any(row.values.get(n) != v for n, v in cached.items()):
            self.api.update_page(row.page_id, self.encode_values(SEQUENCES, values))
            with self._lock:
                row.values.update(cached)
        self.log_message(campaign, record)

    def record_outcome(self, campaign: Campaign, record: OutcomeRecord) -> None:
        """A failure goes to `Last Error` (written only when it changed); skips (a paused
        contact, every run) are not written, so they cost no requests."""
        self.prepare(campaign)
        if record.kind == "reminder":
            self.ledger.record_outcome(campaign, record)  # skips settle reminders: kept
        if record.status != "failed":
            return
        p = self.schema.sequences
        text = f"{record.step_id}: {record.reason}"
        row = self.row_for(campaign, record.contact_key)
        if row is not None and row.values.get(p.last_error) != text:
            self.api.update_page(row.page_id, self.encode_values(SEQUENCES, {p.last_error: text}))
            with self._lock:
                row.values[p.last_error] = text
        self.log_message(campaign, record)

    def record_exit(self, campaign: Campaign, contact_key: str, reason: str) -> None:
        """Stop the nurture for good: `Exit Reason` and `Sequence Completed`, one update."""
        self.prepare(campaign)
        p = self.schema.sequences
        row = self.row_for(campaign, contact_key)
        if row is None:
            log.info("no Email Sequence page to close for an exiting contact")
            return
        wanted = {p.exit_reason: reason, p.sequence_completed: True}
        changes = self.changes(row.values, wanted)
        if changes:
            self.api.update_page(row.page_id, self.encode_values(SEQUENCES, changes))
            with self._lock:
                row.values.update(changes)

    def set_flags(self, campaign: Campaign, contact_key: str, **flags: Any) -> bool:
        """Set `unsubscribed`, `paused` or `delivery_state` (one update). False: no page.

        `booked` is not a flag here: in Notion it is a non-empty `Booking UID` (`set_booking`).
        """
        p = self.schema.sequences
        names = {"unsubscribed": p.unsubscribed, "paused": p.paused}
        names["delivery_state"] = p.delivery_status
        unknown = set(flags) - set(names)
        if unknown:
            raise ValueError(f"unknown flags for the Notion store: {sorted(unknown)}")
        self.prepare(campaign)
        row = self.row_for(campaign, contact_key)
        if row is None:
            return False
        wanted = {names[k]: v for k, v in flags.items()}
        changes = self.changes(row.values, wanted)
        if changes:
            self.api.update_page(row.page_id, self.encode_values(SEQUENCES, changes))
            with self._lock:
                row.values.update(changes)
        return True

    def set_booking(
        self, campaign: Campaign, contact_key: str, booking_uid: str, meeting_time: datetime | None
    ) -> bool:
        """Record (or clear, with "" and None) the contact's booking on its sequence page."""
        self.prepare(campaign)
        p = self.schema.sequences
        row = self.row_for(campaign, contact_key)
        if row is None:
            return False
        changes: dict[str, Any] = {}
        if str(row.values.get(p.booking_uid) or "") != booking_uid:
            changes[p.booking_uid] = booking_uid
        current = parse_datetime(row.values.get(p.meeting_time))
        as_text = iso_datetime(meeting_time) if meeting_time else None
        if (iso_datetime(current) if current else None) != as_text:
            changes[p.meeting_time] = meeting_time
        if changes:
            self.api.update_page(row.page_id, self.encode_values(SEQUENCES, changes))
            with self._lock:
                row.values.update({n: cached_value(v) for n, v in changes.items()})
        return True
