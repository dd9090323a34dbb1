#!/usr/bin/env python3
"""GitHub's side of the two-hosts test (tests/hosts/two_hosts.sh); Python 3 stdlib only.

Every delivery goes to the HAProxy front (--bot), which spreads them over
both hosts. The hosts share one pending set in PostgreSQL, which this
driver reads with psql (--psql, --pg: a libpq connection string) to know
when a scenario has drained and which host holds which claim; outcomes are
judged on the fake GitHub's record of check runs. Each scenario uses
repositories and installations of its own (burstN/repo, raceN/repo,
killN/repo) and delivery ids starting with its name.

Subcommands:
  haproxy    wait until HAProxy's statistics show each named server in the
             wanted state (UP, DOWN)
  burst      one `opened` delivery for each of many pull requests at once;
             the set must drain at the fleet's combined write rate
  race       quick successive edits and comments on the same pull
             requests; no final check may be stale
  kill       deliveries, then SIGKILL to one host's PID 1 mid-burst while
             edits keep coming; nothing may be lost, and the dead host's
             claims must be finished by the other host soon after its lease
             runs out
  hosts      per host, from its journal: the scenario's deliveries received
             and check runs written; both hosts must have done their part

The scenarios print `# …` figures and one `ok - …` / `not ok - …` line
per check, write their figures as JSON (--out) and exit 1 on any failure.
Signed deliveries, pull request payloads and expected checks come from
tests/chaos/chaos.py and tests/systemd/webhooks.py. Only 127.0.0.1 is ever
contacted; every wait is bounded.
"""

import argparse
import csv
import io
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS / "systemd"))
sys.path.insert(0, str(TESTS / "chaos"))
import chaos  # noqa: E402 - tests/chaos/chaos.py
import webhooks  # noqa: E402 - tests/systemd/webhooks.py
from chaos import fake_call  # noqa: E402
from webhooks import is_2xx  # noqa: E402


# --- results ----------------------------------------------------------------


class Results:
    """`ok - …` / `not ok - …` lines as they come, and the exit status."""

    def __init__(self):
        self.failed = 0

    def check(self, ok, text):
        print(("ok - " if ok else "not ok - ") + text, flush=True)
        if not ok:
            self.failed += 1
        return ok

    @staticmethod
    def note(text):
        print(f"# {text}", flush=True)

    def status(self):
        return 1 if self.failed else 0


# --- the shared database ----------------------------------------------------


