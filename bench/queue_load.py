#!/usr/bin/env python3
"""Load and measurement for bench/queue-bench.sh (not a test).

fill:    submit a backlog (messages x recipients) to one destination domain.
measure: start fake MX servers for the backlog and the fresh domain, run the
         command that releases the backlog, then submit fresh mail at a
         steady rate. Reports, for the fresh mail, the time from acceptance
         (the server's 250 to our DATA) to the fake MX's 250, and how fast
         the backlog drained meanwhile.

The same script drives Tern and Postfix, so both see the same load and the
same fake MX servers. Loopback only.
"""

import argparse
import asyncio
import concurrent.futures
import smtplib
import ssl
import statistics
import subprocess
import sys
import threading
import time


def client(args):
    s = smtplib.SMTP("127.0.0.1", args.port, timeout=120)
    if args.starttls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s.starttls(context=ctx)
    if args.auth:
        user, pw = args.auth.split(":", 1)
        s.login(user, pw)
    return s


def message(sender, to, msgid, body):
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {msgid}\r\n"
        f"Message-ID: <{msgid}@bench.test>\r\n\r\n{body}\r\n"
    )


def fill(args):
    body = "x" * 70 + "\r\n"
    body = body * 40  # about 3 KiB

    def one(m):
        rcpts = [f"u{m}r{r}@{args.domain}" for r in range(args.rcpts)]
        s = client(args)
        s.sendmail(args.sender, rcpts, message(args.sender, rcpts[0], f"old{m}", body))
        s.quit()

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(args.messages)))
    print(f"filled {args.messages * args.rcpts} entries")


class FakeMx:
    """Accepts everything; records when each message got its 250."""

    def __init__(self):
        self.acks = {}  # message-id -> monotonic time of our 250
        self.rcpts = 0
        self.last_ack = 0.0
        self.lock = threading.Lock()

    async def handle(self, reader, writer):
        writer.write(b"220 fake.mx ESMTP\r\n")
        n = 0
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                cmd = line[:4].upper()
                if cmd == b"EHLO":
                    writer.write(b"250-fake.mx\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
                elif cmd == b"MAIL" or cmd == b"RSET":
                    n = 0
                    writer.write(b"250 2.0.0 ok\r\n")
                elif cmd == b"RCPT":
                    n += 1
                    writer.write(b"250 2.1.5 ok\r\n")
                elif cmd == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    msgid = ""
                    while True:
                        l = await reader.readline()
                        if not l or l == b".\r\n":
                            break
                        if not msgid and l[:11].lower() == b"message-id:":
                            msgid = l[11:].strip().decode(errors="replace").strip("<>")
                    now = time.monotonic()
                    with self.lock:
                        self.acks[msgid] = now
                        self.rcpts += n
                        self.last_ack = now
                    writer.write(b"250 2.0.0 queued\r\n")
                elif cmd == b"QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 2.0.0 ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def serve(port, mx, started):
    async def main():
        server = await asyncio.start_server(mx.handle, "127.0.0.1", port, backlog=512)
        started.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def measure(args):
    backlog, fresh = FakeMx(), FakeMx()
    for port, mx in ((args.backlog_port, backlog), (args.fresh_port, fresh)):
        ev = threading.Event()
        threading.Thread(target=serve, args=(port, mx, ev), daemon=True).start()
        ev.wait(10)
    t0 = time.monotonic()
    subprocess.run(args.release_cmd, shell=True, check=True, stdout=subprocess.DEVNULL)

    accepted = {}
    total = int(args.rate * args.seconds)

    def one(i):
        s = client(args)
        to = f"f{i}@{args.fresh_domain}"
        s.sendmail(args.sender, [to], message(args.sender, to, f"fresh{i}", "fresh mail"))
        accepted[f"fresh{i}@bench.test"] = time.monotonic()
        s.quit()

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        futs = []
        for i in range(total):
            target = t0 + i / args.rate
            d = target - time.monotonic()
            if d > 0:
                time.sleep(d)
            futs.append(ex.submit(one, i))
        for f in futs:
            f.result()

    deadline = t0 + args.max_seconds
    while time.monotonic() < deadline:
        with fresh.lock, backlog.lock:
            done_fresh = len(fresh.acks) >= total
            done_backlog = backlog.rcpts >= args.backlog_total
        if done_fresh and done_backlog:
            break
        time.sleep(0.2)

    lat = [
        (fresh.acks[m] - t) * 1000 for m, t in accepted.items() if m in fresh.acks
    ]
    drained = backlog.rcpts
    end = backlog.last_ack if drained else time.monotonic()
    secs = max(end - t0, 1e-9)
    print(
        f"fresh_sent={total} fresh_delivered={len(lat)} "
        f"fresh_p50_ms={pct(lat, 50):.0f} fresh_p99_ms={pct(lat, 99):.0f} "
        f"fresh_max_ms={max(lat) if lat else float('nan'):.0f} "
        f"backlog_delivered={drained}/{args.backlog_total} "
        f"drain_secs={secs:.1f} drain_per_sec={drained / secs:.0f}"
    )
    if len(lat) < total:
        sys.exit("not every fresh message was delivered in time")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["fill", "measure"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--starttls", action="store_true")
    p.add_argument("--auth")
    p.add_argument("--sender", required=True)
    p.add_argument("--domain", default="backlog.test")
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--rcpts", type=int, default=100)
    p.add_argument("--backlog-port", type=int)
    p.add_argument("--fresh-port", type=int)
    p.add_argument("--fresh-domain", default="fresh.test")
    p.add_argument("--release-cmd")
    p.add_argument("--rate", type=float, default=20)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--backlog-total", type=int, default=100000)
    p.add_argument("--max-seconds", type=float, default=600)
    args = p.parse_args()
    fill(args) if args.mode == "fill" else measure(args)


if __name__ == "__main__":
    main()
