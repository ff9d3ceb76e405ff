"""The `carbonlab` command: devices, run, zones, intensity, compare.

Bad input is a one-line error on stderr and exit code 2; `carbonlab run` returns the command's own exit
code.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(USAGE_ERROR, f"carbonlab: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="carbonlab",
        description="Measure the energy and CO2e of work, and say how each figure was obtained.",
    )
    from . import __version__

    p.add_argument("--version", action="version", version=f"carbonlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    d = sub.add_parser(
        "devices", help="list every meter found, its method and scope, and why any is unavailable"
    )
    d.add_argument("--json", action="store_true", help="print JSON instead of a table")

    r = sub.add_parser(
        "run",
        help="run a command as a measured window",
        description="Run CMD as a measured window, print a summary, and return CMD's exit code.",
        usage="carbonlab run [--zone Z] [--pue P] [--json PATH] [--label L] [--dask ADDRESS] "
        "[--ray ADDRESS] -- CMD [ARGS...]",
    )
    r.add_argument(
        "--zone",
        help="grid zone: FR, US-CAL-CISO, aws:eu-west-3 ... (default: settings, else World average)",
    )
    r.add_argument("--pue", help="power usage effectiveness of the facility (default 1.0)")
    r.add_argument(
        "--json", metavar="PATH", help="write the Measurement JSON here ('-' for stdout)"
    )
    r.add_argument("--label", help="label for the measurement (default: the command line)")
    r.add_argument("--quiet", "-q", action="store_true", help="no human summary")
    r.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="also measure this Dask scheduler's workers (pip install carbonlab[dask])",
    )
    r.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="also measure this Ray cluster's nodes (pip install carbonlab[ray])",
    )
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")

    z = sub.add_parser("zones", help="known grid zones and their intensity, with source and year")
    z.add_argument("query", nargs="?", default="", help="filter by code or name (case-insensitive)")
    z.add_argument("--json", action="store_true", help="print JSON")

    i = sub.add_parser(
        "intensity",
        help="grid intensity now: value, source, age, and the best window from a forecast",
        description="Print the grid intensity a measurement would be charged now, where it comes "
        "from and how old it is, and, when the provider gives a forecast, the lowest-intensity "
        "window ahead. A live provider that fails falls back to the static figure and says why.",
    )
    i.add_argument(
        "zone",
        nargs="?",
        help="a zone (FR, US-CAL-CISO, aws:eu-west-3) or a provider setting "
        "(uk-carbon-intensity:GB, electricitymaps:FR, watttime:CAISO_NORTH); default: settings",
    )
    i.add_argument("--provider", help="intensity provider setting (default: settings' intensity)")
    i.add_argument(
        "--window", type=float, default=1.0, help="best-window length, hours (default 1)"
    )
    i.add_argument("--hours", type=float, default=24.0, help="look this far ahead (default 24)")
    i.add_argument("--json", action="store_true", help="print JSON")

    c = sub.add_parser(
        "compare",
        help="compare two saved pytest carbon runs; non-zero exit on regression",
        add_help=False,
    )
    c.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _die(msg: str) -> int:
    print(f"carbonlab: error: {msg}", file=sys.stderr)
    return USAGE_ERROR


def cmd_devices(args: argparse.Namespace) -> int:
    from . import config, meters

    try:
        settings = config.resolve()
    except config.ConfigError as e:
        return _die(str(e))
    ms = meters.discover(settings)
    info = ms.describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from .summary import devices_text

    print(devices_text(info))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from . import config, runtime
    from .window import Window

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        return _die("run needs a command after --, e.g. carbonlab run -- python train.py")
    try:
        rt = runtime.get()
        settings = config.with_overrides(rt.settings, zone=args.zone, pue=args.pue)
        from . import footprint

        footprint.check_zone(settings)
    except (config.ConfigError, ValueError) as e:
        return _die(str(e))
    label = args.label or shlex.join(cmd)
    from . import cluster

    try:
        detach = cluster.attach_for_command(dask=args.dask, ray=args.ray)
    except cluster.AttachError as e:
        return _die(str(e))
    window = Window(label, settings, rt=rt).begin()
    # Children's CPU time only counts once they are reaped, which wait() does; forward ^C to the child
    # and keep measuring until it has really ended.
    try:
        proc = subprocess.Popen(cmd)
    except OSError as e:
        window.end()
        detach()
        return _die(f"cannot run {cmd[0]!r}: {e.strerror or e}")
    old = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        # wait4 also gives the command's peak resident memory, which the RAM model needs: the
        # process-wide RAM meter only sees carbonlab's own memory.
        _, status, usage = os.wait4(proc.pid, 0)
        code = proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        signal.signal(signal.SIGINT, old)
    m = window.end()
    detach()
    _add_command_ram(m, usage.ru_maxrss * 1024, window.settings)
    m.extra["command"] = cmd
    m.extra["exit_code"] = code
    data = m.to_dict()
    if args.json:
        text = json.dumps(data, indent=2)
        if args.json == "-":
            print(text)
        else:
            try:
                with open(args.json, "w", encoding="utf-8") as f:
                    f.write(text + "\n")
            except OSError as e:
                print(f"carbonlab: error: cannot write {args.json}: {e.strerror}", file=sys.stderr)
                return code or USAGE_ERROR
    if not args.quiet:
        from .summary import measurement_text

        print(measurement_text(m), file=sys.stderr)
    # A child killed by a signal: report it the way a shell would.
    return code if code >= 0 else 128 - code


def _add_command_ram(m, peak_rss_bytes: int, settings) -> None:
    """Charge the command's memory: its peak resident set × W per GB × duration (an upper bound)."""
    from . import footprint
    from .measurement import METHOD_RAM_MODEL, SCOPE_PROCESS, Component

    gb = peak_rss_bytes / 2**30
    m.components.append(
        Component(
            kind="ram",
            device="ram:command",
            name="RAM (peak resident memory of the command)",
            energy_j=gb * settings.ram_w_per_gb * m.duration_s,
            method=METHOD_RAM_MODEL,
            scope=SCOPE_PROCESS,
            params={
                "w_per_gb": settings.ram_w_per_gb,
                "peak_rss_gb": round(gb, 4),
                "basis": "peak (upper bound)",
            },
        )
    )
    footprint.apply(m, settings)


