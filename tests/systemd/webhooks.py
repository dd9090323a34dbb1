#!/usr/bin/env python3
"""Traffic and bookkeeping for tests/systemd/e2e.sh and tests/deb/test.sh
(through harness.sh); Python 3 stdlib only. tests/chaos/chaos.py imports its
signed delivery and HTTP helpers.

Subcommands:
  send         deliver signed webhooks (ping or pull_request.opened) to the bot,
               one TCP connection each, and record what happened to every one
  deliveries   count "Request received" per DELIVERY_ID in `journalctl -o json`
               output: every accepted delivery exactly once, spread per worker
  seed         create a repository and open pull requests in the fake GitHub
  check-runs   wait until the fake GitHub recorded a check run for each seeded
               pull request, and report the rate at which they arrived
  wait-http    wait until a URL answers 200

Every network wait is bounded; every loop stops by itself. Only 127.0.0.1 is
ever contacted.
"""

import argparse
import hashlib
import hmac
import http.client
import json
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlsplit


def head_sha(repo, number):
    """The head commit of pull request `number`, the same in seed and send."""
    return hashlib.sha1(f"{repo}#{number}".encode()).hexdigest()


def pr_body(number):
    return f"Pull request {number} of the end-to-end test.\n\n- [x] first task\n- [ ] second task\n"


def payload(kind, installation, repo, number):
    owner, name = repo.split("/", 1)
    owner_obj = {"login": owner, "id": 1000, "type": "Organization"}
    sender = {"login": "octocat", "id": 1, "type": "User"}
    if kind == "ping":
        return {
            "zen": "Keep it logically awesome.",
            "hook_id": 1,
            "hook": {
                "type": "App",
                "id": 1,
                "active": True,
                "events": ["pull_request", "issue_comment"],
                "app_id": 1,
                "config": {"content_type": "json", "insecure_ssl": "0", "url": "https://example.test/"},
            },
            "sender": sender,
        }
    sha = head_sha(repo, number)
    return {
        "action": "opened",
        "number": number,
        "pull_request": {
            "id": 500000 + number,
            "number": number,
            "state": "open",
            "draft": False,
            "merged": False,
            "title": f"Pull request {number}",
            "body": pr_body(number),
            "user": {"login": "octocat", "id": 1, "type": "User"},
            "head": {"sha": sha, "ref": f"feature-{number}", "label": f"{owner}:feature-{number}"},
            "base": {"sha": "0" * 40, "ref": "main", "label": f"{owner}:main"},
            "html_url": f"https://github.example/{repo}/pull/{number}",
        },
        "repository": {
            "id": 7000,
            "name": name,
            "full_name": repo,
            "private": False,
            "owner": owner_obj,
            "default_branch": "main",
        },
        "installation": {"id": installation, "node_id": f"MDIz{installation}"},
        "sender": sender,
    }


def classify(exc):
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        return "reset"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


def is_2xx(status):
    return status is not None and 200 <= status < 300


