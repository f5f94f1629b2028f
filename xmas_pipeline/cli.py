"""`xmas-pipeline`: serve the intake, run everything for development, preview templates,
manage campaign folders, set up Notion."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg

from xmas_pipeline.adapters.notion.http import NotionCallError
from xmas_pipeline.adapters.sql.migrate import migrate_store
from xmas_pipeline.adapters.sql.secrets import rotate_unsubscribe_key
from xmas_pipeline.cli_notion import notion_import, notion_setup
from xmas_pipeline.core.campaign_folders import (
    FolderResult,
    check_slug,
    discover_campaigns,
    load_campaign_folder,
)
from xmas_pipeline.core.forget import checked_address
from xmas_pipeline.dagster_defs.forget import forget_everywhere
from xmas_pipeline.dagster_defs.resources import build_store, notion_resource
from xmas_pipeline.intake.server import serve, worker_count
from xmas_pipeline.services.campaign_tools import CampaignExists, check_campaign, new_campaign
from xmas_pipeline.services.previews import render_preview
from xmas_pipeline.settings import Settings, SettingsError

REPO_ROOT = Path(__file__).resolve().parent.parent

# The local instance `xmas-pipeline dev` runs: SQLite under the home folder, with the same
# guarantees as production's deploy/dagster.yaml (one send at a time through the pool and
# the tag, dead runs failed and their slots freed, ingestion retried).
DEV_INSTANCE = """\
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
concurrency:
  runs:
    tag_concurrency_limits:
      - key: xmas/send
        limit: 1
  pools:
    granularity: op
    default_limit: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 15
  free_slots_after_run_end_seconds: 15
run_retries:
  enabled: true
  max_retries: 0
  retry_on_asset_or_op_failure: true
telemetry:
  enabled: false
"""


def _serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    port = args.port or settings.intake_port
    if args.workers > 1:
        # Worker processes re-import the module that started them: hand over to the
        # intake's own entry point, so each worker loads the intake and not Dagster.
        command = [sys.executable, "-m", "xmas_pipeline.intake.server", "--host", args.host]
        command += ["--port", str(port), "--workers", str(args.workers)]
        os.execv(sys.executable, command)
    serve(args.host, port, settings)
    return 0


def dagster_home(settings: Settings) -> Path:
    """`$DAGSTER_HOME`, else `$XMAS_HOME/dagster`, with the instance config this project needs."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.home / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    # Written at every start (the file is this tool's): an older one is brought up to date.
    (home / "dagster.yaml").write_text(DEV_INSTANCE, encoding="utf-8")
    return home


def fail_orphaned_runs(home: Path) -> list[str]:
    """Mark runs left in progress by a previous stop as failed, before Dagster starts.

    Nothing else uses this instance while `xmas-pipeline dev` is down, so a run still
    STARTED or STARTING lost its worker (a hard stop mid-run). Dagster's default run
    launcher cannot notice that itself, and such a run would hold back every later send
    run (the schedule waits for it; the run queue allows one). Nothing is lost by it:
    what it had not recorded is still due, and the send journal replays what it had
    handed to the provider.
    """
    statuses = [
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.CANCELING,
    ]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(statuses=statuses))
        for run in runs:
            instance.report_run_failed(
                run, "The process running it stopped (xmas-pipeline dev was restarted)."
            )
        return [run.run_id for run in runs]


def _dev(args: argparse.Namespace) -> int:
    """The intake server and `dagster dev` side by side; Ctrl-C (or SIGTERM) stops both."""
    settings = Settings.from_env()
    home = dagster_home(settings)
    for run_id in fail_orphaned_runs(home):
        print(f"run {run_id} was cut off by the last stop: marked failed", flush=True)
    env = dict(os.environ, DAGSTER_HOME=str(home), XMAS_HOME=str(settings.home))
    bin_dir = Path(sys.executable).parent
    port = str(args.port or settings.intake_port)
    commands = [
        [sys.executable, "-m", "xmas_pipeline.cli", "serve", "--host", args.host, "--port", port],
        [
            str(bin_dir / "dagster"),
            "dev",
            "-w",
            str(REPO_ROOT / "workspace.yaml"),
            "--port",
            str(args.ui_port),
            "--host",
            args.host,
        ],
    ]
    # Each child leads its own process group, so stopping it stops its children too
    # (`dagster dev` starts a webserver and a daemon that may outlive a plain SIGTERM).
    children = [
        subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, start_new_session=True) for cmd in commands
    ]
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(
        f"intake on http://{args.host}:{port}  ·  Dagster UI on http://{args.host}:{args.ui_port}"
        f"  ·  data in {settings.home}  ·  Ctrl-C stops both",
        flush=True,
    )
    code = 0
    while not stopping:
        for child in children:
            if child.poll() is not None:
                stopping, code = True, child.returncode or 1
        time.sleep(0.5)
    stop_process_groups(children)
    return code


