#!/usr/bin/env python3
"""SMTP acceptance load: N concurrent clients, each on one connection,
send M messages of a given size to one recipient. Prints messages/second
counted from the first connect to the last 250. Every 250 is a message the
server claims is durable, so this measures durable acceptance."""
import argparse, smtplib, threading, time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--rcpt", required=True)
p.add_argument("--clients", type=int, default=20)
p.add_argument("--messages", type=int, default=50, help="per client")
p.add_argument("--size", type=int, default=4096)
p.add_argument("--starttls", action="store_true")
p.add_argument("--auth", help="user:password (submission)")
p.add_argument("--sender", default="bench@load.example")
a = p.parse_args()

line = ("x" * 76 + "\r\n")
body = (line * (a.size // len(line) + 1))[: a.size]
msg = f"From: {a.sender}\r\nTo: {a.rcpt}\r\nSubject: bench\r\n\r\n{body}"
ok, failed = [0], [0]
lock = threading.Lock()

def client():
    with smtplib.SMTP("127.0.0.1", a.port, timeout=120) as s:
        s.ehlo("load.example")
        if a.starttls:
            import ssl
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s.starttls(context=ctx)
            s.ehlo("load.example")
        if a.auth:
            user, pw = a.auth.split(":", 1)
            s.login(user, pw)
        for _ in range(a.messages):
            try:
                s.sendmail(a.sender, [a.rcpt], msg)
                with lock: ok[0] += 1
            except smtplib.SMTPException:
                with lock: failed[0] += 1

t0 = time.monotonic()
threads = [threading.Thread(target=client) for _ in range(a.clients)]
for t in threads: t.start()
for t in threads: t.join()
dt = time.monotonic() - t0
print(f"accepted={ok[0]} failed={failed[0]} seconds={dt:.2f} msgs_per_sec={ok[0]/dt:.1f}")
