"""``ioc privacy masks|pictures|views|purge``: checking the masks and answering a data subject's
request from the shell (docs/privacy.md). Every command that reads or deletes pictures or their
viewing record is audited with the actor ``cli:<os user>``."""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import io
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ioc.config import Settings
from ioc.privacy import PrivacyError

# The database, numpy and the password hasher are imported by the commands, not by `ioc --help`.


def _time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time like 2026-11-26T08:00+07:00"
        ) from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset: write it like 2026-11-26T08:00+07:00"
        )
    return t


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("privacy", help="camera pictures as personal data (docs/privacy.md)")
    ps = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ps.add_parser("masks", help="check the privacy-masks file against the cameras")
    pic = ps.add_parser("pictures", help="list (or save) the pictures held of a camera")
    vw = ps.add_parser("views", help="who viewed a camera's pictures (CSV)")
    for q in (pic, vw):
        q.add_argument("--camera", required=True, help="camera id, e.g. cam-0001")
        q.add_argument("--from", dest="start", type=_time, help="from this time (with offset)")
        q.add_argument("--to", dest="end", type=_time, help="until this time (with offset)")
    pic.add_argument("--save", type=Path, help="also write them as JPEG files into this folder")
    vw.add_argument("--out", type=Path, help="CSV file (mode 0600) instead of stdout")
    pg = ps.add_parser("purge", help="delete a camera's pictures (latest and history)")
    pg.add_argument("--camera", required=True, help="camera id, e.g. cam-0001")
    pg.add_argument("--before", type=_time, help="only pictures taken before this time")


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return f"cli:uid{os.getuid()}"


def run(settings: Settings, args: argparse.Namespace) -> None:
    asyncio.run(_run(settings, args))


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    from ioc.db.connect import connect
    from ioc.privacy import requests

    if args.action == "masks":
        await _masks(settings)
        return
    tz = _zone(settings)
    conn = await connect(settings.dsn, autocommit=True)
    try:
        if args.action == "pictures":
            found = await requests.pictures(
                conn, args.camera, start=args.start, end=args.end, actor=actor(),
                save_to=args.save,
            )  # fmt: skip
            print(f"{len(found)} picture(s) of {args.camera}" + _range(args.start, args.end))
            for p in found:
                print(f"  {_local(p.taken_at, tz)}  {p.kept_as:<8} {p.width}x{p.height}"
                      f"  {p.size / 1000:.1f} kB")  # fmt: skip
            if args.save:
                print(f"saved to {args.save} (files readable by you only)")
        elif args.action == "views":
            rows = await requests.views(
                conn, args.camera, start=args.start, end=args.end, actor=actor()
            )
            _write_csv(_views_csv(rows, tz), args.out)
            if args.out:
                print(f"{len(rows)} row(s) written to {args.out}")
        elif args.action == "purge":
            gone = await requests.purge(conn, args.camera, before=args.before, actor=actor())
            when = f" taken before {args.before.isoformat()}" if args.before else ""
            print(f"deleted {gone.latest} latest and {gone.history} past picture(s) of "
                  f"{args.camera}{when}; audited as privacy.purge")  # fmt: skip
    finally:
        await conn.close()


async def _masks(settings: Settings) -> None:
    from ingest.rtsp.config import camera_settings
    from ioc.db.connect import connect
    from ioc.domain.camera import ANALYSIS_H, ANALYSIS_W
    from ioc.domain.privacy import masked_share, rasterise
    from ioc.privacy.masks import load_masks

    path = camera_settings(settings).privacy_masks_file
    masks = load_masks(path)
    if path is None:
        print("no privacy-masks file (IOC_PRIVACY_MASKS_FILE unset, no config/privacy-masks.yaml)")
        return
    conn = await connect(settings.dsn, autocommit=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT id FROM devices WHERE kind = 'camera' AND id = ANY(%s)",
                (list(masks.cameras),),
            )
            known = {r["id"] for r in await cur.fetchall()}
    finally:
        await conn.close()
    print(f"{path}: {len(masks.cameras)} camera(s) with a mask")
    for camera_id, polygons in sorted(masks.cameras.items()):
        share = masked_share(rasterise(polygons, ANALYSIS_W, ANALYSIS_H))
        note = "" if camera_id in known else "  <- no such camera: a typo?"
        print(f"  {camera_id:<20} {len(polygons)} polygon(s), {share:.0%} of the picture{note}")
    if set(masks.cameras) - known:
        raise PrivacyError("the masks file names cameras that do not exist (see above)")


def _views_csv(rows: list[dict[str, Any]], tz: ZoneInfo) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["first_view", "last_view", "username", "display_name", "role", "views", "ip"])
    for r in rows:
        w.writerow([
            _local(r["first_at"], tz), _local(r["last_at"], tz), r["username"],
            r["display_name"], r["role"] or "(user removed)", r["views"], r["ip"] or "",
        ])  # fmt: skip
    return buf.getvalue()


def _write_csv(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as f:  # BOM: spreadsheets
        f.write(text)


def _zone(settings: Settings) -> ZoneInfo:
    from ioc.db.seed import load_geography

    try:
        return ZoneInfo(load_geography(settings.areas_file).timezone or "Asia/Ho_Chi_Minh")
    except (OSError, ValueError, KeyError):  # no areas file here: the province's own zone
        return ZoneInfo("Asia/Ho_Chi_Minh")


def _local(t: datetime, tz: ZoneInfo) -> str:
    return t.astimezone(tz).isoformat(timespec="seconds")


def _range(start: datetime | None, end: datetime | None) -> str:
    if start is None and end is None:
        return ""
    a = start.isoformat() if start else "the start"
    b = end.isoformat() if end else "now"
    return f" from {a} to {b}"