class Database:
    """psql against the hosts' database, as its owner."""

    def __init__(self, psql, conninfo):
        self.psql = psql
        self.conninfo = conninfo

    def rows(self, sql):
        done = subprocess.run(
            [self.psql, "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-d", self.conninfo, "-c", sql],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr.strip()}")
        return [line.split("\t") for line in done.stdout.splitlines() if line]

    def pending(self, prefix):
        """The scenario's pending rows: (repo, number, claimed_by or '')."""
        return [
            (repo, int(target), owner)
            for repo, target, owner in self.rows(
                "SELECT repo, target, coalesce(claimed_by, '') FROM pending "
                f"WHERE repo LIKE '{prefix}%' AND kind = 'pull_request'"
            )
        ]

    def dropped(self, prefix):
        return int(self.rows(f"SELECT count(*) FROM dropped WHERE repo LIKE '{prefix}%'")[0][0])

    def wait_drained(self, prefix, timeout):
        """Seconds until the scenario has no pending row, or None. Only a
        claim writes a check and a claim ends with its row, so an empty set
        after every delivery was answered means no write is still coming."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.pending(prefix):
                return time.monotonic() - started
            time.sleep(0.2)
        return None


# --- pull requests at the fake ----------------------------------------------


def make_pulls(prefix, first_installation, installations, prs, boxes):
    pulls = []
    for i in range(installations):
        repo = f"{prefix}{i + 1}/repo"
        for number in range(1, prs + 1):
            pulls.append(
                {
                    "installation": first_installation + i,
                    "repo": repo,
                    "number": number,
                    "head_sha": chaos.head_sha(repo, number),
                    "boxes": boxes,
                }
            )
    return pulls


def add_repos(fake, pulls):
    for installation, repo in sorted({(p["installation"], p["repo"]) for p in pulls}):
        fake_call("POST", f"{fake}/_fake/repos", {"installation_id": installation, "full_name": repo})


def seed_pulls(fake, args, prefix, ticked):
    """`args.prs` pull requests in each of `args.installations` repositories
    at the fake, each with two boxes of which `ticked` are ticked, and the
    check each one calls for."""
    pulls = make_pulls(prefix, args.first_installation, args.installations, args.prs, 2)
    add_repos(fake, pulls)
    for pull in pulls:
        pull["body"] = chaos.body_with(pull["number"], 2, ticked)
        put_pull(fake, pull, pull["body"])
        pull["expected"] = chaos.expected_check(pull["body"], [])
    return pulls


def deliver_opened(args, secret, prefix, pulls):
    """An `opened` delivery of every pull request through the front,
    interleaved over the installations so that each one's deliveries
    arrive at the same pace; the order sent and the records."""
    order = sorted(pulls, key=lambda p: (p["number"], p["installation"]))
    records = in_parallel(
        [lambda p=p: pr_delivery(args.bot, secret, prefix, p, "opened", p["body"]) for p in order],
        args.connections,
    )
    return order, records


def put_pull(fake, pull, body):
    fake_call(
        "PUT",
        f"{fake}/_fake/repos/{pull['repo']}/pulls/{pull['number']}",
        {"body": body, "head_sha": pull["head_sha"], "author": "octocat", "state": "open", "merged": False},
    )


def deliver(bot, secret, guid_prefix, event, action, payload, pull):
    """One signed delivery through the front; its record."""
    guid = f"{guid_prefix}-{uuid.uuid4()}"
    raw = json.dumps(payload, separators=(",", ":")).encode()
    sent_at = time.time()
    status, error, seconds = chaos.send_delivery(bot, secret, event, guid, raw)
    return {
        "guid": guid,
        "event": event,
        "action": action,
        "repo": pull["repo"],
        "number": pull["number"],
        "status": status,
        "error": error,
        "sent_at": sent_at,
        "seconds": round(seconds, 3),
    }


def pr_delivery(bot, secret, guid_prefix, pull, action, body, before=None):
    payload = chaos.pr_payload(action, pull, body)
    if before is not None:
        payload["changes"] = {"body": {"from": before}}
    return deliver(bot, secret, guid_prefix, "pull_request", action, payload, pull)


def in_parallel(jobs, connections):
    """Runs the callables of `jobs` on `connections` threads, in order of
    the list; their results, in the same order."""
    results = [None] * len(jobs)
    next_job = [0]
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                i = next_job[0]
                next_job[0] += 1
            if i >= len(jobs):
                return
            results[i] = jobs[i]()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def check_runs(fake, prefix):
    """The scenario's check runs at the fake, in arrival order."""
    _, runs = fake_call("GET", f"{fake}/_fake/check-runs")
    out = []
    for run in runs or []:
        body = run.get("body") or {}
        if (run.get("repo") or "").startswith(prefix) and body.get("name", run.get("name")) == chaos.CHECK_NAME:
            out.append(run)
    return out


def summary(run):
    body = run.get("body") or {}
    return {
        "title": (body.get("output") or {}).get("title"),
        "status": body.get("status"),
        "conclusion": body.get("conclusion"),
    }


def latest_checks(runs):
    """(repo, head_sha) → the latest check run's summary."""
    latest = {}
    for run in runs:
        latest[(run["repo"], run["head_sha"])] = summary(run)
    return latest


