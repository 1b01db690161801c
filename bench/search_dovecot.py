"""Peer side of bench/search-bench.sh: the same kind of 100,000-message
mailbox as core/benches/search.rs (same vocabulary, skew, sizes and
planted words; generated here, so statistically equal, not byte-equal),
written as a Maildir for Dovecot, then the same queries as IMAP
UID SEARCH TEXT over TLS. Prints one line per query, like the Rust bench.

usage: search_dovecot.py fill MAILDIR N
       search_dovecot.py measure PORT USER PASSWORD
"""
import os
import ssl
import statistics
import sys
import time
import imaplib

SYLL = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "da", "go", "zu"]
VOCAB = [a + b + c for a in SYLL for b in SYLL for c in SYLL]


class Words:
    def __init__(self):
        self.state = 0x2545F4914F6CDD1D

    def next(self):
        s = self.state
        s ^= (s << 13) & 0xFFFFFFFFFFFFFFFF
        s ^= s >> 7
        s ^= (s << 17) & 0xFFFFFFFFFFFFFFFF
        self.state = s
        return s

    def word(self):
        u = (self.next() % 10000) / 10000.0
        return VOCAB[min(int(u * u * len(VOCAB)), len(VOCAB) - 1)]

    def sentence(self, n):
        return " ".join(self.word() for _ in range(n))


def fill(maildir, n):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    w = Words()
    for i in range(n):
        body = w.sentence(120)
        if i % max(n // 10, 1) == 0:
            body += " zebra"
        if i % 100 == 7:
            body += " harbour"
        raw = (
            f"From: Sender {i % 500} <sender{i % 500}@remote{i % 37}.example>\r\n"
            f"To: reader@bench.test\r\nSubject: {w.sentence(6)}\r\n"
            f"Message-ID: <{i}@bench.test>\r\n\r\n{body}\r\n"
        )
        name = f"{1700000000 + i}.M{i}P1.bench,S={len(raw)}:2,"
        with open(os.path.join(maildir, "cur", name), "w") as f:
            f.write(raw)


def measure(port, user, password):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx)
    m.login(user, password)
    t = time.time()
    m.select("INBOX", readonly=True)
    print(f"select (first, builds Dovecot's index) {1000 * (time.time() - t):.0f} ms")
    common = VOCAB[0]
    queries = [
        ("rare word (10 hits)", ["zebra"]),
        ("1% word", ["harbour"]),
        ("most common word, first page", [common]),
        ("sender domain", ["remote7"]),
        ("two words", ["harbour", common]),
    ]
    for label, words in queries:
        crit = " ".join(f"TEXT {w}" for w in words)
        times = []
        hits = 0
        for _ in range(5):
            t = time.time()
            typ, data = m.uid("SEARCH", None, crit)
            times.append(1000 * (time.time() - t))
            hits = len(data[0].split())
        q = " ".join(words)
        print(f"search {label:<30} q={q:<16} hits={hits:<7} p50={statistics.median(times):.1f} ms max={max(times):.1f} ms")
    m.logout()


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        fill(sys.argv[2], int(sys.argv[3]))
    else:
        measure(*sys.argv[2:5])
