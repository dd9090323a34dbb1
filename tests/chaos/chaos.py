#!/usr/bin/env python3
"""GitHub's side of the chaos test (tests/chaos/chaos.sh); Python 3 stdlib only.

Subcommands:
  deliver    plan and perform the test's deliveries: before each one, change
             the pull request in the fake GitHub as GitHub would (open it,
             tick a box of its body, add a comment with a task), then send the
             signed delivery to the bot with GitHub's 10 s timeout, several
             connections at a time, and record the outcome in the fake's
             delivery log (POST /_fake/deliveries), as GitHub's delivery log
             would; writes everything sent and each pull request's final state
             to a JSON state file
  redeliver  perform the redeliveries the bot asked the fake for
             (GET /_fake/redeliveries): the stored payload again, same GUID,
             recorded with redelivery=true
  settle     wait until the fleet's pending set is empty (GET /health on the
             bot's socket) and the fake's check runs stopped changing
  verify     compare every pull request's latest check run at the fake with
             its final state; print the figures and one `ok - …` /
             `not ok - …` line per check; exit 1 on any failure

Signed deliveries and the HTTP helper come from tests/systemd/webhooks.py,
which also serves chaos.sh's wait-http. Only 127.0.0.1 is ever contacted;
every wait is bounded.
"""

import argparse
import hashlib
import json
import random
import sys
import threading
import time
import urllib.error
import uuid
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "systemd"))
import webhooks  # noqa: E402 - tests/systemd/webhooks.py
from webhooks import http_json, is_2xx  # noqa: E402

DELIVERY_TIMEOUT = 10.0  # GitHub gives up on a delivery after 10 s.
CHECK_NAME = "task-list-completed"


# --- small helpers ----------------------------------------------------------


def fake_call(method, url, body=None, tries=5):
    """An admin call to the fake; retried a little (it runs on the host and
    never goes away, but a busy moment must not fail the whole test)."""
    last = None
    for attempt in range(tries):
        try:
            return http_json(method, url, body)
        except (urllib.error.URLError, OSError) as exc:
            last = exc
            time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"{method} {url}: {last}")


def head_sha(repo, number):
    return hashlib.sha1(f"chaos:{repo}#{number}".encode()).hexdigest()


def count_tasks(texts):
    """(done, total) of the `- [ ]` / `- [x]` lines of the given documents:
    the only task syntax this test writes."""
    done = total = 0
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("- [ ] "):
                total += 1
            elif line.startswith("- [x] "):
                total += 1
                done += 1
    return done, total


def expected_check(body, comments):
    done, total = count_tasks([body] + comments)
    complete = done == total
    return {
        "title": f"{done} / {total} tasks completed",
        "status": "completed" if complete else "in_progress",
        "conclusion": "success" if complete else None,
    }


def send_delivery(bot_url, secret, event, guid, body):
    """One delivery on its own connection, as GitHub sends them, with
    GitHub's timeout. Returns (status or None, error, seconds)."""
    started = time.monotonic()
    status, error = webhooks.deliver(
        bot_url,
        secret,
        event,
        body,
        guid,
        DELIVERY_TIMEOUT,
        user_agent="GitHub-Hookshot/chaos",
        extra_headers={
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-GitHub-Hook-Installation-Target-ID": "1",
        },
    )
    return status, error, time.monotonic() - started


# --- the plan ---------------------------------------------------------------


def installation_id(i):
    return 1000 + i