def judge_final_checks(results, pulls, runs):
    """Every pull request's latest check run must match its expected state;
    returns the number of stale ones."""
    latest = latest_checks(runs)
    stale = []
    missing = []
    for pull in pulls:
        got = latest.get((pull["repo"], pull["head_sha"]))
        if got is None:
            missing.append(pull)
        elif got != pull.get("expected"):
            stale.append((pull, got))
    for pull, got in stale[:10]:
        results.note(f"STALE {pull['repo']}#{pull['number']}: latest {json.dumps(got)}, expected {json.dumps(pull['expected'])}")
    for pull in missing[:10]:
        results.note(f"NO CHECK {pull['repo']}#{pull['number']}: expected {json.dumps(pull['expected'])}")
    results.check(
        not stale and not missing,
        f"{len(pulls) - len(stale) - len(missing)} of {len(pulls)} pull requests end with the right check, "
        f"{len(stale)} stale final checks, {len(missing)} without a check",
    )
    return len(stale) + len(missing)


def deliveries_answered(results, records):
    failed = [r for r in records if not is_2xx(r["status"])]
    for r in failed[:10]:
        results.note(f"failed {r['guid']} {r['repo']}#{r['number']}: status={r['status']} error={r['error']}")
    slowest = max((r["seconds"] for r in records), default=0)
    results.check(
        not failed,
        f"all {len(records)} deliveries through HAProxy answered 2xx ({len(failed)} not; slowest {slowest:.2f} s)",
    )


def write_out(path, figures):
    if path:
        with open(path, "w") as f:
            json.dump(figures, f)


# --- haproxy ----------------------------------------------------------------


def backend_rows(stats_url, backend):
    """The backend's rows of HAProxy's statistics (CSV), by server name."""
    with urllib.request.urlopen(stats_url, timeout=5) as response:
        text = response.read().decode()
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {row["svname"]: row for row in rows if row["pxname"] == backend}


def cmd_haproxy(args):
    wanted = dict(pair.split("=", 1) for pair in args.server)
    deadline = time.monotonic() + args.timeout
    states = {}
    while True:
        try:
            rows = backend_rows(args.stats, args.backend)
            states = {name: row["status"] for name, row in rows.items()}
        except (urllib.error.URLError, OSError, KeyError) as exc:
            rows, states = {}, {"error": str(exc)}
        if all(states.get(name, "").startswith(state) for name, state in wanted.items()):
            # wretr: requests tried again; wredis: of those, sent to another server.
            print(
                "HAProxy: "
                + ", ".join(
                    f"{name} {row['status']} ({row['stot']} requests, {row['wretr'] or 0} retried, "
                    f"{row['wredis'] or 0} redispatched)"
                    for name, row in sorted(rows.items())
                    if name in wanted
                )
            )
            return 0
        if time.monotonic() > deadline:
            print(f"HAProxy after {args.timeout:.0f} s: {states}, wanted {wanted}")
            return 1
        time.sleep(0.2)


# --- burst ------------------------------------------------------------------