def stop_process_groups(children: list[subprocess.Popen], grace: float = 15.0) -> None:
    for child in children:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        _signal_group(child, signal.SIGKILL)  # whatever is left of the group
        child.wait()


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, sig)


def _preview(args: argparse.Namespace) -> int:
    try:
        campaign = Settings.from_env().campaign()
        print(render_preview(args.template, args.segment, campaign=campaign, fmt=args.format))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _campaign_list(args: argparse.Namespace) -> int:
    """Every campaign folder: slug, name, dates, and ok or why it is broken."""
    settings = Settings.from_env()
    results = discover_campaigns(settings.campaigns_dir)
    if not results:
        print(f"no campaign folders in {settings.campaigns_dir}")
        return 0
    for result in results:
        default = " (default)" if result.slug == settings.default_campaign else ""
        if result.campaign is None:
            assert result.error is not None
            print(f"{result.slug}{default}\tbroken: {result.error}")
            continue
        c = result.campaign
        closes = f"\tsignups close {c.signups_close}" if c.signups_close else ""
        print(f"{c.slug}{default}\t{c.name}\tstarts {c.start_date}{closes}\tok")
    return 0


def _start_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _campaign_new(args: argparse.Namespace) -> int:
    """A new campaign folder from another one: its cadence and templates, fresh dates."""
    settings = Settings.from_env()
    try:
        folder = new_campaign(
            settings.campaigns_dir, args.source, args.slug, name=args.name, start=args.start
        )
    except (CampaignExists, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    campaign = load_campaign_folder(folder)
    print(f"made campaign {campaign.slug} ({campaign.name}) in {folder}")
    print(f"starts {campaign.start_date}; check it with: xmas-pipeline campaign check {args.slug}")
    return 0


def _campaign_check(args: argparse.Namespace) -> int:
    """One campaign (or all): cadence, dates and every template for every segment."""
    settings = Settings.from_env()
    results = discover_campaigns(settings.campaigns_dir)
    if args.slug is not None:
        try:
            check_slug(args.slug)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        results = [r for r in results if r.slug == args.slug]
        if not results:
            print(f"error: no campaign {args.slug!r} in {settings.campaigns_dir}", file=sys.stderr)
            return 2
    if not results:
        print(f"error: no campaign folders in {settings.campaigns_dir}", file=sys.stderr)
        return 1
    failed = 0
    now = datetime.now(UTC)
    for result in results:
        failed += _report_check(result, check_campaign(result, settings.link_hosts, now))
    print(f"{len(results) - failed} of {len(results)} campaigns pass")
    return 1 if failed else 0


def _report_check(result: FolderResult, problems: list[str]) -> int:
    if not problems:
        print(f"{result.slug}: ok")
        return 0
    print(f"{result.slug}: {len(problems)} problem{'s' if len(problems) > 1 else ''}")
    for problem in problems:
        print(f"  {problem}")
    return 1


def _forget(args: argparse.Namespace) -> int:
    """Erase one person from everything the pipeline holds; keep only a salted hash."""
    try:
        checked_address(args.email)
    except ValueError as exc:  # a malformed address: nothing is touched
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    resource = notion_resource(settings)
    notion = resource.client() if resource is not None else None
    try:
        print(forget_everywhere(settings, args.email, notion).summary())
    except NotionCallError as exc:  # Notion unavailable: run it again (it is repeatable)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if notion is not None:
            notion.close()
    return 0


def _rotate_unsubscribe_key(args: argparse.Namespace) -> int:
    """A new current signing key; links already sent keep working (old keys are kept)."""
    settings = Settings.from_env()
    key_id = rotate_unsubscribe_key(settings.reveal("unsubscribe_secret"), settings.database_url)
    print(f"unsubscribe links are now signed with key {key_id}; older links still work")
    return 0


def _store_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the store's tables and grants (as the store's owner)."""
    settings = Settings.from_env()
    for line in migrate_store(settings.database_url):
        print(f"granted {line}")
    print("the store is up to date")
    return 0


def _profile_changes(args: argparse.Namespace) -> int:
    """List the held changes of name or business, or apply one (the retake rule)."""
    settings = Settings.from_env()
    campaign = settings.campaign()
    store = build_store(settings)
    if args.apply:
        key = store.apply_held_change(campaign, args.apply)
        if key is None:
            print(f"no held or pending change {args.apply!r}", file=sys.stderr)
            return 2
        print(f"applied change {args.apply} to {key}")
        return 0
    changes = store.profile_changes(campaign)
    waiting = changes.loc[changes["status"] != "applied"] if not changes.empty else changes
    if waiting.empty:
        print("no held changes")
    for row in waiting.to_dict("records"):
        print(f"{row['change_id']}  {row['status']}  {row['contact_key']}  {row['changes']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmas-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP intake (webhooks, unsubscribe)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="default: XMAS_INTAKE_PORT or 8000")
    serve.add_argument(
        "--workers", type=worker_count, default=1, help="worker processes (default 1)"
    )
    serve.set_defaults(func=_serve)

    dev = sub.add_parser("dev", help="run the intake and the Dagster UI together")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=0, help="intake port (default 8000)")
    dev.add_argument("--ui-port", type=int, default=3000)
    dev.set_defaults(func=_dev)

    preview = sub.add_parser("preview", help="render a template for a segment's sample contact")
    preview.add_argument("--template", default="email-1")
    preview.add_argument("--segment", default="CRITICAL")
    preview.add_argument("--format", choices=["html", "text", "subject"], default="html")
    preview.set_defaults(func=_preview)

    campaign = sub.add_parser("campaign", help="campaign folders (XMAS_CAMPAIGNS_DIR)")
    campaign_sub = campaign.add_subparsers(dest="campaign_command", required=True)
    listing = campaign_sub.add_parser("list", help="every campaign folder, ok or broken")
    listing.set_defaults(func=_campaign_list)
    new = campaign_sub.add_parser(
        "new", help="a new campaign folder with another's cadence and templates, fresh dates"
    )
    new.add_argument("slug", help="the new campaign's slug (its folder's name)")
    new.add_argument("--from", dest="source", required=True, help="the campaign to copy")
    new.add_argument("--name", help="its name (default: from the slug)")
    new.add_argument(
        "--start",
        type=_start_date,
        help="its start date, YYYY-MM-DD (default: a year after the source's); "
        "every other date moves with it",
    )
    new.set_defaults(func=_campaign_new)
    check = campaign_sub.add_parser(
        "check", help="check a campaign's file, dates and templates (all when no slug)"
    )
    check.add_argument("slug", nargs="?")
    check.set_defaults(func=_campaign_check)

    notion = sub.add_parser("notion", help="Notion tools")
    notion_sub = notion.add_subparsers(dest="notion_command", required=True)
    setup = notion_sub.add_parser(
        "setup",
        help="add the properties the pipeline needs (every campaign's, unless --campaign)",
    )
    importer = notion_sub.add_parser(
        "import",
        help="take the existing Email Sequence pages and CRM contacts into the store "
        "(every campaign's, each page by its Campaign select, unless --campaign)",
    )
    for command in (setup, importer):
        command.add_argument(
            "--campaign",
            metavar="SLUG",
            help="only this campaign (default: every campaign folder in XMAS_CAMPAIGNS_DIR, "
            "or the one XMAS_CAMPAIGN_FILE names)",
        )
    setup.set_defaults(func=notion_setup)
    importer.set_defaults(func=notion_import)

    forget = sub.add_parser(
        "forget", help="erase a person everywhere the pipeline holds them; never email again"
    )
    forget.add_argument("email")
    forget.set_defaults(func=_forget)

    rotate = sub.add_parser(
        "rotate-unsubscribe-key",
        help="sign unsubscribe links with a new key; links already sent keep working",
    )
    rotate.set_defaults(func=_rotate_unsubscribe_key)

    store = sub.add_parser("store", help="the pipeline's SQL store")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    migrate = store_sub.add_parser(
        "migrate",
        help="create or upgrade the tables and give each database role its tables "
        "(run as the store's owner before the code server and the intake)",
    )
    migrate.set_defaults(func=_store_migrate)

    changes = sub.add_parser(
        "profile-changes",
        help="list the held changes of name or business a later signup brought, or apply one",
    )
    changes.add_argument("--apply", metavar="CHANGE_ID", default="")
    changes.set_defaults(func=_profile_changes)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:  # every bad variable, by name, at once
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
