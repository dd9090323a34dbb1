#!/usr/bin/env python3
"""A bounded attacker for tests/systemd/e2e.sh: stalled connections and
stalled large uploads against the bot on 127.0.0.1 (Python 3 stdlib only).

  attack.py --port PORT [--stalled N] [--uploads M] [--hold SECONDS]
            [--ready-file PATH]

Opens N connections that send a whole request head (declaring a 1000-byte
body) and then stall, and M uploads that declare GitHub's 25 MB maximum,
send up to 4 MiB and stall. Writes "ready" to --ready-file once all are
open, holds them for --hold seconds, closes them and prints one JSON line:
how many were opened, and how many the bot closed (or answered) meanwhile.

Bounded: N <= 5000, M <= 200, --hold <= 60 s, every socket operation has a
timeout, and only 127.0.0.1 is ever contacted.
"""

import argparse
import json
import resource
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


def head(declared):
    return (
        "POST / HTTP/1.1\r\nhost: bot\r\ncontent-type: application/json\r\n"
        "x-github-event: pull_request\r\nx-github-delivery: attack\r\n"
        "x-hub-signature-256: sha256=" + "0" * 64 + "\r\n"
        f"content-length: {declared}\r\n\r\n"
    ).encode()


def open_stalled(port):
    s = socket.create_connection((HOST, port), timeout=5)
    s.sendall(head(1000))
    s.setblocking(False)
    return s


def upload(port, sockets, lock):
    try:
        s = socket.create_connection((HOST, port), timeout=5)
    except OSError:
        return
    with lock:
        sockets.append(s)
    s.settimeout(1)
    chunk = b" " * 65536
    try:
        s.sendall(head(25 * 1000 * 1000))
        for _ in range(64):  # 4 MiB at most
            s.sendall(chunk)
    except OSError:
        pass  # the bot stopped reading (budget) or closed: stall here


def closed_by_peer(s):
    try:
        s.setblocking(False)
        return s.recv(4096, socket.MSG_PEEK) is not None
    except BlockingIOError:
        return False
    except OSError:
        return True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stalled", type=int, default=3000)
    parser.add_argument("--uploads", type=int, default=64)
    parser.add_argument("--hold", type=float, default=8)
    parser.add_argument("--ready-file")
    args = parser.parse_args()
    if not (0 <= args.stalled <= 5000 and 0 <= args.uploads <= 200 and 0 < args.hold <= 60):
        sys.exit("out of bounds: --stalled <= 5000, --uploads <= 200, --hold <= 60")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.stalled + args.uploads + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    started = time.monotonic()
    sockets, lock = [], threading.Lock()
    threads = [threading.Thread(target=upload, args=(args.port, sockets, lock), daemon=True)
               for _ in range(args.uploads)]
    for t in threads:
        t.start()
    failed = 0
    for _ in range(args.stalled):
        try:
            s = open_stalled(args.port)
        except OSError:
            failed += 1
            continue
        with lock:
            sockets.append(s)
    # Uploads have sent what the bot would take within a few seconds.
    for t in threads:
        t.join(timeout=max(0.1, 6 - (time.monotonic() - started)))
    opened = len(sockets)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("ready\n")
    time.sleep(max(0.0, args.hold - (time.monotonic() - started)))
    with lock:
        closed = sum(1 for s in sockets if closed_by_peer(s))
        for s in sockets:
            s.close()
    print(json.dumps({"opened": opened, "failed_to_open": failed, "closed_by_bot": closed,
                      "seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
