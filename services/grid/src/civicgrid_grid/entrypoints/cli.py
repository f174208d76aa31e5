"""``civicgrid-grid``: serve, generate-city, import, export, load-demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from civicgrid_grid.settings import GridSettings
from civicgrid_runtime.settings import load_settings


def _db(settings: GridSettings):
    from civicgrid_runtime.store import connect

    client = connect(settings.mongodb_url, app_name="civicgrid-grid-cli")
    return client, client[settings.database_name]


async def import_file(settings: GridSettings, path: str, *, activate: bool = True) -> int:
    from civicgrid_grid.adapters.mapstore import MapRepository
    from civicgrid_grid.domain.validation import MapRejected, parse_and_validate

    with open(path, encoding="utf-8") as fh:
        fc = json.load(fh)
    try:
        city = parse_and_validate(fc)
    except MapRejected as exc:
        print(f"map rejected: {len(exc.defects)} defects; nothing changed", file=sys.stderr)
        for d in exc.defects:
            print(f"  feature {d.feature} {d.code or ''}: {d.kind}: {d.reason}", file=sys.stderr)
        return 2
    client, db = _db(settings)
    try:
        repo = MapRepository(db)
        await repo.ensure_indexes()
        version = await repo.save(city, activate=activate, source=f"file {path}")
    finally:
        await client.close()
    print(f"imported map version {version}: {city.counts()}")
    return 0


async def load_demo(settings: GridSettings, size: str, seed: int, *, force: bool = False, validate: bool = True) -> dict:
    """Generate and import a demo city with staff, posts, chain, departments and property companies."""
    from civicgrid_grid.adapters.mapstore import MapRepository
    from civicgrid_grid.adapters.repos import RosterRepository, StaffRepository
    from civicgrid_grid.demo.citygen import generate
    from civicgrid_grid.demo.roster import build_roster
    from civicgrid_grid.domain.geojson import to_geojson
    from civicgrid_grid.domain.validation import parse_and_validate
    from civicgrid_runtime.auth import mint_token

    client, db = _db(settings)
    try:
        maps = MapRepository(db)
        await maps.ensure_indexes()
        source = f"demo {size} seed {seed}"
        current = await maps.current_version()
        info = await maps.version_info(current) if current else None
        city = generate(size, seed)
        if info and info.get("source") == source and not force:
            version = current
        else:
            if validate and size != "megacity":
                city = parse_and_validate(to_geojson(city))  # the demo goes through the same import checks
            version = await maps.save(city, source=source)
        roster = build_roster(city, load_limit=settings.default_load_limit)
        await StaffRepository(db).upsert_many(roster["staff"])
        rr = RosterRepository(db)
        await rr.ensure_indexes()
        for name in ("posts", "chain", "departments"):
            await rr.upsert(name, roster[name])
    finally:
        await client.close()
    secret = settings.auth_secret.get_secret_value()
    g0 = city.grids.codes[0]
    people = [(f"s{g0}-1", "grid_worker", g0), (f"s{g0}-2", "grid_worker", g0), (f"h{g0}", "grid_worker", g0),
              (f"c{g0[:12]}", "supervisor", g0[:12]), (f"t{g0[:9]}", "supervisor", g0[:9]),
              ("chengguan", "department", ""), ("admin", "admin", "")]
    tokens = {sid: {"role": role, "area": area, "token": mint_token(secret=secret, sub=sid, role=role, area=area)}
              for sid, role, area in people}
    return {"version": version, "counts": city.counts(), "extent": city.extent(), "staff": len(roster["staff"]),
            "tokens": tokens}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="civicgrid-grid", description="civicgrid grid assignment service")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="HTTP API + consumers + background jobs")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--demo", action="store_true", help="load the demo city first when no map is active")
    p = sub.add_parser("generate-city", help="write a synthetic demo city as GeoJSON")
    p.add_argument("--size", choices=("street", "district", "city", "megacity"), default="street")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="-")
    p.add_argument("--no-buildings", action="store_true")
    p = sub.add_parser("import", help="validate and import a GeoJSON map as a new version")
    p.add_argument("file")
    p.add_argument("--no-activate", action="store_true")
    p = sub.add_parser("load-demo", help="generate + import a demo city with staff, departments, property companies")
    p.add_argument("--size", choices=("street", "district", "city", "megacity"), default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--force", action="store_true", help="import a new map version even if this demo is current")
    args = parser.parse_args(argv)

    if args.cmd == "generate-city":
        from civicgrid_grid.demo.citygen import generate
        from civicgrid_grid.domain.geojson import to_geojson

        t = time.perf_counter()
        city = generate(args.size, args.seed)
        fc = to_geojson(city, include_buildings=not args.no_buildings)
        out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
        json.dump(fc, out, separators=(",", ":"))
        if out is not sys.stdout:
            out.close()
        print(f"generated {args.size} (seed {args.seed}) in {time.perf_counter() - t:.1f}s: {city.counts()}",
              file=sys.stderr)
        return
    settings = load_settings(GridSettings)
    if args.cmd == "import":
        raise SystemExit(asyncio.run(import_file(settings, args.file, activate=not args.no_activate)))
    if args.cmd == "load-demo":
        res = asyncio.run(load_demo(settings, args.size or settings.demo_size, settings.demo_seed
                                    if args.seed is None else args.seed, force=args.force))
        print(f"demo city loaded: map version {res['version']}, {res['counts']}, {res['staff']} staff")
        print(f"extent (min lon, min lat, max lon, max lat): {res['extent']}")
        for sid, t in res["tokens"].items():
            print(f"  {sid:22s} {t['role']:12s} area={t['area'] or '*':16s} token={t['token']}")
        return
    if args.cmd == "serve":
        overrides = {}
        if args.host:
            overrides["http_host"] = args.host
        if args.port:
            overrides["http_port"] = args.port
        settings = load_settings(GridSettings, **overrides)
        if args.demo:
            async def maybe_demo():
                from civicgrid_grid.adapters.mapstore import MapRepository

                client, db = _db(settings)
                try:
                    current = await MapRepository(db).current_version()
                finally:
                    await client.close()
                if current is None:
                    await load_demo(settings, settings.demo_size, settings.demo_seed)

            asyncio.run(maybe_demo())
        from civicgrid_grid.entrypoints.http import build_app
        from civicgrid_runtime.service import serve

        serve(build_app(settings), settings)