def cmd_burst(args):
    """Many pull requests at once: each installation's writes are paced by
    the fleet ceiling or by the workers' own rates, whichever is lower; two
    hosts reach a rate one host alone cannot."""
    results = Results()
    fake = args.fake.rstrip("/")
    secret = open(args.secret_file, "rb").read()
    db = Database(args.psql, args.pg)
    prefix = "burst"
    pulls = seed_pulls(fake, args, prefix, ticked=1)
    started = time.time()
    _order, records = deliver_opened(args, secret, prefix, pulls)
    sent_for = time.time() - started
    results.note(f"sent {len(records)} deliveries over {args.installations} installations in {sent_for:.1f} s")
    deliveries_answered(results, records)

    # The ideal: every installation's writes at the fleet's combined rate.
    combined = args.write_rate * args.workers
    rate = min(combined, args.fleet_write_rate) if args.fleet_write_rate else combined
    one_host = args.write_rate * args.workers_per_host
    if args.fleet_write_rate:
        one_host = min(one_host, args.fleet_write_rate)
    ideal = (args.prs - 1) / rate
    alone = (args.prs - 1) / one_host
    drained = db.wait_drained(prefix, timeout=3 * alone + 30)
    runs = check_runs(fake, prefix)
    drain_time = time.time() - started
    results.check(drained is not None, f"the burst drained ({len(runs)} check runs; {drain_time:.1f} s after the first delivery)")

    low = ideal * 0.95 - 0.2
    high = ideal * 1.2 + 1.0
    spans = {}
    for installation in sorted({p["installation"] for p in pulls}):
        repo = next(p["repo"] for p in pulls if p["installation"] == installation)
        times = sorted(r["received_ms"] for r in runs if r["repo"] == repo)
        spans[installation] = (times[-1] - times[0]) / 1000.0 if len(times) >= 2 else None
    results.note(
        f"ideal per installation: {args.prs} writes at min(WRITE_RATE {args.write_rate:g} x {args.workers} workers, "
        f"FLEET_WRITE_RATE {args.fleet_write_rate or 'unset'}) = {rate:g}/s, first to last write {ideal:.1f} s; "
        f"one host alone: {one_host:g}/s, {alone:.1f} s"
    )
    results.note("first to last write: " + ", ".join(
        f"installation {i}: {s:.2f} s ({(args.prs - 1) / s:.2f}/s)" if s else f"installation {i}: -"
        for i, s in spans.items()))
    results.check(
        all(s is not None and low <= s <= high for s in spans.values()),
        f"each installation's {args.prs} writes took {low:.1f}-{high:.1f} s, the combined rate of both hosts "
        f"(one host alone needs {alone:.1f} s)",
    )
    counts = {}
    for run in runs:
        key = (run["repo"], run["head_sha"])
        counts[key] = counts.get(key, 0) + 1
    extra = sum(n - 1 for n in counts.values())
    results.check(extra == 0, f"one check run per pull request ({extra} extra)")
    judge_final_checks(results, pulls, runs)
    dropped = db.dropped(prefix)
    results.check(dropped == 0, f"no work given up ({dropped} dropped)")
    write_out(
        args.out,
        {
            "scenario": prefix,
            "writes": len(runs),
            "deliveries": len(records),
            "ideal_s": round(ideal, 2),
            "one_host_s": round(alone, 2),
            "spans_s": {str(k): v for k, v in spans.items()},
            "drain_s": round(drain_time, 1),
        },
    )
    return results.status()


# --- race -------------------------------------------------------------------


