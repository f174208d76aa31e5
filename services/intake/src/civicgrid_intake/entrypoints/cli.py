"""``civicgrid-intake``: serve, load-demo, mint-api-key, calendar."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from civicgrid_intake.settings import IntakeSettings
from civicgrid_runtime.settings import load_settings

DEV_API_KEY = "civicgrid-dev-open311-key"


def _serve(args: argparse.Namespace) -> None:
    from civicgrid_intake.entrypoints.http import build_app
    from civicgrid_runtime.service import serve

    overrides = {}
    if args.host:
        overrides["http_host"] = args.host
    if args.port:
        overrides["http_port"] = args.port
    settings = load_settings(IntakeSettings, **overrides)

    def _stopped(signum, frame):  # uvicorn re-raises the signal after its clean shutdown: exit 0
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stopped)
    try:
        serve(build_app(settings), settings)  # uvicorn: graceful shutdown on SIGINT/SIGTERM
    except KeyboardInterrupt:
        pass


async def _with_service(fn):
    from civicgrid_intake.bootstrap import bootstrap

    settings = load_settings(IntakeSettings)
    service = await bootstrap(settings, consume=False)
    try:
        await service.ensure_indexes()
        return await fn(service)
    finally:
        await service.runtime.stop()


def _load_demo(args: argparse.Namespace) -> None:
    async def run(service):
        n = await service.catalogue.load_defaults()
        await service.catalogue.complete_shipped_texts()
        await service.runtime.relay.sweep()
        # the published development key only in development mode; elsewhere a fresh random one
        wanted = args.api_key or (DEV_API_KEY if service.settings.development else None)
        key = await service.handlers.mint_api_key("load-demo", key=wanted)
        return n, len(service.catalogue.all()), key

    new, total, key = asyncio.run(_with_service(run))
    print(f"catalogue: {total} active services ({new} newly defined and published as ServiceDefined)")
    print(f"Open311 api_key: {key}")


def _mint(args: argparse.Namespace) -> None:
    async def run(service):
        return await service.handlers.mint_api_key(args.name)

    print(asyncio.run(_with_service(run)))


def _calendar_set(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from civicgrid_contracts.calendar import CalendarYear
    from civicgrid_intake.domain.errors import IntakeError
    from civicgrid_intake.entrypoints.schemas import CalendarYearWrite

    body = CalendarYearWrite.model_validate(json.loads(Path(args.file).read_text(encoding="utf-8")))

    async def run(service):
        defined = await service.calendar_years.set_year(CalendarYear(year=args.year, **body.model_dump()), by=args.by)
        await service.runtime.relay.sweep()
        return defined

    try:
        defined = asyncio.run(_with_service(run))
    except IntakeError as exc:
        print(exc.detail, file=sys.stderr)
        for e in exc.errors or ():
            print(f"  {e['field']}: {e['message']}", file=sys.stderr)
        sys.exit(2)
    print(f"calendar {args.year}: revision {defined.revision} published")


def _calendar_show(args: argparse.Namespace) -> None:
    async def run(service):
        await service.runtime.calendar.start()
        return service.runtime.calendar

    follower = asyncio.run(_with_service(run))
    held = follower.versions.get(args.year)
    print(f"revision {held.revision if held else 0} ({'set by ' + held.changed_by if held else 'shipped default'})")
    print(follower.calendar.year(args.year).model_dump_json(indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="civicgrid-intake", description="civicgrid intake service")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="HTTP API + consumers + background jobs (Ctrl-C / SIGTERM stops cleanly)")
    p.add_argument("--host", default=None, help="default INTAKE_HTTP_HOST or 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default INTAKE_HTTP_PORT or 8101")
    p.set_defaults(fn=_serve)
    p = sub.add_parser("load-demo", help="define the default catalogue and create the development Open311 key")
    p.add_argument("--api-key", default=None,
                   help=f"the key to create (default: {DEV_API_KEY} in development mode, else a random one)")
    p.set_defaults(fn=_load_demo)
    p = sub.add_parser("mint-api-key", help="create a new Open311 api_key and print it")
    p.add_argument("--name", default="client", help="who the key is for")
    p.set_defaults(fn=_mint)
    p = sub.add_parser("calendar", help="the working calendar: show a year, or set it from a JSON file")
    csub = p.add_subparsers(dest="calendar_command", required=True)
    c = csub.add_parser("show", help="the calendar of a year as the bus holds it")
    c.add_argument("--year", type=int, required=True)
    c.set_defaults(fn=_calendar_show)
    c = csub.add_parser("set", help="set a year's calendar (JSON: timezone, working_weekdays, periods, holidays, "
                                    "makeup_workdays, source); published to every service")
    c.add_argument("--year", type=int, required=True)
    c.add_argument("--file", required=True)
    c.add_argument("--by", default="admin-cli", help="who sets it (kept with the version)")
    c.set_defaults(fn=_calendar_set)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main(sys.argv[1:])
