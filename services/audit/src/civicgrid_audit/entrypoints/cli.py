"""``civicgrid-audit``: serve, verify, replay, evaluate, checkpoint, simulate."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from civicgrid_audit.adapters.replay import default_workers
from civicgrid_audit.settings import AuditSettings
from civicgrid_runtime.settings import load_settings

console = Console(stderr=False)


def _settings(args) -> AuditSettings:
    over = {}
    if getattr(args, "database", None):
        over["database"] = args.database
    if getattr(args, "host", None):
        over["http_host"] = args.host
    if getattr(args, "port", None):
        over["http_port"] = args.port
    return load_settings(AuditSettings, **over)


def cmd_serve(args) -> int:
    from civicgrid_audit.entrypoints.app import build_app
    from civicgrid_runtime import serve

    s = _settings(args)
    serve(build_app(s), s)
    return 0


async def _open_log(s: AuditSettings):
    from civicgrid_audit.adapters.auditlog import AuditLog, Signer
    from civicgrid_runtime.store import connect

    client = connect(s.mongodb_url, app_name="civicgrid-audit-cli")
    return client, AuditLog(client[s.database_name], Signer(s.signing_key.get_secret_value()))


def cmd_verify(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    async def run() -> int:
        s = _settings(args)
        client, log = await _open_log(s)
        try:
            # one pass over the records for every log (sorted by log and sequence), with a progress bar
            with Progress(TextColumn("[bold]verify[/bold]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=Console(stderr=True), disable=args.json) as progress:
                task = progress.add_task("verify", total=await log.count_documents(args.log))
                results = await log.verify_all(args.log, on_document=lambda: progress.advance(task))
            if args.json:
                print(json.dumps(results, indent=2, default=str))
            else:
                table = Table(title=f"audit log verification ({s.database_name})")
                for c in ("log", "records", "checkpoints", "result"):
                    table.add_column(c)
                for r in results:
                    p = r["problem"]
                    table.add_row(r["log"], str(r["size"]), str(r["checkpoints_checked"]),
                                  "[green]intact[/green]" if r["ok"] else
                                  f"[red]{p['kind'].upper()} at seq {p['seq']}[/red]: {p['detail']}")
                console.print(table)
            bad = sum(not r["ok"] for r in results)
            if not args.json:
                console.print("[green]all logs intact[/green]" if not bad else f"[red]{bad} log(s) tampered[/red]")
            return 1 if bad else 0
        finally:
            await client.close()

    return asyncio.run(run())


def cmd_checkpoint(args) -> int:
    async def run() -> int:
        s = _settings(args)
        client, log = await _open_log(s)
        try:
            cps = await log.checkpoint()
            for cp in cps:
                console.print(f"signed {cp['log']} size={cp['size']} root={cp['root'][:16]}... at {cp['timestamp']}")
            if not cps:
                console.print("no log grew since its last checkpoint")
            return 0
        finally:
            await client.close()

    return asyncio.run(run())


def cmd_replay(args) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from civicgrid_audit.adapters.replay import compare, replay_topics
    from civicgrid_audit.bootstrap import CONSUMED_TOPICS
    from civicgrid_runtime.bus import ensure_topics
    from civicgrid_runtime.calendar import FixedCalendar, read_calendar
    from civicgrid_runtime.service import tune_collector
    from civicgrid_runtime.store import connect

    tune_collector()  # a replay allocates per event like a service (its workers set it too)
    live_settings = load_settings(AuditSettings)
    target = args.database
    if target == live_settings.database_name:
        console.print("[red]refusing to replay into the live database; name a fresh one[/red]")
        return 2
    from_time = datetime.fromisoformat(args.from_time) if args.from_time else None
    if from_time is not None and from_time.tzinfo is None:
        from_time = from_time.replace(tzinfo=UTC)

    async def run() -> int:
        await ensure_topics(live_settings.kafka_bootstrap_servers)
        calendar = FixedCalendar(await read_calendar(live_settings.kafka_bootstrap_servers))
        client = connect(live_settings.mongodb_url, app_name="civicgrid-audit-replay")
        try:
            await client.drop_database(target)
            with Progress(TextColumn("[bold]replay[/bold]"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[rate]} ev/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                          console=console) as progress:
                task = progress.add_task("replay", total=None, rate="-")
                started = datetime.now(UTC)

                def on_progress(done: int, total: int) -> None:
                    secs = (datetime.now(UTC) - started).total_seconds() or 1e-9
                    progress.update(task, completed=done, total=total, rate=f"{done / secs:,.0f}")

                res = await replay_topics(bootstrap=live_settings.kafka_bootstrap_servers, db=client[target],
                                          topic_names=list(CONSUMED_TOPICS), calendar=calendar,
                                          signing_key=live_settings.signing_key.get_secret_value(),
                                          from_time=from_time, batch=args.batch, on_progress=on_progress,
                                          workers=args.workers, mongodb_url=live_settings.mongodb_url,
                                          repeat_hours=live_settings.repeat_hours)
            console.print(f"replayed {res['events']:,} events into {target!r} in {res['seconds']} s "
                          f"with {res['workers']} process{'es' if res['workers'] > 1 else ''} "
                          f"({res['events_per_second']:,} events/s){', from ' + res['from'] if res['from'] else ''}")
            if args.no_compare or from_time is not None:
                if from_time is not None:
                    console.print("partial replay (--from): comparison with the live state skipped")
                return 0
            report = await compare(client[args.compare_with or live_settings.database_name], client[target])
            table = Table(title=f"rebuilt {target!r} vs live {args.compare_with or live_settings.database_name!r}")
            for c in ("projection", "live", "rebuilt", "different", "only live", "only rebuilt", "result"):
                table.add_column(c)
            for name, st in report["collections"].items():
                table.add_row(name, str(st["live"]), str(st["rebuilt"]), str(st["different"]), str(st["only_live"]),
                              str(st["only_rebuilt"]), "[green]identical[/green]" if st["identical"] else
                              f"[red]differs[/red] {st['examples'][:2]}")
            console.print(table)
            console.print("[green]IDENTICAL[/green]" if report["identical"] else "[red]DIFFERENT[/red]")
            return 0 if report["identical"] else 1
        finally:
            await client.close()

    return asyncio.run(run())


def cmd_evaluate(args) -> int:
    from civicgrid_audit.adapters.export import write_evaluation
    from civicgrid_audit.adapters.queries import Queries
    from civicgrid_runtime.calendar import FixedCalendar, read_calendar
    from civicgrid_runtime.store import connect

    async def run() -> int:
        s = _settings(args)
        client = connect(s.mongodb_url, app_name="civicgrid-audit-evaluate")
        try:
            calendar = FixedCalendar(await read_calendar(s.kafka_bootstrap_servers))
            ev = await Queries(client[s.database_name], calendar).evaluation(args.quarter.upper())
        finally:
            await client.close()
        files = write_evaluation(ev, Path(args.out), charts=not args.no_charts)
        for dim, rows in ev["dimensions"].items():
            table = Table(title=f"{args.quarter.upper()} {dim} (top 5 of {len(rows)})")
            for c in ("rank", "key", "score", "received", "response", "resolution", "satisfaction"):
                table.add_column(c)
            for r in rows[:5]:
                table.add_row(str(r["rank"]), r["key"], f"{r['score']:.1f}", str(r["received"]),
                              str(r["response_rate"]), str(r["resolution_rate"]), str(r["satisfaction_rate"]))
            console.print(table)
        console.print(f"wrote {len(files)} files to {args.out}")
        return 0

    return asyncio.run(run())


def cmd_simulate(args) -> int:
    from civicgrid_audit.workload import workload
    from civicgrid_runtime.bus import EventPublisher, ensure_topics

    async def run() -> int:
        s = load_settings(AuditSettings)
        await ensure_topics(s.kafka_bootstrap_servers)
        pub = EventPublisher(s.kafka_bootstrap_servers, client_id="audit-simulate", linger_ms=20)
        await pub.start()
        n = 0
        try:
            buf = []
            for evs in workload(args.requests, seed=args.seed, prefix=args.prefix):
                buf += evs
                if len(buf) >= 2000:
                    await pub.publish_many(buf)
                    n += len(buf)
                    buf = []
            if buf:
                await pub.publish_many(buf)
                n += len(buf)
        finally:
            await pub.stop()
        console.print(f"published {n:,} events of {args.requests:,} synthetic requests")
        return 0

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="civicgrid-audit", description="civicgrid supervision audit")
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("serve", help="HTTP API + consumers + deadline scanner + checkpoints")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.add_argument("--database")
    sp.set_defaults(fn=cmd_serve)
    sp = sub.add_parser("verify", help="verify the audit logs; exit 1 naming the first tampered record")
    sp.add_argument("--log", help="one log (e.g. intake_requests_v1:3); default all")
    sp.add_argument("--database")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_verify)
    sp = sub.add_parser("checkpoint", help="sign a checkpoint (tree head) of every grown log")
    sp.add_argument("--database")
    sp.set_defaults(fn=cmd_checkpoint)
    sp = sub.add_parser("replay", help="rebuild every projection from Kafka into a fresh database and compare")
    sp.add_argument("--database", required=True, help="the fresh database to rebuild into (dropped first)")
    sp.add_argument("--from", dest="from_time", help="ISO time: start at the offsets for this moment")
    sp.add_argument("--compare-with", help="live database to compare with (default: the service's)")
    sp.add_argument("--no-compare", action="store_true")
    sp.add_argument("--batch", type=int, default=5000)
    sp.add_argument("--workers", type=int, default=default_workers(),
                    help="processes, each the writer of a share of the partition numbers (default: the CPUs, at most "
                         "the partition count)")
    sp.set_defaults(fn=cmd_replay)
    sp = sub.add_parser("evaluate", help="quarterly evaluation: CSV, JSON and charts")
    sp.add_argument("--quarter", required=True, help="e.g. 2026Q4")
    sp.add_argument("--out", required=True)
    sp.add_argument("--database")
    sp.add_argument("--no-charts", action="store_true")
    sp.set_defaults(fn=cmd_evaluate)
    sp = sub.add_parser("simulate", help="demo data: publish a synthetic workload of platform events")
    sp.add_argument("--requests", type=int, default=1000)
    sp.add_argument("--seed", type=int, default=7)
    sp.add_argument("--prefix", default="DEMO-")
    sp.set_defaults(fn=cmd_simulate)
    args = p.parse_args(argv)
    sys.exit(args.fn(args))