def deliver(url, secret, event, body, delivery, timeout, user_agent="GitHub-Hookshot/e2e", extra_headers=None):
    """One delivery on its own connection (so that the kernel hands each one
    to whichever worker accepts next), signed with `secret` as GitHub signs
    them; `extra_headers` go before the signature. Returns (status or None,
    error). Also used by tests/chaos/chaos.py."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "1",
        **(extra_headers or {}),
        "X-Hub-Signature-256": signature,
        "Connection": "close",
    }
    try:
        conn.request("POST", parts.path or "/", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, None
    except Exception as exc:  # noqa: BLE001 - every failure is recorded
        return None, f"{classify(exc)}: {exc}"
    finally:
        conn.close()


def cmd_send(args):
    secret = open(args.secret_file, "rb").read()
    jobs = []
    if args.kind == "ping":
        count = args.count if args.count else int(args.duration * args.rate)
        for i in range(count):
            jobs.append(("ping", payload("ping", None, "e2e/none", 0), f"{args.id_prefix}-{i:05d}-{uuid.uuid4()}"))
    else:
        for i in range(args.count):
            number = args.first_pr + i
            jobs.append(
                (
                    "pull_request",
                    payload("pr", args.installation, args.repo, number),
                    f"{args.id_prefix}-{number:05d}-{uuid.uuid4()}",
                )
            )
    results = [None] * len(jobs)
    start = time.monotonic()
    next_index = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(jobs):
                return
            if args.rate:
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            event, body, delivery = jobs[i]
            status, error = deliver(args.url, secret, event, json.dumps(body).encode(), delivery, args.timeout)
            results[i] = {"id": delivery, "status": status, "error": error, "t": time.time()}

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if is_2xx(r["status"])]
    failed = [r for r in results if not is_2xx(r["status"])]
    summary = {
        "sent": len(results),
        "ok": len(ok),
        "failed": len(failed),
        "failures": failed[:20],
        "ok_ids": [r["id"] for r in ok],
        "seconds": round(time.monotonic() - start, 2),
        "finished_at": time.time(),
    }
    with open(args.out, "w") as f:
        json.dump(summary, f)
    print(f"sent {summary['sent']} in {summary['seconds']}s: {summary['ok']} accepted, {summary['failed']} failed")
    for r in failed[:10]:
        print(f"  failed {r['id']}: status={r['status']} error={r['error']}")
    return 0


def journal_entries(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            yield entry


def field(entry, name):
    value = entry.get(name)
    if isinstance(value, list):  # a field repeated, or binary data
        value = value[0] if value and isinstance(value[0], str) else None
    return value


def cmd_deliveries(args):
    sent = json.load(open(args.sent))
    expected = set(sent["ok_ids"])
    counts = {}
    workers = {}
    for entry in journal_entries(args.journal):
        if field(entry, "MESSAGE") != "Request received":
            continue
        delivery = field(entry, "DELIVERY_ID") or ""
        if not delivery.startswith(args.prefix):
            continue
        counts[delivery] = counts.get(delivery, 0) + 1
        worker = field(entry, "WORKER") or field(entry, "_SYSTEMD_UNIT") or "?"
        workers[worker] = workers.get(worker, 0) + 1
    missing = sorted(expected - counts.keys())
    duplicated = sorted(d for d, n in counts.items() if n > 1)
    unexpected = sorted(counts.keys() - expected)
    spread = " ".join(f"{w}:{n}" for w, n in sorted(workers.items()))
    print(
        f"{len(expected)} accepted, {len(counts)} logged once or more; missing {len(missing)}, "
        f"logged twice or more {len(duplicated)}, logged but not accepted {len(unexpected)}; per worker {spread}"
    )
    for d in missing[:5]:
        print(f"  missing {d}")
    for d in duplicated[:5]:
        print(f"  {counts[d]} times {d}")
    for d in unexpected[:5]:
        print(f"  logged but failed for the sender: {d}")
    result = {
        "missing": len(missing),
        "duplicated": len(duplicated),
        "unexpected": len(unexpected),
        "workers": workers,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f)
    exactly_once = not missing and not duplicated and (args.allow_unexpected or not unexpected)
    spread_ok = args.min_workers == 0 or len([n for n in workers.values() if n > 0]) >= args.min_workers
    return 0 if exactly_once and spread_ok else 1


def http_json(method, url, body=None, timeout=10):
    """`method` on `url` with `body` as JSON; returns (status, decoded answer
    or None). Also used by tests/chaos/chaos.py."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read()
        return response.status, (json.loads(text) if text.strip() else None)


def cmd_seed(args):
    base = args.fake.rstrip("/")
    http_json("POST", f"{base}/_fake/repos", {"installation_id": args.installation, "full_name": args.repo})
    for number in range(args.first_pr, args.first_pr + args.prs):
        http_json(
            "PUT",
            f"{base}/_fake/repos/{args.repo}/pulls/{number}",
            {
                "body": pr_body(number),
                "head_sha": head_sha(args.repo, number),
                "author": "octocat",
                "state": "open",
                "merged": False,
            },
        )
    print(f"seeded {args.repo} (installation {args.installation}) with pull requests {args.first_pr}..{args.first_pr + args.prs - 1}")
    return 0


def record_installation(record):
    for key in ("installation_id", "installation"):
        value = record.get(key)
        if isinstance(value, dict):
            value = value.get("id")
        if value is not None:
            return int(value)
    return None


