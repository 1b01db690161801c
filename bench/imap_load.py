#!/usr/bin/env python3
"""IMAP load for bench/imap-bench.sh (not a test).

fill:    APPEND n messages to INBOX.
measure: C client processes, each logged in over TLS, run a mix of
         SELECT, FETCH (flags and a body), STORE and SEARCH for a fixed
         time (--mix write: a fifth of the operations are APPEND, and
         STORE \\Deleted + UID EXPUNGE of the worker's own appended
         messages); prints operations per second and error answers. The same script drives Tern
         and Dovecot. Loopback only.
"""

import argparse
import imaplib
import multiprocessing
import random
import re
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
    for i in range(a.messages):
        m.append("INBOX", None, None, message(i, a.user))
    m.logout()
    print(f"filled {a.messages}")


def message(i, user):
    body = ("x" * 70 + "\r\n") * 40
    return (
        f"From: sender{i % 17}@example.org\r\nTo: {user}\r\n"
        f"Subject: message {i} about topic{i % 13}\r\n"
        f"Message-ID: <m{i}@bench.test>\r\n\r\n{body}"
    ).encode()


def appenduid(data):
    # [APPENDUID <uidvalidity> <uid>] (RFC 4315), which both servers send.
    m = re.search(rb"APPENDUID \d+ (\d+)", data[0] if data and data[0] else b"")
    return int(m.group(1)) if m else None


def worker(a, seconds, q):
    m = connect(a)
    rnd = random.Random()
    ops = 0
    errors = 0
    end = time.monotonic() + seconds
    typ, data = m.select("INBOX")
    n = int(data[0])
    mine = []  # UIDs this worker appended and may expunge again
    serial = 0
    while time.monotonic() < end:
        r = rnd.random()
        i = rnd.randint(1, n)
        try:
            if a.mix == "write" and r < 0.2:
                # The write mix: APPEND and EXPUNGE of this worker's own
                # messages, so the first n sequence numbers stay put.
                if r < 0.1 or not mine:
                    serial += 1
                    typ, data = m.append("INBOX", None, None, message(serial, a.user))
                    u = appenduid(data)
                    if typ != "OK":
                        errors += 1
                    elif u:
                        mine.append(u)
                else:
                    u = mine.pop(rnd.randrange(len(mine)))
                    typ1, _ = m.uid("STORE", str(u), "+FLAGS.SILENT", "(\\Deleted)")
                    typ2, _ = m.uid("EXPUNGE", str(u))
                    if typ1 != "OK" or typ2 != "OK":
                        errors += 1
                ops += 1
                continue
            if r < 0.1:
                typ, _ = m.select("INBOX")
            elif r < 0.5:
                typ, _ = m.fetch(f"{i}:{min(n, i + 20)}", "(UID FLAGS RFC822.SIZE)")
            elif r < 0.7:
                typ, _ = m.fetch(str(i), "(BODY.PEEK[])")
            elif r < 0.85:
                typ, _ = m.store(str(i), "+FLAGS" if rnd.random() < 0.5 else "-FLAGS", "(\\Flagged)")
            else:
                typ, _ = m.search(None, f"SUBJECT topic{rnd.randint(0, 12)}")
            if typ != "OK":
                errors += 1
        except imaplib.IMAP4.error:
            # A NO or BAD answer (imaplib raises on some): counted, and
            # the session goes on.
            errors += 1
        ops += 1
    m.logout()
    q.put((ops, errors))


def measure(a):
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=worker, args=(a, a.seconds, q)) for _ in range(a.clients)]
    t0 = time.monotonic()
    for p in ps:
        p.start()
    results = [q.get() for _ in ps]
    for p in ps:
        p.join()
    secs = time.monotonic() - t0
    total = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    print(
        f"clients={a.clients} mix={a.mix} ops={total} errors={errors} secs={secs:.1f} "
        f"ops_per_sec={total / a.seconds:.0f}"
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["fill", "measure"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--mix", choices=["read", "write"], default="read")
    a = p.parse_args()
    fill(a) if a.mode == "fill" else measure(a)


if __name__ == "__main__":
    main()
