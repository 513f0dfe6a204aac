"""The baseline for ``ioc bench fanout``: a bare `websockets` server broadcasting the same kind
of messages at the same rate to the same clients. Prints one JSON line when done.

Usage: python -m ioc.bench.fanout_bare PORT CLIENTS RATE SECONDS [DEFLATE]
(DEFLATE 1, the library's default: permessage-deflate as clients offer it; 0: off)
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from datetime import UTC, datetime

from websockets.asyncio.server import broadcast, serve


async def main(port: int, clients: int, rate: float, seconds: float, deflate: bool = True) -> None:
    connected: set = set()  # type: ignore[type-arg]
    full = asyncio.Event()

    async def handler(ws) -> None:  # type: ignore[no-untyped-def]
        connected.add(ws)
        if len(connected) >= clients:
            full.set()
        try:
            await ws.wait_closed()
        finally:
            connected.discard(ws)

    compression = "deflate" if deflate else None
    async with serve(handler, "127.0.0.1", port, max_queue=None, compression=compression):
        print(json.dumps({"event": "listening"}), flush=True)
        await asyncio.wait_for(full.wait(), 180)
        await asyncio.sleep(1.0)
        before = resource.getrusage(resource.RUSAGE_SELF)
        sent, start, n = 0, time.monotonic(), 0
        while time.monotonic() - start < seconds:
            n += 1
            msg = json.dumps(
                {
                    "type": "event",
                    "id": n,
                    "kind": "bench.tick",
                    "time": datetime.now(UTC).isoformat(),
                    "actor": "bench",
                    "device_id": None,
                    "area_id": None,
                    "severity": None,
                    "data": {"n": n},
                }
            )
            broadcast(connected, msg)
            sent += len(connected)
            await asyncio.sleep(max(0.0, n / rate - (time.monotonic() - start)))
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(json.dumps({"event": "done", "events": n, "sent": sent, "cpu_s": cpu}), flush=True)
        await asyncio.sleep(3)


if __name__ == "__main__":
    deflate = len(sys.argv) < 6 or sys.argv[5] == "1"
    asyncio.run(
        main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), deflate)
    )