def plan(seed, installations, prs_per_installation, deliveries_per_pr, duration):
    """Every pull request's deliveries: `opened` first, then edits that tick
    one more box of the body and comments that add a task, at random times
    over `duration` seconds. Even-numbered pull requests end with every task
    ticked (check: success); odd ones end with one task open, either an
    unticked box of the body or an unticked task in a comment."""
    rng = random.Random(seed)
    pulls = []
    for i in range(1, installations + 1):
        repo = f"org{i}/repo"
        for number in range(1, prs_per_installation + 1):
            later = deliveries_per_pr - 1
            comments = rng.randint(1, min(3, later))
            edits = later - comments
            ends_complete = number % 2 == 0
            open_in_comment = not ends_complete and rng.random() < 0.5
            boxes = edits + (0 if ends_complete or open_in_comment else 1)
            kinds = ["edit"] * edits + ["comment"] * comments
            rng.shuffle(kinds)
            times = sorted(rng.uniform(0, duration) for _ in range(deliveries_per_pr))
            steps = [{"kind": "opened", "at": times[0]}]
            comment_index = 0
            for kind, at in zip(kinds, times[1:]):
                step = {"kind": kind, "at": at}
                if kind == "comment":
                    comment_index += 1
                    last_comment = comment_index == comments
                    mark = " " if open_in_comment and last_comment else "x"
                    step["comment"] = (
                        f"Review note {comment_index} on #{number}.\n\n"
                        f"- [{mark}] reviewer item {comment_index}\n"
                    )
                steps.append(step)
            pulls.append(
                {
                    "installation": installation_id(i),
                    "repo": repo,
                    "number": number,
                    "head_sha": head_sha(repo, number),
                    "boxes": boxes,
                    "steps": steps,
                }
            )
    return pulls


def body_with(number, boxes, ticked):
    lines = [f"Pull request {number} of the chaos test.", ""]
    for k in range(1, boxes + 1):
        lines.append(f"- [{'x' if k <= ticked else ' '}] task {k}")
    return "\n".join(lines) + "\n"


def pr_payload(action, pull, body):
    repo = pull["repo"]
    owner, name = repo.split("/", 1)
    number = pull["number"]
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "id": 900000 + pull["installation"] * 100 + number,
            "number": number,
            "state": "open",
            "draft": False,
            "merged": False,
            "title": "Update the task list",
            "body": body,
            "user": {"login": "octocat", "id": 583231, "type": "User"},
            "head": {"sha": pull["head_sha"], "ref": f"pr-{number}", "label": f"{owner}:pr-{number}"},
            "base": {"ref": "main", "label": f"{owner}:main"},
            "html_url": f"https://github.example/{repo}/pull/{number}",
        },
        "repository": {
            "id": 70000 + pull["installation"],
            "name": name,
            "full_name": repo,
            "private": False,
            "owner": {"login": owner, "id": 10000 + pull["installation"], "type": "Organization"},
        },
        "installation": {"id": pull["installation"]},
        "sender": {"login": "octocat", "id": 583231, "type": "User"},
    }


def comment_payload(pull, body, comment_id, comment_body):
    payload = pr_payload("created", pull, body)
    repo = pull["repo"]
    number = pull["number"]
    pr = payload.pop("pull_request")
    payload.pop("number")
    payload["issue"] = {
        "id": pr["id"] + 1,
        "number": number,
        "state": "open",
        "title": pr["title"],
        "body": body,
        "user": pr["user"],
        "pull_request": {"url": f"https://github.example/api/v3/repos/{repo}/pulls/{number}"},
    }
    payload["comment"] = {
        "id": comment_id,
        "body": comment_body,
        "user": {"login": "reviewer", "id": 777, "type": "User"},
    }
    payload["sender"] = payload["comment"]["user"]
    return payload


# --- deliver ----------------------------------------------------------------


def record_in_fake(fake, guid, event, action, status, installation, payload, seconds, redelivery):
    fake_call(
        "POST",
        f"{fake}/_fake/deliveries",
        {
            "guid": guid,
            "event": event,
            "action": action,
            "status_code": status if status is not None else 0,
            "redelivery": redelivery,
            "installation_id": installation,
            "duration": round(seconds, 3),
            "payload": payload,
        },
    )