def cmd_race(args):
    """Quick successive edits of the same pull requests: deliveries of one
    pull request land on both hosts (HAProxy's round robin), while claims
    of it are held; the check each pull request ends with must describe
    its final state."""
    results = Results()
    fake = args.fake.rstrip("/")
    secret = open(args.secret_file, "rb").read()
    db = Database(args.psql, args.pg)
    prefix = "race"
    pulls = chaos.plan(args.seed, args.installations, args.prs, args.per_pr, args.duration)
    for pull in pulls:
        i = pull["installation"] - chaos.installation_id(0)
        pull["installation"] = args.first_installation + i - 1
        pull["repo"] = f"{prefix}{i}/repo"
        pull["head_sha"] = chaos.head_sha(pull["repo"], pull["number"])
    add_repos(fake, pulls)

    records = []
    lock = threading.Lock()
    errors = []
    start = time.monotonic()

    def run_lane(lane):
        # Every step of one pull request is in one lane, in order, as
        # GitHub sends them: change the pull request, then deliver.
        steps = sorted(((s["at"], k, p, s) for k, p in enumerate(lane) for s in p["steps"]), key=lambda x: x[:2])
        state = {id(p): {"ticked": 0, "comments": []} for p in lane}
        for at, _, pull, step in steps:
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            st = state[id(pull)]
            base = f"{fake}/_fake/repos/{pull['repo']}/pulls/{pull['number']}"
            try:
                before = chaos.body_with(pull["number"], pull["boxes"], st["ticked"])
                if step["kind"] == "edit":
                    st["ticked"] += 1
                body = chaos.body_with(pull["number"], pull["boxes"], st["ticked"])
                if step["kind"] == "comment":
                    _, created = fake_call("POST", f"{base}/issue-comments", {"author": "reviewer", "body": step["comment"]})
                    st["comments"].append(step["comment"])
                    payload = chaos.comment_payload(pull, body, (created or {}).get("id", 1), step["comment"])
                    record = deliver(args.bot, secret, prefix, "issue_comment", "created", payload, pull)
                else:
                    put_pull(fake, pull, body)
                    action = "opened" if step["kind"] == "opened" else "edited"
                    record = pr_delivery(args.bot, secret, prefix, pull, action, body, before if action == "edited" else None)
            except Exception as exc:  # noqa: BLE001 - reported, fails the run
                with lock:
                    errors.append(f"{pull['repo']}#{pull['number']}: {exc}")
                continue
            with lock:
                records.append(record)
        for pull in lane:
            st = state[id(pull)]
            pull["expected"] = chaos.expected_check(chaos.body_with(pull["number"], pull["boxes"], st["ticked"]), st["comments"])

    lanes = [pulls[k :: args.connections] for k in range(args.connections)]
    threads = [threading.Thread(target=run_lane, args=(lane,), daemon=True) for lane in lanes if lane]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.duration + 60)
    sent_for = time.monotonic() - start
    expected_count = len(pulls) * args.per_pr
    results.note(
        f"seed {args.seed}: {len(records)} deliveries over {len(pulls)} pull requests in {sent_for:.1f} s "
        f"({args.per_pr} each within {args.duration:g} s: opened, edits ticking boxes, comments with a task)"
    )
    for e in errors[:10]:
        results.note(f"error: {e}")
    results.check(
        len(records) == expected_count and not errors and not any(t.is_alive() for t in threads),
        f"{expected_count} deliveries sent, each after its change at the fake ({len(errors)} errors)",
    )
    deliveries_answered(results, records)
    drained = db.wait_drained(prefix, timeout=90)
    runs = check_runs(fake, prefix)
    results.check(
        drained is not None,
        f"the pending set drained ({len(runs)} check runs, {len(runs) / max(1, len(pulls)):.1f} per pull request)",
    )
    stale = judge_final_checks(results, pulls, runs)
    dropped = db.dropped(prefix)
    results.check(dropped == 0, f"no work given up ({dropped} dropped)")
    write_out(args.out, {"scenario": prefix, "writes": len(runs), "deliveries": len(records), "stale": stale})
    return results.status()


# --- kill -------------------------------------------------------------------


