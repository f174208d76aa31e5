"""``civicgrid-console serve``."""

from __future__ import annotations

import argparse

from civicgrid_console.settings import ConsoleSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="civicgrid-console", description="civicgrid's web console")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="serve the web app")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        overrides = {k: v for k, v in (("http_host", args.host), ("http_port", args.port)) if v}
        settings = ConsoleSettings(**overrides)
        from civicgrid_console.entrypoints.http import build_app
        from civicgrid_runtime.service import serve

        serve(build_app(settings), settings)