def cmd_deliver(args):
    fake = args.fake.rstrip("/")
    secret = open(args.secret_file, "rb").read()
    pulls = plan(args.seed, args.installations, args.prs, args.per_pr, args.duration)
    for i in range(1, args.installations + 1):
        fake_call("POST", f"{fake}/_fake/repos", {"installation_id": installation_id(i), "full_name": f"org{i}/repo"})

    deliveries = []
    lock = threading.Lock()
    errors = []
    start = time.monotonic()
    start_wall = time.time()
    progress = {"done": 0}

    def run_lane(lane_pulls):
        # Every step of one pull request is in one lane, so its changes and
        # deliveries happen in order, as GitHub's would.
        steps = sorted(((s["at"], p, s) for p in lane_pulls for s in p["steps"]), key=lambda x: x[0])
        state = {id(p): {"ticked": 0, "comments": []} for p in lane_pulls}
        comment_ids = 0
        for at, pull, step in steps:
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            st = state[id(pull)]
            repo, number = pull["repo"], pull["number"]
            base = f"{fake}/_fake/repos/{repo}/pulls/{number}"
            try:
                if step["kind"] == "edit":
                    st["ticked"] += 1
                body = body_with(number, pull["boxes"], st["ticked"])
                if step["kind"] in ("opened", "edit"):
                    fake_call(
                        "PUT",
                        base,
                        {"body": body, "head_sha": pull["head_sha"], "author": "octocat", "state": "open", "merged": False},
                    )
                    event, action = "pull_request", "opened" if step["kind"] == "opened" else "edited"
                    payload = pr_payload(action, pull, body)
                    if action == "edited":
                        payload["changes"] = {"body": {"from": body_with(number, pull["boxes"], st["ticked"] - 1)}}
                else:
                    _, created = fake_call("POST", f"{base}/issue-comments", {"author": "reviewer", "body": step["comment"]})
                    st["comments"].append(step["comment"])
                    comment_ids += 1
                    event, action = "issue_comment", "created"
                    payload = comment_payload(pull, body, (created or {}).get("id", comment_ids), step["comment"])
            except Exception as exc:  # noqa: BLE001 - reported, fails the run
                with lock:
                    errors.append(f"changing {repo}#{number} in the fake: {exc}")
                continue
            raw = json.dumps(payload, separators=(",", ":")).encode()
            guid = str(uuid.uuid4())
            sent_at = time.time()
            into = time.monotonic() - start
            outage = args.outage_length > 0 and args.outage_start <= into < args.outage_start + args.outage_length
            if outage:
                # GitHub cannot reach the host: no connection is made, and
                # its delivery log says "could not connect" (status 0).
                status, error, seconds = None, "outage: GitHub could not connect (simulated)", 0.0
            else:
                status, error, seconds = send_delivery(args.bot, secret, event, guid, raw)
            try:
                record_in_fake(fake, guid, event, action, status, pull["installation"], payload, seconds, False)
            except Exception as exc:  # noqa: BLE001
                with lock:
                    errors.append(f"recording delivery {guid} in the fake: {exc}")
            with lock:
                deliveries.append(
                    {
                        "guid": guid,
                        "event": event,
                        "action": action,
                        "repo": repo,
                        "number": number,
                        "installation": pull["installation"],
                        "body": raw.decode(),
                        "status": status,
                        "error": error,
                        "sent_at": sent_at,
                        "seconds": round(seconds, 3),
                        "final": step is pull["steps"][-1],
                        "outage": outage,
                    }
                )
                progress["done"] += 1
        for pull in lane_pulls:
            st = state[id(pull)]
            pull["final_body"] = body_with(pull["number"], pull["boxes"], st["ticked"])
            pull["final_comments"] = st["comments"]

    lanes = [pulls[k :: args.connections] for k in range(args.connections)]
    threads = [threading.Thread(target=run_lane, args=(lane,), daemon=True) for lane in lanes if lane]
    for t in threads:
        t.start()
    deadline = time.monotonic() + args.duration + args.grace
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        time.sleep(1)
        if args.progress_file:
            with open(args.progress_file, "w") as f:
                f.write(str(progress["done"]))
    stuck = [t for t in threads if t.is_alive()]
    if stuck:
        errors.append(f"{len(stuck)} delivery lanes still busy after {args.duration + args.grace:.0f} s")
    elapsed = time.monotonic() - start

    with lock:
        snapshot = list(deliveries)
    for pull in pulls:
        pull["expected"] = expected_check(pull.get("final_body", ""), pull.get("final_comments", []))
    ok = sum(1 for d in snapshot if is_2xx(d["status"]))
    result = {
        "seed": args.seed,
        "started_at": start_wall,
        "seconds": round(elapsed, 1),
        "pulls": pulls,
        "deliveries": snapshot,
        "errors": errors,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    failed = [d for d in snapshot if not is_2xx(d["status"])]
    print(
        f"sent {len(snapshot)} deliveries over {len(pulls)} pull requests in {elapsed:.1f} s "
        f"on {len(threads)} connections: {ok} answered 2xx, {len(failed)} non-2xx or refused"
    )
    statuses = {}
    for d in snapshot:
        key = str(d["status"]) if d["status"] is not None else (d["error"] or "?").split(":")[0]
        statuses[key] = statuses.get(key, 0) + 1
    print("outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    if args.outage_length > 0:
        in_outage = [d for d in snapshot if d.get("outage")]
        print(
            f"simulated network outage {args.outage_start:.0f}-{args.outage_start + args.outage_length:.0f} s: "
            f"{len(in_outage)} deliveries could not connect, {sum(1 for d in in_outage if d['final'])} of them "
            "the last delivery of their pull request"
        )
    slow = sorted(snapshot, key=lambda d: -d["seconds"])[:3]
    print("slowest answers: " + ", ".join(f"{d['seconds']:.2f}s ({d['status'] or d['error']})" for d in slow))
    for d in failed[:15]:
        print(f"  failed {d['guid']} {d['event']}.{d['action']} {d['repo']}#{d['number']}: status={d['status']} error={d['error']}")
    for e in errors[:10]:
        print(f"  error: {e}")
    return 0 if not errors else 1


# --- redeliver --------------------------------------------------------------


def cmd_redeliver(args):
    fake = args.fake.rstrip("/")
    secret = open(args.secret_file, "rb").read()
    state = json.load(open(args.state))
    by_guid = {}
    for d in state["deliveries"]:
        by_guid.setdefault(d["guid"], d)
    _, requested = fake_call("GET", f"{fake}/_fake/redeliveries")
    requested = requested or []
    jobs = []
    unknown = []
    for r in requested:
        d = by_guid.get(r["guid"])
        if d is None:
            unknown.append(r["guid"])
        else:
            jobs.append(d)
    results = []
    lock = threading.Lock()
    queue = list(jobs)

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                d = queue.pop(0)
            status, error, seconds = send_delivery(args.bot, secret, d["event"], d["guid"], d["body"].encode())
            try:
                record_in_fake(
                    fake, d["guid"], d["event"], d["action"], status, d["installation"], json.loads(d["body"]), seconds, True
                )
            except Exception as exc:  # noqa: BLE001
                error = (error or "") + f"; recording in the fake: {exc}"
            with lock:
                results.append(
                    {
                        "guid": d["guid"],
                        "repo": d["repo"],
                        "number": d["number"],
                        "event": d["event"],
                        "action": d["action"],
                        "status": status,
                        "error": error,
                        "seconds": round(seconds, 3),
                    }
                )

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(4, max(1, len(jobs))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DELIVERY_TIMEOUT * (len(jobs) + 1))
    out = {"requested": [r["guid"] for r in requested], "unknown": unknown, "results": results}
    with open(args.out, "w") as f:
        json.dump(out, f)
    ok = sum(1 for r in results if is_2xx(r["status"]))
    print(f"the bot asked for {len(requested)} redeliveries; redelivered {len(results)}: {ok} answered 2xx")
    for r in results:
        if not is_2xx(r["status"]):
            print(f"  redelivery of {r['guid']} ({r['repo']}#{r['number']}) failed: status={r['status']} error={r['error']}")
    for g in unknown:
        print(f"  the bot asked for {g}, which this test never sent")
    return 0


# --- settle -----------------------------------------------------------------


def pending_now(bot):
    try:
        _, health = http_json("GET", f"{bot.rstrip('/')}/health", timeout=5)
        return (health or {}).get("pending")
    except urllib.error.HTTPError as exc:  # 503 while a worker drains
        try:
            return json.loads(exc.read()).get("pending")
        except Exception:  # noqa: BLE001
            return None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def cmd_settle(args):
    fake = args.fake.rstrip("/")
    deadline = time.monotonic() + args.timeout
    last_count = None
    stable_since = time.monotonic()
    pending = None
    count = None
    while time.monotonic() < deadline:
        pending = pending_now(args.bot)
        try:
            _, runs = fake_call("GET", f"{fake}/_fake/check-runs")
            count = len(runs or [])
        except RuntimeError:
            count = None
        if count != last_count:
            last_count = count
            stable_since = time.monotonic()
        quiet = time.monotonic() - stable_since
        if pending == 0 and count is not None and quiet >= args.quiet:
            print(f"settled: pending set empty, {count} check runs recorded, none new for {quiet:.0f} s")
            return 0
        time.sleep(0.5)
    print(f"not settled after {args.timeout:.0f} s: pending {pending}, {count} check runs recorded")
    return 1


# --- verify -----------------------------------------------------------------


def cmd_verify(args):
    fake = args.fake.rstrip("/")
    state = json.load(open(args.state))
    redelivery = json.load(open(args.redelivery)) if args.redelivery else {"requested": [], "results": []}
    _, runs = fake_call("GET", f"{fake}/_fake/check-runs")
    runs = runs or []
    _, log = fake_call("GET", f"{fake}/_fake/deliveries")
    log = log or []

    deliveries = state["deliveries"]
    pulls = state["pulls"]
    lines = []

    def check(ok, text):
        lines.append(("ok - " if ok else "not ok - ") + text)
        return ok

    # Figures.
    sent = len(deliveries)
    ok_2xx = [d for d in deliveries if is_2xx(d["status"])]
    failed = [d for d in deliveries if not is_2xx(d["status"])]
    results = redelivery.get("results", [])
    redelivered_ok = [r for r in results if is_2xx(r["status"])]

    latest = {}
    count_per_pr = {}
    for run in runs:  # arrival order
        body = run.get("body") or {}
        if body.get("name", run.get("name")) != CHECK_NAME:
            continue
        key = (run.get("repo"), body.get("head_sha"))
        latest[key] = run
        count_per_pr[key] = count_per_pr.get(key, 0) + 1

    correct = []
    lost = []
    for pull in pulls:
        key = (pull["repo"], pull["head_sha"])
        want = pull["expected"]
        run = latest.get(key)
        got = None
        if run is not None:
            body = run.get("body") or {}
            got = {
                "title": (body.get("output") or {}).get("title"),
                "status": body.get("status"),
                "conclusion": body.get("conclusion"),
            }
        if got == want:
            correct.append(pull)
        else:
            lost.append((pull, got))

    print(f"# deliveries sent: {sent}")
    print(f"# answered 2xx: {len(ok_2xx)}")
    in_outage = [d for d in failed if d.get("outage")]
    print(
        f"# answered non-2xx or refused: {len(failed)} ({len(in_outage)} in the simulated outage, "
        f"{len(failed) - len(in_outage)} during the kills; {sum(1 for d in failed if d['final'])} were the last delivery of their PR)"
    )
    print(f"# redelivered: {len(results)} (asked for by the bot: {len(redelivery.get('requested', []))}, answered 2xx: {len(redelivered_ok)})")
    print(f"# PRs with a correct final check: {len(correct)} of {len(pulls)}")
    print(f"# lost: {len(lost)}")
    print(f"# check runs written: {len(runs)} ({len(runs) / max(1, len(pulls)):.1f} per PR)")

    # For each lost pull request: what the bot answered to its deliveries,
    # and whether the delivery sent after its final change (or a redelivery
    # of one of its deliveries) was accepted, i.e. whether the bot had been
    # told about the final state at all.
    redelivered_by_pr = {}
    for r in results:
        redelivered_by_pr.setdefault((r["repo"], r["number"]), []).append(r)
    for pull, got in lost:
        key = (pull["repo"], pull["number"])
        ds = sorted((d for d in deliveries if (d["repo"], d["number"]) == key), key=lambda d: d["sent_at"])
        outcomes = " ".join(str(d["status"] or 0) for d in ds)
        final = [d for d in ds if d["final"]]
        told = any(is_2xx(d["status"]) for d in final) or any(
            is_2xx(r["status"]) for r in redelivered_by_pr.get(key, [])
        )
        print(
            f"# LOST {pull['repo']}#{pull['number']} (installation {pull['installation']}): expected "
            f"{json.dumps(pull['expected'])}, latest check {json.dumps(got)}; "
            f"{count_per_pr.get((pull['repo'], pull['head_sha']), 0)} check runs for it; "
            f"its deliveries were answered (in order): {outcomes}; "
            + ("a delivery after its final change was accepted (2xx)" if told else "no delivery after its final change was ever accepted")
        )
        for d in final:
            print(f"#   final delivery {d['guid']} ({d['event']}.{d['action']}) answered {d['status'] or d['error']}")

    # Checks.
    check(sent == args.expect, f"{sent} deliveries sent over {len(pulls)} pull requests (expected {args.expect})")
    check(not state.get("errors"), "the deliverer changed every pull request in the fake and recorded every delivery"
          + ("" if not state.get("errors") else f": {state['errors'][:3]}"))

    if args.expect_failures:
        check(
            len(failed) > 0,
            f"redelivery was exercised: {len(failed)} deliveries never got a 2xx, "
            f"{sum(1 for d in failed if d['final'])} of them the last delivery of their PR",
        )
    never_2xx = {d["guid"] for d in failed}
    requested = set(redelivery.get("requested", []))
    missing = sorted(never_2xx - requested)
    extra = sorted(requested - never_2xx)
    check(
        not missing and not extra,
        f"redeliver asked for exactly the {len(never_2xx)} deliveries that never got a 2xx "
        f"(asked for {len(requested)}; not asked for {len(missing)}; asked for but answered 2xx {len(extra)})",
    )
    for g in missing[:10]:
        print(f"#   not asked for: {g}")
    for g in extra[:10]:
        print(f"#   asked for, but it had a 2xx answer: {g}")
    dup = len(redelivery.get("requested", [])) - len(requested)
    check(dup == 0, f"each delivery redelivered at most once ({dup} duplicate requests)")
    check(
        len(redelivered_ok) == len(results) == len(redelivery.get("requested", [])),
        f"every requested redelivery was performed and answered 2xx ({len(redelivered_ok)} of {len(redelivery.get('requested', []))})",
    )

    # The fake's delivery log shows what redeliver saw.
    logged = {}
    for entry in log:
        logged.setdefault(entry.get("guid"), []).append(entry)
    unlogged = [d["guid"] for d in deliveries if d["guid"] not in logged]
    check(not unlogged, f"the fake's delivery log holds every delivery ({len(unlogged)} missing)")

    check(
        not lost,
        f"every PR's latest check matches its final state: {len(correct)} of {len(pulls)} correct, lost {len(lost)}"
        + ("" if not lost else " (" + ", ".join(f"{p['repo']}#{p['number']}" for p, _ in lost[:10]) + ")"),
    )
    for line in lines:
        print(line)
    figures = {
        "sent": sent,
        "ok_2xx": len(ok_2xx),
        "failed": len(failed),
        "redelivered": len(results),
        "redelivered_ok": len(redelivered_ok),
        "correct": len(correct),
        "pulls": len(pulls),
        "lost": len(lost),
        "lost_prs": [f"{p['repo']}#{p['number']}" for p, _ in lost],
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f)
    return 0 if all(line.startswith("ok - ") for line in lines) else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("deliver")
    p.add_argument("--fake", required=True)
    p.add_argument("--bot", required=True)
    p.add_argument("--secret-file", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--installations", type=int, default=5)
    p.add_argument("--prs", type=int, default=10, help="pull requests per installation")
    p.add_argument("--per-pr", type=int, default=10, help="deliveries per pull request")
    p.add_argument("--duration", type=float, default=50, help="seconds over which deliveries are spread")
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--grace", type=float, default=60, help="seconds allowed past --duration")
    p.add_argument("--progress-file")
    p.add_argument("--outage-start", type=float, default=0, help="seconds into the run when GitHub loses the host")
    p.add_argument("--outage-length", type=float, default=0, help="seconds GitHub cannot connect (0: no outage)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_deliver)

    p = sub.add_parser("redeliver")
    p.add_argument("--fake", required=True)
    p.add_argument("--bot", required=True)
    p.add_argument("--secret-file", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_redeliver)

    p = sub.add_parser("settle")
    p.add_argument("--fake", required=True)
    p.add_argument("--bot", required=True)
    p.add_argument("--timeout", type=float, default=90)
    p.add_argument("--quiet", type=float, default=5, help="seconds without a new check run")
    p.set_defaults(func=cmd_settle)

    p = sub.add_parser("verify")
    p.add_argument("--fake", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--redelivery")
    p.add_argument("--expect", type=int, default=500)
    p.add_argument("--expect-failures", action="store_true", help="some deliveries must have failed (an outage was simulated)")
    p.add_argument("--out")
    p.set_defaults(func=cmd_verify)

    args = parser.parse_args()
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