def record_body(record):
    body = record.get("body")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError:
            body = {}
    return body or {}


def cmd_check_runs(args):
    base = args.fake.rstrip("/")
    wanted = {head_sha(args.repo, n) for n in range(args.first_pr, args.first_pr + args.prs)}
    deadline = time.monotonic() + args.timeout
    first = {}
    records = []
    while True:
        _, records = http_json("GET", f"{base}/_fake/check-runs")
        if isinstance(records, dict):  # {"check_runs": [...]} also accepted
            records = records.get("check_runs") or records.get("items") or []
        first = {}
        for record in records:
            if args.installation is not None and record_installation(record) != args.installation:
                continue
            sha = record.get("head_sha") or record_body(record).get("head_sha")
            if sha in wanted:
                ms = int(record["received_ms"])
                first[sha] = min(ms, first.get(sha, ms))
        if len(first) >= len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    times = sorted(first.values())
    result = {"expected": len(wanted), "received": len(first), "received_ms": times}
    if len(times) >= 2 and times[-1] > times[0]:
        result["rate_per_s"] = round((len(times) - 1) * 1000.0 / (times[-1] - times[0]), 2)
    if args.after_ms is not None:
        # received_ms counts from the fake's start; --fake-t0-ms is the wall
        # clock (ms) just before the fake was started, so this errs towards
        # counting a write as earlier than it was.
        result["after"] = len([t for t in times if args.fake_t0_ms + t > args.after_ms])
    with open(args.out, "w") as f:
        json.dump(result, f)
    text = f"{result['received']} of {result['expected']} pull requests got a check run"
    if "rate_per_s" in result:
        span = (times[-1] - times[0]) / 1000.0
        text += f", first to last {span:.2f}s: {result['rate_per_s']}/s"
    if "after" in result:
        text += f"; {result['after']} arrived after the stop was requested"
    print(text)
    if len(first) < len(wanted) and not records:
        print("  the fake recorded no check run at all")
    elif len(first) < len(wanted):
        print(f"  one recorded check run: {json.dumps(records[-1])[:400]}")
    return 0 if len(first) >= len(wanted) else 1


def cmd_wait_http(args):
    deadline = time.monotonic() + args.timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(args.url, timeout=5) as response:
                if response.status == 200:
                    return 0
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.3)
    print(f"{args.url} did not answer 200 within {args.timeout}s: {last}", file=sys.stderr)
    return 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("send")
    p.add_argument("--url", required=True)
    p.add_argument("--secret-file", required=True)
    p.add_argument("--kind", choices=["ping", "pr"], default="ping")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--duration", type=float, default=0, help="seconds of traffic at --rate (ping only)")
    p.add_argument("--rate", type=float, default=0, help="deliveries per second; 0: as fast as possible")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--timeout", type=float, default=15)
    p.add_argument("--id-prefix", required=True)
    p.add_argument("--installation", type=int)
    p.add_argument("--repo", default="e2e/none")
    p.add_argument("--first-pr", type=int, default=1)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("deliveries")
    p.add_argument("--journal", required=True)
    p.add_argument("--sent", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--min-workers", type=int, default=0)
    p.add_argument("--allow-unexpected", action="store_true")
    p.add_argument("--out")
    p.set_defaults(func=cmd_deliveries)

    def pull_requests(p, installation_required):
        """The seeded pull requests, the same options for seed and check-runs."""
        p.add_argument("--fake", required=True)
        p.add_argument("--installation", type=int, required=installation_required)
        p.add_argument("--repo", required=True)
        p.add_argument("--first-pr", type=int, default=1)
        p.add_argument("--prs", type=int, required=True)

    p = sub.add_parser("seed")
    pull_requests(p, installation_required=True)
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("check-runs")
    pull_requests(p, installation_required=False)
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--after-ms", type=int, help="wall clock (ms since the epoch): count the writes after it")
    p.add_argument("--fake-t0-ms", type=int, default=0, help="wall clock (ms) when the fake started")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_check_runs)

    p = sub.add_parser("wait-http")
    p.add_argument("--url", required=True)
    p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(func=cmd_wait_http)

    args = parser.parse_args()
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
