#!/usr/bin/env python3
"""Holds N IMAP connections in IDLE (bench/imap-idle-memory.sh; not a test).

Each connection: TLS, LOGIN, SELECT INBOX, IDLE. When all are idling,
prints "idling N" and waits for stdin to close, then ends them. Loopback
only. asyncio, so one process holds thousands.
"""

import argparse
import asyncio
import ssl
import sys


async def one(a, ctx, i, ready):
    r, w = await asyncio.open_connection("127.0.0.1", a.port, ssl=ctx)
    await r.readline()
    steps = ((b"a", b"LOGIN %s \"%s\"" % (a.user.encode(), a.password.encode())),
             (b"b", b"SELECT INBOX"))
    if a.stage == "greeting":
        ready.append(w)
        return
    for tag, cmd in steps[: 1 if a.stage == "login" else 2]:
        w.write(tag + b" " + cmd + b"\r\n")
        await w.drain()
        while True:
            line = await r.readline()
            if not line:
                raise RuntimeError(f"connection {i} closed")
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"connection {i}: {line!r}")
                break
    if a.stage != "idle":
        ready.append(w)
        return
    w.write(b"c IDLE\r\n")
    await w.drain()
    line = await r.readline()
    if not line.startswith(b"+"):
        raise RuntimeError(f"connection {i}: {line!r}")
    ready.append(w)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--connections", type=int, default=10000)
    p.add_argument("--parallel", type=int, default=64)
    # How far each connection goes: the TLS greeting, LOGIN, SELECT, IDLE.
    p.add_argument("--stage", choices=["greeting", "login", "select", "idle"], default="idle")
    a = p.parse_args()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ready = []
    sem = asyncio.Semaphore(a.parallel)

    async def guarded(i):
        async with sem:
            await one(a, ctx, i, ready)

    await asyncio.gather(*(guarded(i) for i in range(a.connections)))
    print(f"idling {len(ready)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in ready:
        w.close()


asyncio.run(main())
