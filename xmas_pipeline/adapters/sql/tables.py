"""The SQL store's tables, all on one `metadata` (created together by `SqlDatabase.prepare`).

Sequences and sends:
- `sequences`: one row per (campaign, contact): the signup, the segment, exit flags, and
  when the next nurture email can fall due at the earliest (`next_due_at`, indexed; the
  confirmations owed have their own index);
- `messages`: one row per accepted send (unique idempotency key); sent-status is derived
  from it, so a row exists only once the provider accepted the message;
- `outcomes`: the latest failure or skip per (message, status), with its reason.

Bookings, contacts and email events:
- `booking_events`: every Cal.com change ever ingested, unique on its dedupe key (a
  re-delivered webhook or a re-polled API version is a no-op);
- `bookings`: one row per booking uid, the fold of its events (`core.booking_state`);
- `contacts`: per contact, what the CRM shows (Booking Status, Diagnostic Call Date,
  Christmas Campaign Status, the booking uid) and exit flags for contacts who have no
  sequence (a booker who never signed up can still unsubscribe or bounce);
- `message_events`: Resend events and unsubscribes, unique per event;
- `message_status`: per sent message (Resend's email id), its delivery status — the
  highest-ranked event so far, so a late "delivered" never hides an "opened".

Shared by every run and host:
- `send_journal`: each batch handed to the sender and not yet settled (`core.ports.SendJournal`);
- `send_claims`: the idempotency keys those open batches hold, one owner each;
- `send_switch`: per campaign, whether sending is paused, since when, by whom and why
  (every send path reads it just before each batch);
- `template_snapshots`: the templates a send run's blocking check rendered, by run, so
  the run sends exactly those;
- `alert_outbox`: every alert for the ops chat, written when its event happens and kept
  until the chat accepted it (`core.ports.AlertOutbox`): attempts, next try, last error;
- `alerts_sent`: keys noted as dealt with: an older release's ledger of alerts it sent (so
  none goes again) and the stuck messages already announced;
- `secrets`: values the deployment generated once and every process shares (the
  unsubscribe signing key when none is configured);
- `consent_records`: double opt-in's evidence, one row per thing asked to be confirmed (a
  signup, a change of name or business): when it was asked for and from which address and
  browser, and when, from where and by which browser it was confirmed;
- `profile_changes`: a name or business name a later signup brought for a running
  sequence, held (`core.retake`): pending a confirmation, held for the team, or applied;
- `forgotten`: the salted hashes of addresses `xmas-pipeline forget` erased, never the
  addresses (`adapters.sql.forget`): they are suppressed at ingestion and by the gate.

Shared by every intake worker and host:
- `rate_counters`: hits on the public signup per (limit, hashed client or address, fixed
  window), for the sliding-window limits (`adapters.sql.rate_counters`); rows expire after
  two windows. The intake creates this table alone when it is missing.

Not here: `webhook_ids` (the webhook deliveries the intake stored, by id) is in
`webhook_ids.py`, on a `MetaData` of its own, so the intake creates that table alone.

The Notion sync (the SQL store is the state; Notion is kept in step with it):
- `notion_queue`: contacts whose Notion pages are behind the store, one row per contact
  however many changes (a change bumps `version`); written in the same transaction as the
  change, so none is lost;
- `notion_pages`: each contact's Email Sequence page and the values last written to (or
  read from) it, so a sync writes only what differs;
- `notion_contacts`: the CRM's contact pages by address (an empty page id: not in the CRM)
  and their values as last seen;
- `notion_templates`: email templates kept in the Templates DB, as last read, with the
  campaign each is for ("" for a page without one: the default campaign's);
- `notion_logged`: messages already written to the optional Email Analytics DB;
- `notion_state`: cursors and the databases' schema, looked up once and kept.
"""

import sqlalchemy as sa

metadata = sa.MetaData()