def process_gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def cmd_kill(args):
    """Deliveries, then one host's PID 1 gets SIGKILL while edits keep
    coming through HAProxy: the other host must take the dead host's claims
    once its lease has run out, and every pull request must end with the
    check of its final state."""
    results = Results()
    fake = args.fake.rstrip("/")
    secret = open(args.secret_file, "rb").read()
    db = Database(args.psql, args.pg)
    prefix = "kill"
    pulls = seed_pulls(fake, args, prefix, ticked=0)
    order, records = deliver_opened(args, secret, prefix, pulls)

    deadline = time.monotonic() + 60
    written = 0
    while time.monotonic() < deadline:
        written = len(check_runs(fake, prefix))
        if written >= args.kill_after_writes:
            break
        time.sleep(0.1)
    if written < args.kill_after_writes:
        results.check(False, f"{args.kill_after_writes} checks written before the kill (only {written} in 60 s)")
        return results.status()

    # Edits that tick every box of a third of the pull requests, sent while
    # the host dies: they land on the dead host until HAProxy sees it down.
    edited = [p for p in order if p["number"] % 3 == 0]
    rng = random.Random(args.seed)
    rng.shuffle(edited)
    edit_records = []
    edit_lock = threading.Lock()

    def edit(pull):
        before = pull["body"]
        body = chaos.body_with(pull["number"], 2, 2)
        put_pull(fake, pull, body)
        pull["body"] = body
        pull["expected"] = chaos.expected_check(body, [])
        record = pr_delivery(args.bot, secret, prefix, pull, "edited", body, before)
        with edit_lock:
            edit_records.append(record)
        return record

    interval = args.edit_spread / max(1, len(edited))

    def paced(i, pull):
        delay = edits_start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return edit(pull)

    edits_start = time.monotonic()
    edits_start_wall = time.time()
    editor = threading.Thread(
        target=lambda: in_parallel([lambda i=i, p=p: paced(i, p) for i, p in enumerate(edited)], 4), daemon=True
    )
    editor.start()
    while len(edit_records) < len(edited) // 4 and editor.is_alive():
        time.sleep(0.02)

    written_at_kill = len(check_runs(fake, prefix))
    killed_at = time.time()
    os.kill(args.kill_pid, 9)
    gone_by = time.monotonic() + 10
    while not process_gone(args.kill_pid) and time.monotonic() < gone_by:
        time.sleep(0.02)
    results.check(process_gone(args.kill_pid), f"SIGKILL to {args.host}'s PID 1 ({args.kill_pid}) ended the container")

    # What the dead host held: its workers' claims and their leases, read
    # before any survivor can reap them (the lease runs for seconds yet).
    rows = db.rows(
        "SELECT p.repo, p.target, o.owner FROM pending p JOIN owners o ON o.owner = p.claimed_by "
        f"WHERE o.host = '{args.host}'"
    )
    lease_rows = db.rows(
        "SELECT extract(epoch FROM max(lease_until)), count(*) FROM owners "
        f"WHERE host = '{args.host}'"
    )
    lease_end = float(lease_rows[0][0]) if lease_rows and lease_rows[0][0] else None
    stuck = {(repo, int(target)): owner for repo, target, owner in rows}
    results.note(
        f"killed {args.host} {killed_at - edits_start_wall:.1f} s into the edits, after {written_at_kill} of the "
        f"scenario's checks were written; it held {len(stuck)} claims "
        + (f"under leases ending {lease_end - killed_at:.1f} s after the kill" if lease_end else "(no live lease)")
    )
    results.check(len(stuck) > 0, f"the killed host held claims at the kill ({len(stuck)}): there is something to recover")

    # Follow the dead host's claims until they are done.
    taken = {}
    finished = {}
    editor_done_at = None
    deadline = time.monotonic() + args.lease + 60
    while time.monotonic() < deadline:
        now = time.time()
        pending = {(repo, number): owner for repo, number, owner in db.pending(prefix)}
        for key, owner in stuck.items():
            if key in finished:
                continue
            current = pending.get(key)
            if current is None:
                finished[key] = now
                taken.setdefault(key, now)
            elif current != owner and key not in taken and current:
                taken[key] = now
        if not editor.is_alive() and editor_done_at is None:
            editor_done_at = now
        if editor_done_at is not None and not pending and len(finished) == len(stuck):
            break
        time.sleep(0.2)
    editor.join(timeout=5)
    drained = editor_done_at is not None and not db.pending(prefix)
    runs = check_runs(fake, prefix)
    results.check(drained, f"the surviving host drained the pending set ({len(runs)} check runs)")

    records += edit_records
    if edit_records:
        sent = sorted(r["sent_at"] - killed_at for r in edit_records)
        results.note(f"{len(edit_records)} edits sent from {sent[0]:+.1f} s to {sent[-1]:+.1f} s around the kill")
    deliveries_answered(results, records)
    judge_final_checks(results, pulls, runs)

    after = sorted(t - killed_at for t in finished.values())
    took_over = sorted(t - killed_at for t in taken.values())
    if after:
        results.note(
            f"the dead host's claims were taken over {took_over[0]:.1f}-{took_over[-1]:.1f} s and finished "
            f"{after[0]:.1f}-{after[-1]:.1f} s after the kill"
            + (f" ({after[-1] - (lease_end - killed_at):+.1f} s after its lease ended)" if lease_end else "")
        )
    bound = args.lease + args.slack
    results.check(
        len(finished) == len(stuck) and bool(after) and after[-1] <= bound,
        f"the other host finished all {len(stuck)} claims of the killed host within {bound:g} s of the kill "
        f"(lease {args.lease:g} s + {args.slack:g} s): {len(finished)} finished, the last after "
        + (f"{after[-1]:.1f} s" if after else "-"),
    )
    dropped = db.dropped(prefix)
    results.check(dropped == 0, f"no work given up ({dropped} dropped)")
    write_out(
        args.out,
        {
            "scenario": prefix,
            "writes": len(runs),
            "claims_at_kill": len(stuck),
            "lease_end_s": round(lease_end - killed_at, 2) if lease_end else None,
            "finished_s": [round(t, 2) for t in after],
        },
    )
    return results.status()


