#!/usr/bin/env python3
"""A DNS server on 127.0.0.1 for benchmarks (not a test): answers TXT
queries for the names given as NAME=TEXT, NXDOMAIN for every other name,
so the sender checks run their real lookups without leaving the machine.
Usage: fake_dns.py PORT [NAME=TEXT ...]"""
import socket, struct, sys

port = int(sys.argv[1])
records = {}
for arg in sys.argv[2:]:
    name, text = arg.split("=", 1)
    records[name.lower().rstrip(".")] = text.encode()

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", port))
while True:
    data, addr = s.recvfrom(4096)
    if len(data) < 12:
        continue
    tid, flags = struct.unpack(">HH", data[:4])
    i, labels = 12, []
    while i < len(data) and data[i]:
        n = data[i]
        labels.append(data[i + 1 : i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    i += 1
    if i + 4 > len(data):
        continue
    qtype = struct.unpack(">H", data[i : i + 2])[0]
    question = data[12 : i + 4]
    name = ".".join(labels).lower()
    answers, rcode = b"", 3
    if name in records:
        rcode = 0
        if qtype == 16:
            text = records[name]
            rdata = b"".join(bytes([len(c)]) + c for c in (text[j : j + 255] for j in range(0, len(text), 255)))
            answers = b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, 60, len(rdata)) + rdata
    header = struct.pack(">HHHHHH", tid, 0x8180 | (flags & 0x0100) | rcode, 1, 1 if answers else 0, 0, 0)
    s.sendto(header + question + answers, addr)
