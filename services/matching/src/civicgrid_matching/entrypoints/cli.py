"""``civicgrid-matching``: serve | import-volunteers | load-demo | report."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from civicgrid_matching.settings import MatchingSettings
from civicgrid_runtime.settings import load_settings

#: the demo city's roster (written by deploy/local/demo_volunteers.py), relative to the repository
DEMO_ROSTER = Path("deploy/local/demo/volunteers.jsonl")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="civicgrid-matching", description="civicgrid volunteer matching")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="HTTP API + consumers + background jobs until SIGINT/SIGTERM")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    i = sub.add_parser("import-volunteers", help="register a roster (JSON lines: a registration each, plus "
                                                 "'qualifications': codes verified for a year); idempotent")
    i.add_argument("roster", type=Path)
    i.add_argument("--count", type=int, help="only the first N rows")
    d = sub.add_parser("load-demo", help="import the demo city's roster (idempotent)")
    d.add_argument("--roster", type=Path, default=Path(os.environ.get("MATCHING_DEMO_ROSTER", DEMO_ROSTER)))
    d.add_argument("--count", type=int, default=300)
    r = sub.add_parser("report", help="write each work unit's monthly report as CSV and JSON")
    r.add_argument("--month", required=True, help="YYYY-MM")
    r.add_argument("--out", default="reports")
    args = ap.parse_args(argv)

    overrides = {}
    if getattr(args, "host", None):
        overrides["http_host"] = args.host
    if getattr(args, "port", None):
        overrides["http_port"] = args.port
    settings = load_settings(MatchingSettings, **overrides)

    if args.cmd == "serve":
        from civicgrid_matching.entrypoints.http import build_app
        from civicgrid_runtime.service import serve

        serve(build_app(settings), settings)
    elif args.cmd in ("import-volunteers", "load-demo"):
        print(json.dumps(asyncio.run(_import(settings, args.roster, args.count))))
    elif args.cmd == "report":
        print(json.dumps(asyncio.run(_report(settings, args.month, Path(args.out)))))


async def _with_service(settings: MatchingSettings, fn):
    from civicgrid_matching.bootstrap import build

    service = await build(settings, consume=False, jobs=False)
    try:
        return await fn(service.matching)
    finally:
        await service.runtime.stop()


async def _import(settings: MatchingSettings, roster: Path, count: int | None) -> dict:
    from civicgrid_matching.handlers import registry
    from civicgrid_matching.schemas import RosterRow

    lines = [line for line in roster.read_text(encoding="utf-8").splitlines() if line.strip()][:count]
    rows = [RosterRow.model_validate_json(line) for line in lines]
    return await _with_service(settings, lambda ctx: registry.import_roster(ctx, rows, "roster-import"))


async def _report(settings: MatchingSettings, month: str, out: Path) -> dict:
    from civicgrid_matching.domain import reports
    from civicgrid_matching.domain.scope import DISTRICT
    from civicgrid_matching.handlers import queries

    async def run(ctx):  # the operator on the server reports on the whole district
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for unit in await queries.work_units(ctx, scope=DISTRICT):
            rep = await queries.work_unit_report(ctx, unit, month, scope=DISTRICT)
            stem = out / f"{month}_{''.join(c if c.isalnum() else '_' for c in unit)}"
            stem.with_suffix(".json").write_text(json.dumps(rep, ensure_ascii=False, indent=2))
            stem.with_suffix(".csv").write_text(reports.to_csv(rep))
            written.append(str(stem))
        return {"month": month, "reports": written, "dir": os.fspath(out)}

    return await _with_service(settings, run)


if __name__ == "__main__":
    main()
