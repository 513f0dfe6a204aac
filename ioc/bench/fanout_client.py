"""A process holding many websocket clients for ``ioc bench fanout``; prints one JSON report.

Usage: python -m ioc.bench.fanout_client URL CLIENTS SECONDS
Each client counts the events it receives, checks their ids are consecutive (no gap, no
duplicate) and samples the delay from the event's timestamp to its arrival.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from datetime import datetime
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

QUIET_S = 4.0


async def client(url: str, stats: dict[str, Any], ready: asyncio.Event) -> None:
    """Read until the stream has been quiet for QUIET_S after events began (or the deadline);
    the process's watchdog closes the socket then (no timeout per message: it would cost this
    process more CPU than the message itself, on the machine the server runs on)."""
    n, last, gaps, lat = 0, None, 0, []
    try:
        token = os.environ.get("IOC_BENCH_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        async with connect(url, open_timeout=60, max_queue=None, additional_headers=headers) as ws:
            stats["sockets"].append(ws)
            stats["connected"] += 1
            if stats["connected"] == stats["clients"]:
                ready.set()
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "snapshot":
                    stats["watermarks"].append(msg["watermark"])
                if msg.get("type") != "event":
                    continue
                if last is not None and msg["id"] != last + 1:
                    gaps += 1
                last = msg["id"]
                stats["last_at"] = time.time()
                n += 1
                if random.random() < 0.1:
                    sent = datetime.fromisoformat(msg["time"]).timestamp()
                    lat.append(time.time() - sent)
    except ConnectionClosed:
        pass
    finally:
        stats["received"].append(n)
        stats["gaps"] += gaps
        stats["latency"].extend(lat)


async def watchdog(stats: dict[str, Any]) -> None:
    """Close every socket once the stream has been quiet for QUIET_S after events began, or at
    the hard deadline."""
    while True:
        await asyncio.sleep(0.25)
        now = time.time()
        quiet = stats["last_at"] and now - stats["last_at"] > QUIET_S
        if quiet or (stats["until"] is not None and now > stats["until"]):
            break
    await asyncio.gather(*(ws.close() for ws in stats["sockets"]), return_exceptions=True)


async def main(url: str, clients: int, seconds: float) -> None:
    stats: dict[str, Any] = {
        "clients": clients,
        "connected": 0,
        "received": [],
        "gaps": 0,
        "latency": [],
        "until": None,
        "watermarks": [],
        "sockets": [],
        "last_at": 0.0,
    }
    ready = asyncio.Event()
    tasks = []
    for _ in range(clients):
        tasks.append(asyncio.create_task(client(url, stats, ready)))
        await asyncio.sleep(0.002)
    await asyncio.wait_for(ready.wait(), 180)
    stats["until"] = time.time() + seconds + 60  # a hard stop; normally they stop when quiet
    print(json.dumps({"event": "ready"}), flush=True)
    dog = asyncio.create_task(watchdog(stats))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    dog.cancel()
    errors = [repr(r) for r in results if isinstance(r, BaseException)][:3]
    print(
        json.dumps(
            {
                "event": "done",
                "received": stats["received"],
                "gaps": stats["gaps"],
                "latency": stats["latency"],
                "errors": errors,
                "watermarks": stats["watermarks"],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
