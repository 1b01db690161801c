#!/usr/bin/env python3
"""New mail while a spool backlog drains: sends one message every 1/rate s
over SMTP to a probe account and watches that account's INBOX with IMAP
IDLE over TLS. For each message it records the time from the 250 (the
server's promise) to the moment a UID FETCH after an EXISTS push shows it.
Runs until the file --stop exists, then waits up to --grace seconds for the
messages still in flight and prints counts and percentiles. A message never
seen counts as lost (and makes the exit status 1). Loopback only."""
import argparse, os, re, select, smtplib, socket, ssl, sys, threading, time

p = argparse.ArgumentParser()
p.add_argument("--smtp-port", type=int, required=True)
p.add_argument("--imaps-port", type=int, required=True)
p.add_argument("--user", required=True)
p.add_argument("--password", required=True)
p.add_argument("--rate", type=float, default=10.0)
p.add_argument("--stop", required=True, help="stop sending once this file exists")
p.add_argument("--grace", type=float, default=60.0)
a = p.parse_args()

sent = {}   # subject -> time of the 250
seen = {}   # subject -> time the IMAP watcher saw it
lock = threading.Lock()
done_sending = threading.Event()


def sender():
    n = 0
    with smtplib.SMTP("127.0.0.1", a.smtp_port, timeout=120) as s:
        s.ehlo("probe.example")
        next_at = time.monotonic()
        while not os.path.exists(a.stop):
            subj = f"probe-{n}"
            msg = (f"From: probe@probe.example\r\nTo: {a.user}\r\nSubject: {subj}\r\n\r\n"
                   f"new mail during the drain, number {n}\r\n")
            s.sendmail("probe@probe.example", [a.user], msg)
            with lock:
                sent[subj] = time.monotonic()
            n += 1
            next_at += 1.0 / a.rate
            time.sleep(max(0.0, next_at - time.monotonic()))
    done_sending.set()


class Imap:
    """A minimal IMAP client over TLS with its own buffer, so a read can wait
    with a timeout and then go on (imaplib's file object cannot, once a read
    has timed out)."""

    def __init__(self, port):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
        self.buf = b""
        self.n = 0
        self.line(None)  # greeting

    def fill(self, timeout):
        r, _, _ = select.select([self.s], [], [], timeout) if not self.s.pending() else ([1], 0, 0)
        if not r:
            return False
        chunk = self.s.recv(65536)
        if not chunk:
            raise SystemExit("IMAP connection closed")
        self.buf += chunk
        return True

    def line(self, timeout):
        """One response line with any literals inlined; None on timeout."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                if not self.fill(timeout):
                    if out or self.buf:
                        continue  # never give up inside a response
                    return None
            i = self.buf.index(b"\r\n") + 2
            part, self.buf = self.buf[:i], self.buf[i:]
            out += part
            lit = re.search(rb"\{(\d+)\}\r\n$", part)
            if not lit:
                return out
            n = int(lit.group(1))
            while len(self.buf) < n:
                self.fill(None)
            out += self.buf[:n]
            self.buf = self.buf[n:]

    def cmd(self, text):
        self.n += 1
        tag = f"p{self.n}".encode()
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while True:
            l = self.line(None)
            if l.startswith(tag + b" "):
                if not l.startswith(tag + b" OK"):
                    raise SystemExit(f"{text.split()[0]} failed: {l!r}")
                return lines
            lines.append(l)


def fetch_new(m, last_uid):
    lines = m.cmd(f"UID FETCH {last_uid + 1}:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    now = time.monotonic()
    top = last_uid
    for l in lines:
        u = re.search(rb"UID (\d+)", l)
        if not u or int(u.group(1)) <= last_uid:  # "n:*" always names the last message
            continue
        top = max(top, int(u.group(1)))
        subj = re.search(rb"Subject: (\S+)", l)
        if subj:
            with lock:
                seen.setdefault(subj.group(1).decode(), now)
    return top


def watcher():
    m = Imap(a.imaps_port)
    m.cmd(f'LOGIN "{a.user}" "{a.password}"')
    m.cmd("SELECT INBOX")
    last = fetch_new(m, 0)
    while True:
        with lock:
            finished = done_sending.is_set() and len(seen) >= len(sent)
        if finished or (done_sending.is_set() and time.monotonic() > grace_end[0]):
            break
        m.n += 1
        tag = f"p{m.n}".encode()
        m.s.sendall(tag + b" IDLE\r\n")
        l = m.line(None)
        if not l.startswith(b"+"):
            raise SystemExit(f"IDLE refused: {l!r}")
        deadline = time.monotonic() + 1.0
        while True:
            l = m.line(max(0.0, deadline - time.monotonic()))
            if l is None or b"EXISTS" in l:
                break
        m.s.sendall(b"DONE\r\n")
        while not m.line(None).startswith(tag + b" "):
            pass
        last = fetch_new(m, last)
    m.cmd("LOGOUT")


grace_end = [float("inf")]
ts = threading.Thread(target=sender)
tw = threading.Thread(target=watcher)
t0 = time.monotonic()
ts.start(); tw.start()
ts.join()
grace_end[0] = time.monotonic() + a.grace
tw.join()

lat = sorted(max(0.0, seen[s] - sent[s]) for s in sent if s in seen)
lost = len(sent) - len(lat)


def pct(q):
    if not lat:
        return float("nan")
    return lat[min(len(lat) - 1, int(q * len(lat)))]


print(f"probe_sent={len(sent)} probe_seen={len(lat)} probe_lost={lost} "
      f"p50={pct(0.50):.3f} p99={pct(0.99):.3f} max={lat[-1] if lat else float('nan'):.3f} "
      f"seconds={time.monotonic() - t0:.1f}")
sys.exit(1 if lost else 0)