def cmd_zones(args: argparse.Namespace) -> int:
    from .footprint import intensity

    rows = intensity.list_zones(args.query)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no zone matches {args.query!r}", file=sys.stderr)
        return 1
    from .summary import zones_text

    print(zones_text(rows))
    return 0


def cmd_intensity(args: argparse.Namespace) -> int:
    from . import config, footprint
    from .footprint import intensity

    zone, spec = args.zone, args.provider
    if zone and zone.partition(":")[0].strip().lower() in intensity.BUILTIN_PROVIDERS:
        zone, spec = None, spec or zone  # `carbonlab intensity uk-carbon-intensity:London`
    for name, v in (("--window", args.window), ("--hours", args.hours)):
        if not 0 < v <= 168:
            return _die(f"{name} {v:g}: expected hours between 0 and 168")
    if args.window > args.hours:
        return _die(f"--window {args.window:g} is longer than --hours {args.hours:g}")
    try:
        settings = config.with_overrides(config.resolve(), zone=zone, intensity=spec)
        intensity.lookup(settings.zone)
        from .footprint import providers

        providers.check_spec(settings)
        d = footprint.current_intensity(settings, wait_s=providers.wait_time(settings))
        adv = footprint.advice_for(
            None,
            settings,
            window_h=args.window,
            horizon_h=args.hours,
            subject=f"{args.window:g} h of work",
        )
    except config.ConfigError as e:
        return _die(str(e))
    if args.json:
        d["advice"] = None if adv is None else adv.to_dict()
        print(json.dumps(d, indent=2))
        return 0
    from .footprint.providers.text import intensity_text

    print(intensity_text(d, adv, window_h=args.window, horizon_h=args.hours))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        from .compare import compare_main

        return compare_main(argv[1:])
    args = _parser().parse_args(argv)
    handler: dict[str, Any] = {
        "devices": cmd_devices,
        "run": cmd_run,
        "zones": cmd_zones,
        "intensity": cmd_intensity,
    }
    try:
        return handler[args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