# --- hosts ------------------------------------------------------------------


def cmd_hosts(args):
    """Per host: deliveries received ("Request received" with the
    scenario's delivery ids) and check runs written ("check run written"
    for its repositories), from each host's journal as JSON."""
    result = json.load(open(args.result))
    prefix = result["scenario"]
    received = {}
    written = {}
    for pair in args.journal:
        host, path = pair.split("=", 1)
        received[host] = written[host] = 0
        for entry in webhooks.journal_entries(path):
            message = webhooks.field(entry, "MESSAGE")
            if message == "Request received":
                if (webhooks.field(entry, "DELIVERY_ID") or "").startswith(prefix + "-"):
                    received[host] += 1
            elif message == "check run written":
                if (webhooks.field(entry, "REPOSITORY") or "").startswith(prefix):
                    written[host] += 1
    total_received = sum(received.values())
    total_written = sum(written.values())
    print(
        f"{prefix}: deliveries received "
        + ", ".join(f"{h} {n}" for h, n in received.items())
        + "; check runs written "
        + ", ".join(f"{h} {n}" for h, n in written.items())
        + f"; the fake recorded {result['writes']} check runs"
    )
    ok = total_written == result["writes"] and total_received >= result["deliveries"]
    for host in received:
        ok = ok and received[host] >= args.min_share * total_received
        ok = ok and written[host] >= args.min_share * total_written and written[host] > 0
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("haproxy")
    p.add_argument("--stats", required=True, help="the statistics page as CSV")
    p.add_argument("--backend", required=True)
    p.add_argument("--server", action="append", required=True, help="NAME=STATE (UP, DOWN)")
    p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(func=cmd_haproxy)

    def scenario(name, func):
        p = sub.add_parser(name)
        p.add_argument("--fake", required=True)
        p.add_argument("--bot", required=True, help="the HAProxy front")
        p.add_argument("--secret-file", required=True)
        p.add_argument("--psql", default="psql")
        p.add_argument("--pg", required=True, help="libpq connection string of the shared database")
        p.add_argument("--first-installation", type=int, required=True)
        p.add_argument("--installations", type=int, required=True)
        p.add_argument("--prs", type=int, required=True, help="pull requests per installation")
        p.add_argument("--connections", type=int, default=8)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--out")
        p.set_defaults(func=func)
        return p

    p = scenario("burst", cmd_burst)
    p.add_argument("--write-rate", type=float, required=True)
    p.add_argument("--fleet-write-rate", type=float, default=0)
    p.add_argument("--workers", type=int, required=True, help="workers of every host")
    p.add_argument("--workers-per-host", type=int, required=True)

    p = scenario("race", cmd_race)
    p.add_argument("--per-pr", type=int, default=7, help="deliveries per pull request")
    p.add_argument("--duration", type=float, default=1.5, help="seconds each pull request's deliveries span")

    p = scenario("kill", cmd_kill)
    p.add_argument("--kill-pid", type=int, required=True, help="the host's PID 1 (the container's systemd)")
    p.add_argument("--host", required=True, help="its host name, as in the owners table")
    p.add_argument("--kill-after-writes", type=int, required=True)
    p.add_argument("--edit-spread", type=float, default=3, help="seconds over which the edits are sent")
    p.add_argument("--lease", type=float, default=10)
    p.add_argument("--slack", type=float, default=5, help="seconds allowed past the lease")

    p = sub.add_parser("hosts")
    p.add_argument("--result", required=True, help="a scenario's --out")
    p.add_argument("--journal", action="append", required=True, help="HOST=PATH of journalctl -o json")
    p.add_argument("--min-share", type=float, default=0.2)
    p.set_defaults(func=cmd_hosts)

    args = parser.parse_args()
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
