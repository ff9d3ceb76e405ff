"""The `carbonlab` command: devices, run, zones, intensity, compare, report.

Bad input is a one-line error on stderr and exit code 2; `carbonlab run` returns the command's own exit
code (or 2 when the measurement it was asked to write could not be written; the measurement is then
printed on stdout). A reader that closes the pipe early (`carbonlab compare ... | head`) ends the
command quietly with exit code 141 (128 + SIGPIPE, as a shell reports a command killed by it).
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
BROKEN_PIPE = 141  # 128 + SIGPIPE


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
    z.add_argument(
        "query",
        nargs="?",
        default="",
        help="a code, name or provider (case-insensitive): the exact code first, then the cloud "
        "regions on its grid, then codes starting with it; other matches are counted",
    )
    z.add_argument("--all", action="store_true", help="every match (every zone without a query)")
    z.add_argument("--json", action="store_true", help="print JSON (every match)")

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

    _report_parser(sub)

    c = sub.add_parser(
        "compare",
        help="compare two saved pytest carbon runs; non-zero exit on regression",
        add_help=False,
    )
    c.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _report_parser(sub: Any) -> None:
    from .report.render import FORMATS

    p = sub.add_parser(
        "report",
        help="a paper's or model card's energy and carbon, from history and JSON files",
        description="Report the energy, CO2e (operational and embodied), water and hardware of "
        "measured work, with how each figure was obtained and its uncertainty range. Inputs: the "
        "notebook history (the default when no FILE is given), `carbonlab run --json` files, "
        "`pytest --carbon-json` files and earlier `--format json` reports; filters apply to all.",
    )
    p.add_argument(
        "files", nargs="*", metavar="FILE", help="Measurement, pytest run or report JSON"
    )
    p.add_argument(
        "--history",
        metavar="PATH",
        help="history file (default: settings' history); given, history is read with FILEs too",
    )
    p.add_argument(
        "--notebook",
        metavar="PATH",
        help="only this notebook's runs (the key history uses: the notebook path jupyter_server "
        "gives the kernel); default: every notebook",
    )
    p.add_argument(
        "--label",
        action="append",
        default=[],
        help="only runs with this label (a glob such as 'train*' works; repeat for several)",
    )
    p.add_argument("--since", help="only runs started at or after: 2026-12-01 or an ISO time (UTC)")
    p.add_argument("--until", help="only runs started at or before: 2026-12-01 or an ISO time")
    p.add_argument(
        "--format",
        "-f",
        choices=FORMATS,
        default="markdown",
        help="output format (default markdown)",
    )
    p.add_argument("-o", "--output", metavar="PATH", help="write here instead of stdout")
    p.add_argument(
        "--compare-zone",
        action="append",
        default=[],
        metavar="ZONE",
        help="add a counterfactual line: the same energy in this zone (repeatable)",
    )
    p.add_argument(
        "--training-type", help="model card training_type, e.g. pre-training or fine-tuning"
    )
    p.add_argument("--title", help="report title")


def cmd_report(args: argparse.Namespace) -> int:
    from .report import ReportError, Selection, parse_when, render, report_for

    try:
        history = None
        if args.history is not None or args.notebook is not None or not args.files:
            from . import config, store

            try:
                settings = config.resolve()
            except config.ConfigError as e:
                return _die(str(e))
            history = str(store.resolve_path(args.history, settings))
        sel = Selection(
            history=history,
            notebook=args.notebook,
            labels=list(args.label),
            since=None if args.since is None else parse_when(args.since, "--since"),
            until=None if args.until is None else parse_when(args.until, "--until"),
            files=list(args.files),
        )
        report = report_for(
            sel,
            compare_zones=args.compare_zone,
            training_type=args.training_type,
            title=args.title,
        )
        text = render(report, args.format)
    except ReportError as e:
        return _die(str(e))
    if args.output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    try:
        with open(os.path.expanduser(args.output), "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    except OSError as e:
        return _die(f"cannot write {args.output}: {e.strerror or e}")
    print(
        f"carbonlab: wrote the {args.format} report of {len(report.runs)} run(s) to {args.output}",
        file=sys.stderr,
    )
    return 0


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
    if args.json is not None and args.json != "-":
        # Known before the command runs: never run a long job whose figures cannot be kept.
        why = _unwritable(args.json)
        if why:
            return _die(f"--json {args.json!r}: {why}")
    if args.zone is not None and not args.zone.strip():
        return _die("--zone '': expected a zone, e.g. FR (`carbonlab zones` lists them)")
    try:
        from . import footprint

        # Strict here (the runtime's own resolution is lenient, for cells): a command line with a bad
        # setting is a usage error before the command runs, not a note after it.
        footprint.check_zone(config.with_overrides(config.resolve(), zone=args.zone, pue=args.pue))
        rt = runtime.get()
        settings = config.with_overrides(rt.settings, zone=args.zone, pue=args.pue)
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
    from carbonlab.measurement import stamp_versions

    data = stamp_versions(m.to_dict())
    write_error = ""
    if args.json is not None:
        text = json.dumps(data, indent=2)
        if args.json == "-":
            print(text)
        else:
            try:
                with open(args.json, "w", encoding="utf-8") as f:
                    f.write(text + "\n")
            except OSError as e:
                print(text)  # the figures are kept: on stdout instead of the file
                write_error = (
                    f"cannot write {args.json}: {e.strerror or e} (the measurement is on stdout)"
                )
    if not args.quiet:
        from .summary import measurement_text

        print(measurement_text(m), file=sys.stderr)
    # A child killed by a signal: report it the way a shell would.
    rc = code if code >= 0 else 128 - code
    if write_error:
        print(f"carbonlab: error: {write_error}", file=sys.stderr)
        return rc or USAGE_ERROR
    return rc


def _unwritable(path: str) -> str | None:
    """Why a file cannot be written at ``path`` (its directory must exist), else None."""
    if path == "":
        return "expected a file path, or '-' for stdout"
    p = os.path.abspath(path)
    if os.path.isdir(p):
        return "is a directory"
    parent = os.path.dirname(p)
    if not os.path.exists(parent):
        return f"no such directory {os.path.dirname(path) or parent}"
    if not os.path.isdir(parent):
        return f"{os.path.dirname(path)} is not a directory"
    if os.path.exists(p):
        return None if os.access(p, os.W_OK) else "the file is not writable"
    return None if os.access(parent, os.W_OK | os.X_OK) else "the directory is not writable"


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
    from .summary import zones_search_text, zones_summary_text, zones_text

    query = args.query.strip()
    if args.json:
        print(json.dumps(intensity.list_zones(query), indent=2))
        return 0
    if not query:
        if args.all:
            print(zones_text(intensity.list_zones()))
        else:
            print(zones_summary_text(intensity.zone_counts()))
        return 0
    if args.all:
        shown, left_out = intensity.list_zones(query), []
    else:
        shown, left_out = intensity.search_zones(query)
    if not shown:
        print(f"no zone matches {query!r} (carbonlab zones says what there is)", file=sys.stderr)
        return 1
    other = [
        {
            "zone": z.zone,
            "gco2e_per_kwh": z.gco2e_per_kwh,
            "source": z.source,
            "basis": z.basis,
            "implausible": intensity.implausible(z),
        }
        for z in intensity.table_figures(query)
    ]
    print(zones_search_text(query, shown, left_out, other))
    return 0


def cmd_intensity(args: argparse.Namespace) -> int:
    from . import config, footprint
    from .footprint import intensity

    zone, spec = args.zone, args.provider
    for name, v in (("zone", zone), ("--provider", spec)):
        if v is not None and not v.strip():
            return _die(f"{name} '': expected a value, e.g. FR or uk-carbon-intensity:GB")
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


def _main(argv: list[str]) -> int:
    if argv[:1] == ["compare"]:
        from .compare import compare_main

        return compare_main(argv[1:])
    args = _parser().parse_args(argv)
    handler: dict[str, Any] = {
        "devices": cmd_devices,
        "run": cmd_run,
        "zones": cmd_zones,
        "intensity": cmd_intensity,
        "report": cmd_report,
    }
    return handler[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at interpreter exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say to it, and no traceback. Point
        # stdout at /dev/null so the interpreter's own final flush does not fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
