"""The ``ioc record``, ``ioc replay`` and ``ioc scenario`` commands (wired into ``ioc.cli``).

Exit codes: 0 all good; 1 an expectation failed (or a replay was not fully acknowledged);
2 the file is malformed or the centre is not ready (nothing was published).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ioc.config import Settings
from ioc.scenario.errors import InputFileError
from ioc.scenario.progress import Progress

if TYPE_CHECKING:  # the parser is built for every `ioc` command: import the rest when used
    from ioc.scenario.load import Loaded

COMMANDS = ("record", "replay", "scenario")


def add_parsers(sub: Any) -> None:
    rec = sub.add_parser("record", help="record the MQTT traffic and camera faults to a file")
    rec.add_argument("--out", type=Path, required=True, help="file to write (gzip JSON lines)")
    rec.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    rec.add_argument("--no-cameras", action="store_true", help="do not poll the camera simulator")

    rep = sub.add_parser("replay", help="republish a recording with its timing, N times faster")
    rep.add_argument("file", type=Path)
    rep.add_argument("--speed", type=float, default=1.0, help="N times real time (default 1)")
    when = rep.add_mutually_exclusive_group()
    when.add_argument(
        "--shift-to-now", dest="shift", action="store_true", default=True,
        help="move observed_at onto the replay's clock (default)",
    )  # fmt: skip
    when.add_argument(
        "--keep-timestamps", dest="shift", action="store_false", help="send payloads unchanged"
    )
    rep.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    rep.add_argument(
        "--with-control", action="store_true", help="also replay simulator control commands"
    )
    rep.add_argument("--no-cameras", action="store_true", help="skip the camera fault timeline")
    rep.add_argument("--check", action="store_true", help="only validate the file")

    sc = sub.add_parser("scenario", help="run or check scenario files (docs/scenarios.md)")
    sc_sub = sc.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = sc_sub.add_parser("run", help="run scenarios against a centre; exit 1 on a failure")
    run.add_argument("files", type=Path, nargs="+", metavar="FILE")
    run.add_argument(
        "--start-centre", action="store_true",
        help="start a centre of its own for each scenario (own database and broker)",
    )  # fmt: skip
    run.add_argument(
        "--together", action="store_true",
        help="run the files at the same time against one centre (their `centre:` blocks must agree)",
    )  # fmt: skip
    run.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    run.add_argument("--no-cleanup", action="store_true", help="leave faults and jams running")
    run.add_argument(
        "--logs", type=Path,
        help="--start-centre: the roles' logs go here (default <IOC_STATE_DIR>/scenario-logs)",
    )  # fmt: skip
    chk = sc_sub.add_parser("check", help="validate scenario files only")
    chk.add_argument("files", type=Path, nargs="+", metavar="FILE")


def _refuse(exc: InputFileError) -> None:
    for p in exc.problems:
        print(f"ioc: error: {p.render(exc.path)}", file=sys.stderr)
    print("ioc: nothing was published", file=sys.stderr)
    raise SystemExit(2)


def run(settings: Settings, args: argparse.Namespace) -> None:
    """Run the command; raises SystemExit with its exit code when it is not 0."""
    from ioc.scenario.centre import CentreError
    from ioc.scenario.mqtt import MqttUnreachable
    from ioc.scenario.runner import ScenarioUnready

    try:
        code = _dispatch(settings, args)
    except InputFileError as exc:
        _refuse(exc)
    except (ScenarioUnready, CentreError, MqttUnreachable) as exc:
        print(f"ioc: error: {exc}", file=sys.stderr)
        if args.command != "record":
            print("ioc: nothing was published", file=sys.stderr)
        raise SystemExit(2) from None
    if code:
        raise SystemExit(code)


def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "record":
        from ioc.scenario.record import run_cli

        return run_cli(settings, args.out, args.duration, not args.no_cameras)
    if args.command == "replay":
        from ioc.scenario.recording import validate

        if args.check:
            info = validate(args.file)
            print(f"{args.file}: ok, {info.messages:,} messages, {info.camera_states} camera states,"
                  f" {info.duration_s:.1f} s")  # fmt: skip
            return 0
        if args.speed <= 0:
            raise SystemExit("ioc: error: --speed must be > 0")
        from ioc.scenario.replay import run_cli as replay_cli

        return replay_cli(
            settings, args.file, speed=args.speed, shift=args.shift, loop=args.loop,
            with_control=args.with_control, cameras=not args.no_cameras,
        )  # fmt: skip
    if args.action == "check":
        return _check(settings, args.files)
    return _run_scenarios(settings, args)


def _load(settings: Settings, path: Path) -> Any:
    from ioc.db.seed import load_geography
    from ioc.scenario.load import load_rules_doc, load_scenario

    return load_scenario(
        path,
        geo=load_geography(settings.areas_file),
        rules_doc=load_rules_doc(settings.rules_file),
        seed=settings.sim_seed,
    )


def _check(settings: Settings, files: list[Path]) -> int:
    failed: list[InputFileError] = []
    for path in files:
        try:
            sc = _load(settings, path).scenario
        except InputFileError as exc:
            failed.append(exc)
            continue
        print(f"{path}: ok: {sc.name}, {len(sc.timeline)} steps, {len(sc.expect)} expectations")
    for bad in failed:
        for p in bad.problems:
            print(f"ioc: error: {p.render(bad.path)}", file=sys.stderr)
    return 2 if failed else 0


def _run_scenarios(settings: Settings, args: argparse.Namespace) -> int:
    from ioc.scenario.centre import CentreError
    from ioc.scenario.mqtt import MqttUnreachable
    from ioc.scenario.runner import ScenarioUnready

    loaded = [_load(settings, p) for p in args.files]  # every file checked before any runs
    progress = Progress(sys.stderr)
    batches = [loaded] if args.together else [[item] for item in loaded]
    reports: list[Any] = []
    for batch in batches:
        try:
            reports += _run_batch(settings, args, batch, progress)
        except (InputFileError, ScenarioUnready, CentreError, MqttUnreachable) as exc:
            if not reports:
                raise  # nothing ran: "nothing was published"
            _emit(reports, args)  # what ran before, then why the rest did not
            if isinstance(exc, InputFileError):
                for p in exc.problems:
                    print(f"ioc: error: {p.render(exc.path)}", file=sys.stderr)
            else:
                print(f"ioc: error: {exc}", file=sys.stderr)
            names = ", ".join(x.scenario.name for x in batch)
            print(f"ioc: {names} did not run (nothing was published for it)", file=sys.stderr)
            return 2
    return _emit(reports, args)


def _emit(reports: list[Any], args: argparse.Namespace) -> int:
    passed = all(r.passed for r in reports)
    if args.json:
        print(json.dumps({"passed": passed, "scenarios": [r.as_json() for r in reports]},
                         ensure_ascii=False, indent=2))  # fmt: skip
    else:
        for r in reports:
            _summary(r)
    return 0 if passed else 1


def _run_batch(
    settings: Settings, args: argparse.Namespace, batch: list[Loaded], progress: Progress
) -> list[Any]:
    """Scenarios that share a centre (one, or several run side by side)."""
    from ioc.alerts.engine import load_rules
    from ioc.scenario import runner
    from ioc.scenario.centre import Centre, CentreError, isolated_services, merge_specs

    names = "+".join(item.scenario.name for item in batch)
    spec = merge_specs([(item.scenario.name, item.scenario.centre) for item in batch])
    with ExitStack() as stack:
        target, camera_port, rules_file = settings, None, settings.rules_file
        centre = None
        if args.start_centre:
            logs = (args.logs or settings.state_dir / "scenario-logs") / names
            progress.line(f"starting a centre for {names} (logs: {logs})")
            target = stack.enter_context(isolated_services(settings))
            centre = stack.enter_context(Centre(target, spec, log_dir=logs))
            camera_port, rules_file = centre.camera_port, centre.rules_file
        elif spec.rules or spec.cameras:
            progress.line(
                f"note: `centre:` (rule changes, cameras) of {names} applies only with"
                " --start-centre; this centre runs with its own rules and cameras"
            )
        rules = {r.id: r for r in load_rules(rules_file)}

        async def all_of() -> list[Any]:
            # Every scenario of the batch is checked against the centre before any plays.
            ready: list[runner.Prepared] = []
            try:
                for item in batch:
                    ready.append(
                        await runner.prepare(item, target, rules=rules, camera_port=camera_port)
                    )
            except BaseException:
                for p in ready:
                    await p.close()
                raise
            tag = len(batch) > 1
            return list(
                await asyncio.gather(
                    *(
                        runner.play(
                            p,
                            progress=progress.tagged(f"[{p.loaded.scenario.name}] ")
                            if tag
                            else progress,
                            cleanup=not args.no_cleanup,
                        )
                        for p in ready
                    )
                )
            )

        reports = asyncio.run(all_of())
        if centre is not None:
            try:
                centre.check()  # a role that died mid-run explains a failure
            except CentreError as exc:
                for r in reports:
                    r.errors.append(f"the centre broke during the run: {exc}")
        return reports


def _summary(r: Any) -> None:
    print(f"\n{'PASS' if r.passed else 'FAIL'}  {r.name} — {r.title}  ({r.duration_s:.1f} s)")
    for v in r.verdicts:
        took = "" if v.measured_s is None or v.kind == "no_alert" else f"{v.measured_s:6.1f} s"
        limit = f"≤ {v.limit_s:g} s" if v.limit_s and v.kind != "no_alert" else ""
        print(f"  {'pass' if v.passed else 'FAIL'}  {took:>8} {limit:>8}  {v.label}")
        if not v.passed and v.detail:
            print(f"        {v.detail}")
    for a in r.actions:
        if not a["ok"]:
            print(f"  FAIL  action at t+{a['t']} s: {a['action']}: {a.get('error', '')}")
    for error in r.errors:
        print(f"  FAIL  {error}")
    for note in r.notes:
        print(f"  note: {note}")