sequences = sa.Table(
    "sequences",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    # Indexed alone too: the flags and signups of one person are read across campaigns.
    sa.Column("contact_key", sa.String(320), primary_key=True, index=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("first_name", sa.String(200), nullable=False, default=""),
    # Unbounded: the signup caps a business name only by the intake's body limit.
    sa.Column("business_name", sa.Text, nullable=False, default=""),
    sa.Column("assessment_score", sa.Integer, nullable=False, default=0),
    sa.Column("red_systems", sa.Integer, nullable=False, default=0),
    sa.Column("orange_systems", sa.Integer, nullable=False, default=0),
    sa.Column("yellow_systems", sa.Integer, nullable=False, default=0),
    sa.Column("green_systems", sa.Integer, nullable=False, default=0),
    sa.Column("gps_score", sa.Integer, nullable=False, default=0),
    sa.Column("money_score", sa.Integer, nullable=False, default=0),
    sa.Column("weakest_system_1", sa.String(200), nullable=False, default=""),
    sa.Column("weakest_system_2", sa.String(200), nullable=False, default=""),
    sa.Column("revenue_leak_total", sa.BigInteger, nullable=False, default=0),
    sa.Column("segment", sa.String(20), nullable=False),
    sa.Column("time_zone", sa.String(64), nullable=False, default="", server_default=""),
    sa.Column("signup_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("signup_day", sa.String(10), nullable=False, index=True),
    sa.Column("source", sa.String(500), nullable=False, default=""),
    sa.Column("completed", sa.Boolean, nullable=False, default=False),
    sa.Column("exit_reason", sa.String(100), nullable=False, default=""),
    sa.Column("booked", sa.Boolean, nullable=False, default=False),
    sa.Column("unsubscribed", sa.Boolean, nullable=False, default=False),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("delivery_state", sa.String(20), nullable=False, default=""),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Double opt-in (`core.optin`): nothing of the nurture goes while awaiting; the open
    # confirmation (a signup's or a held change's), when it was asked for and emailed.
    sa.Column(
        "awaiting_confirmation", sa.Boolean, nullable=False, default=False, server_default="0"
    ),
    sa.Column("confirm_subject", sa.String(300), nullable=False, default="", server_default=""),
    sa.Column("confirm_requested_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("confirm_sent_at", sa.DateTime(timezone=True), nullable=True),
    # When the next nurture email can fall due at the earliest (`core.due.earliest_next_due`),
    # so a send reads only the sequences with something due. NULL: not known (a row an
    # older release or `notion import` wrote): always read, never skipped.
    sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_sequences_next_due", "campaign", "completed", "next_due_at"),
    # The sequences owing a confirmation email (a subject set), read apart from the rest.
    sa.Index("ix_sequences_confirm", "campaign", "completed", "confirm_subject"),
)

consent_records = sa.Table(
    "consent_records",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("contact_key", sa.String(320), primary_key=True),
    sa.Column("subject", sa.String(300), primary_key=True),  # signup:<event id>, change:<id>
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request_ip", sa.String(64), nullable=False, default=""),
    sa.Column("request_user_agent", sa.String(500), nullable=False, default=""),
    # What the request claimed in X-Forwarded-For (a claim, kept beside the peer address).
    sa.Column("request_forwarded_for", sa.String(200), nullable=False, default=""),
    sa.Column("request_source", sa.String(500), nullable=False, default=""),
    sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("confirm_ip", sa.String(64), nullable=False, default=""),
    sa.Column("confirm_user_agent", sa.String(500), nullable=False, default=""),
    sa.Column("confirm_forwarded_for", sa.String(200), nullable=False, default=""),
    sa.Column("confirm_source", sa.String(500), nullable=False, default=""),
)

profile_changes = sa.Table(
    "profile_changes",
    metadata,
    sa.Column("change_id", sa.String(200), primary_key=True),
    sa.Column("campaign", sa.String(100), nullable=False, index=True),
    sa.Column("contact_key", sa.String(320), nullable=False, index=True),
    sa.Column("changes", sa.Text, nullable=False),  # JSON: {field: new value}
    sa.Column("status", sa.String(20), nullable=False),  # pending, held, applied
    sa.Column("source", sa.String(500), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("idempotency_key", sa.String(600), primary_key=True),
    sa.Column("campaign", sa.String(100), nullable=False),
    sa.Column("message_id", sa.String(600), nullable=False, index=True),
    sa.Column("contact_key", sa.String(320), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("step_id", sa.String(40), nullable=False),
    sa.Column("step_number", sa.Integer, nullable=False),
    sa.Column("segment", sa.String(20), nullable=False, default=""),
    sa.Column("booking_uid", sa.String(200), nullable=False, default=""),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_day", sa.String(10), nullable=False, index=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("provider_id", sa.String(200), nullable=False, default=""),
    sa.Column("forced", sa.Boolean, nullable=False, default=False),
)

outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("message_id", sa.String(600), primary_key=True),
    sa.Column("status", sa.String(20), primary_key=True),
    sa.Column("campaign", sa.String(100), nullable=False),
    sa.Column("contact_key", sa.String(320), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("step_id", sa.String(40), nullable=False),
    sa.Column("step_number", sa.Integer, nullable=False),
    sa.Column("segment", sa.String(20), nullable=False, default=""),
    sa.Column("booking_uid", sa.String(200), nullable=False, default=""),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=1),
)

booking_events = sa.Table(
    "booking_events",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("event_key", sa.String(400), primary_key=True),
    sa.Column("booking_uid", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("event_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("ref", sa.String(500), nullable=False, default=""),
    sa.Column("body", sa.Text, nullable=False),  # the BookingEvent as JSON
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
)

bookings = sa.Table(
    "bookings",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("booking_uid", sa.String(200), primary_key=True, index=True),
    sa.Column("contact_key", sa.String(320), nullable=False, index=True),
    sa.Column("email", sa.String(320), nullable=False, default=""),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("time_zone", sa.String(100), nullable=False, default="UTC"),
    sa.Column("start", sa.DateTime(timezone=True), nullable=True),
    sa.Column("end", sa.DateTime(timezone=True), nullable=True),
    sa.Column("meeting_url", sa.String(2048), nullable=False, default=""),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("previous_uid", sa.String(200), nullable=False, default=""),
    sa.Column("rescheduled_to", sa.String(200), nullable=False, default=""),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("contact_key", sa.String(320), primary_key=True, index=True),
    sa.Column("email", sa.String(320), nullable=False, default=""),
    sa.Column("booking_status", sa.String(20), nullable=False, default=""),
    sa.Column("call_date", sa.DateTime(timezone=True), nullable=True),
    sa.Column("campaign_status", sa.String(40), nullable=False, default=""),
    sa.Column("booking_uid", sa.String(200), nullable=False, default=""),
    sa.Column("unsubscribed", sa.Boolean, nullable=False, default=False),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("delivery_state", sa.String(20), nullable=False, default=""),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

message_events = sa.Table(
    "message_events",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("event_key", sa.String(700), primary_key=True),
    sa.Column("provider_id", sa.String(200), nullable=False, default="", index=True),
    sa.Column("message_id", sa.String(600), nullable=False, default=""),
    sa.Column("contact_key", sa.String(320), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("ref", sa.String(500), nullable=False, default=""),
)

message_status = sa.Table(
    "message_status",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("provider_id", sa.String(200), primary_key=True),
    sa.Column("message_id", sa.String(600), nullable=False, default=""),
    sa.Column("contact_key", sa.String(320), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
)


send_journal = sa.Table(
    "send_journal",
    metadata,
    sa.Column("entry_id", sa.String(64), primary_key=True),
    sa.Column("campaign", sa.String(100), nullable=False, index=True),
    sa.Column("holder", sa.String(100), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the batch: rows and emails, as JSON
)

send_claims = sa.Table(
    "send_claims",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("idempotency_key", sa.String(600), primary_key=True),
    sa.Column("entry_id", sa.String(64), nullable=False, index=True),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
)

alerts_sent = sa.Table(
    "alerts_sent",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("alert_key", sa.String(700), primary_key=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
)

send_switch = sa.Table(
    "send_switch",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("changed_by", sa.String(200), nullable=False, default=""),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)

template_snapshots = sa.Table(
    "template_snapshots",
    metadata,
    sa.Column("run_id", sa.String(100), primary_key=True),
    sa.Column("campaign", sa.String(100), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("problems", sa.Text, nullable=False, default="[]"),  # JSON list of text
    sa.Column("body", sa.Text, nullable=False),  # the templates, JSON
)

alert_outbox = sa.Table(
    "alert_outbox",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("alert_key", sa.String(700), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # lines and facts, as JSON
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # When it may be taken next (a lease while a deliverer posts it); NULL once delivered.
    sa.Column("next_try_at", sa.DateTime(timezone=True), nullable=True, index=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
)

secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

forgotten = sa.Table(
    "forgotten",
    metadata,
    sa.Column("address_hash", sa.String(64), primary_key=True),
    sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False),
)

notion_queue = sa.Table(
    "notion_queue",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("contact_key", sa.String(320), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False, default=1),
    sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("holder", sa.String(100), nullable=False, default=""),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_try_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
)

notion_pages = sa.Table(
    "notion_pages",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("contact_key", sa.String(320), primary_key=True),
    sa.Column("page_id", sa.String(64), nullable=False, default=""),
    sa.Column("written", sa.Text, nullable=False, default="{}"),  # property -> value, JSON
    # Set before a page is created: a create that may have happened is looked up first.
    sa.Column("create_started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
)

notion_contacts = sa.Table(
    "notion_contacts",
    metadata,
    sa.Column("contact_key", sa.String(320), primary_key=True),
    sa.Column("page_id", sa.String(64), nullable=False, default=""),  # "": not in the CRM
    sa.Column("values", sa.Text, nullable=False, default="{}"),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
)

notion_templates = sa.Table(
    "notion_templates",
    metadata,
    # The row's key: the template's name for a page without a Campaign select (as every
    # row was before campaigns, so an older store reads on unchanged), else
    # "<Campaign select>,<name>" (a select option never holds a comma). `campaign` was
    # added later (`SqlDatabase.prepare` adds it to an older store, empty).
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("page_id", sa.String(64), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("edited_at", sa.DateTime(timezone=True), nullable=False),
    # The Campaign select of the template's page ("" when none: the default campaign's).
    sa.Column("campaign", sa.String(100), nullable=False, default="", server_default=""),
)

notion_logged = sa.Table(
    "notion_logged",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("message_key", sa.String(700), primary_key=True),  # idempotency key or failure
    sa.Column("page_id", sa.String(64), nullable=False, default=""),
    sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
)

notion_state = sa.Table(
    "notion_state",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

rate_counters = sa.Table(
    "rate_counters",
    metadata,
    sa.Column("bucket", sa.String(60), primary_key=True),  # which limit: "signup-ip/3600"
    sa.Column("key_hash", sa.String(64), primary_key=True),  # sha256 of the address
    sa.Column("window_start", sa.BigInteger, primary_key=True),  # epoch seconds
    sa.Column("hits", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),  # epoch seconds
)
