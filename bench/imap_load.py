#!/usr/bin/env python3
"""IMAP load for bench/imap-bench.sh (not a test).

fill:    APPEND n messages to INBOX.
measure: C client processes, each logged in over TLS, run a mix of
         SELECT, FETCH (flags and a body), STORE and SEARCH for a fixed
         time; prints operations per second. The same script drives Tern
         and Dovecot. Loopback only.
"""

import argparse
import imaplib
import multiprocessing
import random
import ssl
import time


def connect(a):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", a.port, ssl_context=ctx)
    m.login(a.user, a.password)
    return m


def fill(a):
    m = connect(a)
    body = ("x" * 70 + "\r\n") * 40
    for i in range(a.messages):
        msg = (
            f"From: sender{i % 17}@example.org\r\nTo: {a.user}\r\n"
            f"Subject: message {i} about topic{i % 13}\r\n"
            f"Message-ID: <m{i}@bench.test>\r\n\r\n{body}"
        ).encode()
        m.append("INBOX", None, None, msg)
    m.logout()
    print(f"filled {a.messages}")


def worker(a, seconds, q):
    m = connect(a)
    rnd = random.Random()
    ops = 0
    end = time.monotonic() + seconds
    typ, data = m.select("INBOX")
    n = int(data[0])
    while time.monotonic() < end:
        r = rnd.random()
        i = rnd.randint(1, n)
        if r < 0.1:
            m.select("INBOX")
        elif r < 0.5:
            m.fetch(f"{i}:{min(n, i + 20)}", "(UID FLAGS RFC822.SIZE)")
        elif r < 0.7:
            m.fetch(str(i), "(BODY.PEEK[])")
        elif r < 0.85:
            m.store(str(i), "+FLAGS" if rnd.random() < 0.5 else "-FLAGS", "(\\Flagged)")
        else:
            m.search(None, f"SUBJECT topic{rnd.randint(0, 12)}")
        ops += 1
    m.logout()
    q.put(ops)


def measure(a):
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=worker, args=(a, a.seconds, q)) for _ in range(a.clients)]
    t0 = time.monotonic()
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    secs = time.monotonic() - t0
    print(f"clients={a.clients} ops={total} secs={secs:.1f} ops_per_sec={total / a.seconds:.0f}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["fill", "measure"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--seconds", type=float, default=20)
    a = p.parse_args()
    fill(a) if a.mode == "fill" else measure(a)


if __name__ == "__main__":
    main()
