//! Per-repository settings end to end: a signed webhook into the real
//! handler, the worker reading `.github/task-list-completed.yml` through the
//! fake GitHub's contents API, and the check run the fake receives. Also
//! the completion of checks left in progress on a superseded head or a
//! closed pull request.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::bot::{PATIENCE, TestBot};
use support::fake_github::{ContentsAccess, FakeGitHub, PullRequest, SETTINGS_PATH};
use support::webhooks;

const INSTALLATION: u64 = 7;
const REPO: &str = "octo/hello";
const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn with_pull(github: &FakeGitHub, repo: &str, number: u64, body: &str) {
    github.add_repo(INSTALLATION, repo);
    github.upsert_pull(
        repo,
        PullRequest::new(number)
            .body(body)
            .author("alice")
            .head_sha(SHA_A),
    );
}

/// Delivers `opened` for a pull request and waits for its check run.
async fn open_and_check(bot: &TestBot, repo: &str, number: u64) -> Value {
    let before = bot.github.check_runs(repo).len();
    let answer = bot
        .send(&webhooks::pull_request_opened(&bot.github, repo, number))
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    bot.check_runs_arrived(repo, before + 1).await;
    bot.github.check_runs(repo).last().unwrap().body.clone()
}

/// Waits until the pending set is empty and every claim taken is finished,
/// so that "nothing was written" means something.
async fn settled(bot: &TestBot) {
    let deadline = Instant::now() + PATIENCE;
    while !bot.pending_is_empty()
        || bot
            .stats
            .waiting_on_limiter
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    {
        assert!(Instant::now() < deadline, "the bot did not settle");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn push_payload(repo: &str, paths: &[&str]) -> Value {
    json!({
        "ref": "refs/heads/main",
        "before": SHA_A,
        "after": SHA_B,
        "forced": false,
        "deleted": false,
        "commits": [{"id": SHA_B, "added": [], "removed": [], "modified": paths}],
        "repository": {"full_name": repo, "name": repo.split('/').nth(1), "default_branch": "main"},
        "installation": {"id": INSTALLATION},
    })
}

#[tokio::test]
async fn every_key_of_the_file_changes_the_check() {
    let bot = TestBot::start().await;
    let github = &bot.github;
    with_pull(
        github,
        REPO,
        1,
        "- [x] done\n- [ ] later (post-merge)\n- [ ] maybe OPTIONAL\n- [ ] required",
    );
    github.put_file(
        REPO,
        SETTINGS_PATH,
        "when_incomplete: failure\n\
         markers:\n  skip: [POST-MERGE]\n  optional: [optional]\n  case_sensitive: false\n\
         sources: [body, reviews]\n\
         ignored_bots: [carol]\n\
         count_renovate_body: true\n\
         check_name: tasks-done\n",
    );
    // Not counted: comments are not among the sources, carol is ignored.
    github.add_issue_comment(REPO, 1, "bob", "- [ ] a comment's task");
    github.add_review(REPO, 1, "carol", "- [ ] carol's task");
    github.add_review(REPO, 1, "dave", "- [x] dave's task");

    let check = open_and_check(&bot, REPO, 1).await;
    assert_eq!(check["name"], "tasks-done");
    assert_eq!(check["status"], "completed");
    assert_eq!(check["conclusion"], "failure");
    assert!(check["completed_at"].is_string());
    // done, required and dave's task count; "later" is skipped (the case
    // does not matter), "maybe" is optional.
    assert_eq!(
        check["output"]["title"], "2 / 3 tasks completed (+1 optional)",
        "{check}"
    );
    let text = check["output"]["text"].as_str().unwrap();
    assert!(!text.contains("Settings not applied"), "{text}");

    // count_renovate_body: a Renovate pull request's body counts.
    github.upsert_pull(
        REPO,
        PullRequest::new(2)
            .body("- [ ] rebase me")
            .author("renovate[bot]")
            .head_sha(SHA_B),
    );
    let check = open_and_check(&bot, REPO, 2).await;
    assert_eq!(check["output"]["title"], "0 / 1 tasks completed");

    // The other conclusions.
    for (when, conclusion) in [
        ("neutral", "neutral"),
        ("action_required", "action_required"),
    ] {
        let repo = format!("octo/{when}");
        with_pull(github, &repo, 1, "- [ ] a");
        github.put_file(&repo, SETTINGS_PATH, &format!("when_incomplete: {when}\n"));
        let check = open_and_check(&bot, &repo, 1).await;
        assert_eq!(
            (check["status"].as_str(), check["conclusion"].as_str()),
            (Some("completed"), Some(conclusion))
        );
        assert_eq!(check["name"], "task-list-completed");
    }
}

#[tokio::test]
async fn the_repository_file_wins_over_the_owners_and_extends_is_merged_under_it() {
    let bot = TestBot::start().await;
    let github = &bot.github;
    with_pull(github, REPO, 1, "- [ ] a\n- [ ] BASE b\n- [ ] ORG c");
    github.add_repo(INSTALLATION, "octo/.github");
    github.add_repo(INSTALLATION, "shared/base");
    github.put_file(
        "octo/.github",
        SETTINGS_PATH,
        "_extends: shared/base:config/tasks.yml\ncheck_name: org-tasks\nwhen_incomplete: neutral\nmarkers:\n  skip: [ORG]\n",
    );
    github.put_file(
        "shared/base",
        "config/tasks.yml",
        "when_incomplete: failure\nmarkers:\n  skip: [BASE]\n",
    );

    // No file in the repository: the owner's, over the base it extends.
    let check = open_and_check(&bot, REPO, 1).await;
    assert_eq!(check["name"], "org-tasks");
    assert_eq!(check["conclusion"], "neutral", "the nearer file wins");
    assert_eq!(
        check["output"]["title"], "0 / 1 tasks completed",
        "lists are joined: BASE and ORG are both skipped"
    );

    // A file in the repository replaces the owner's; the push that adds it
    // drops the cached settings.
    github.put_file(REPO, SETTINGS_PATH, "markers:\n  skip: [ORG]\n");
    let answer = bot
        .deliver("push", &push_payload(REPO, &[SETTINGS_PATH]))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    github.upsert_pull(
        REPO,
        PullRequest::new(1)
            .body("- [ ] a\n- [ ] BASE b\n- [ ] ORG c\n- [x] d")
            .author("alice")
            .head_sha(SHA_A),
    );
    let edited = webhooks::pull_request_edited(github, REPO, 1, Some("- [ ] a"), None);
    bot.send(&edited).await;
    bot.check_runs_arrived(REPO, 2).await;
    let check = bot.github.check_runs(REPO).last().unwrap().body.clone();
    assert_eq!(check["name"], "task-list-completed");
    assert_eq!(check["status"], "in_progress");
    assert_eq!(check["output"]["title"], "1 / 3 tasks completed");
}

#[tokio::test]
async fn a_broken_file_gives_the_defaults_and_the_check_says_what_is_wrong() {
    let bot = TestBot::start().await;
    let github = &bot.github;
    with_pull(github, REPO, 1, "- [ ] a\n- [ ] b POST-MERGE");
    github.put_file(
        REPO,
        SETTINGS_PATH,
        "check_name: custom\nwhen_incomplete: sometimes\nmarkers:\n  skip: 3\n",
    );

    let check = open_and_check(&bot, REPO, 1).await;
    assert_eq!(check["name"], "task-list-completed", "the defaults");
    assert_eq!(check["status"], "in_progress");
    assert_eq!(check["output"]["title"], "0 / 1 tasks completed");
    let text = check["output"]["text"].as_str().unwrap();
    assert!(text.starts_with("\n## Settings not applied\n"), "{text}");
    assert!(
        text.contains(&format!("`{REPO}:{SETTINGS_PATH}:2:18: when_incomplete:")),
        "file, line, column and key: {text}"
    );
    assert!(text.contains(":4:9: markers.skip:"), "{text}");
    assert!(text.contains("the defaults were used"), "{text}");
}

#[tokio::test]
async fn without_permission_file_or_owner_repository_the_defaults_apply_silently() {
    let bot = TestBot::start().await;
    let github = &bot.github;
    with_pull(github, REPO, 1, "- [ ] a");
    github.put_file(REPO, SETTINGS_PATH, "check_name: never-read\n");
    github.set_contents_access(INSTALLATION, ContentsAccess::None);

    let check = open_and_check(&bot, REPO, 1).await;
    assert_eq!(check["name"], "task-list-completed");
    assert!(
        !check["output"]["text"]
            .as_str()
            .unwrap()
            .contains("Settings")
    );
    let asked: Vec<u16> = github
        .contents_requests()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        asked,
        [403, 404],
        "the repository's file (forbidden), then the owner's .github (no such repository)"
    );

    // Single file on another path is no better than none.
    let other = "octo/other";
    with_pull(github, other, 1, "- [ ] a");
    github.put_file(other, SETTINGS_PATH, "check_name: never-read\n");
    github.set_contents_access(
        INSTALLATION,
        ContentsAccess::SingleFile(vec![".github/other.yml".into()]),
    );
    let check = open_and_check(&bot, other, 1).await;
    assert_eq!(check["name"], "task-list-completed");
}

#[tokio::test]
async fn a_second_pull_request_of_the_repository_reads_no_settings() {
    let bot = TestBot::start().await;
    let github = &bot.github;
    with_pull(github, REPO, 1, "- [ ] a");
    github.upsert_pull(REPO, PullRequest::new(2).body("- [x] b").author("bob"));
    github.put_file(REPO, SETTINGS_PATH, "check_name: cached\n");

    let first = open_and_check(&bot, REPO, 1).await;
    assert_eq!(first["name"], "cached");
    assert_eq!(github.contents_requests().len(), 1);
    let second = open_and_check(&bot, REPO, 2).await;
    assert_eq!(second["name"], "cached");
    assert_eq!(
        github.contents_requests().len(),
        1,
        "the settings read for the first pull request serve the second"
    );

    // A push that does not touch the file keeps them; one that does
    // drops them, and the next check reads the file again.
    let answer = bot
        .deliver("push", &push_payload(REPO, &["README.md"]))
        .await;
    assert_eq!(answer.status, 200);
    github.put_file(REPO, SETTINGS_PATH, "check_name: refreshed\n");
    let finished = bot.stats.finished_claims_now();
    bot.send(&webhooks::pull_request_reopened(github, REPO, 2))
        .await;
    bot.processed(finished + 1).await;
    assert_eq!(
        github.check_runs(REPO).len(),
        2,
        "the cached settings give the same check: nothing written"
    );
    assert_eq!(github.contents_requests().len(), 1);

    bot.deliver("push", &push_payload(REPO, &[SETTINGS_PATH]))
        .await;
    bot.send(&webhooks::pull_request_reopened(github, REPO, 2))
        .await;
    bot.check_runs_arrived(REPO, 3).await;
    assert_eq!(github.check_runs(REPO)[2].body["name"], "refreshed");
    assert_eq!(github.contents_requests().len(), 2);
}

#[tokio::test]
async fn a_new_head_completes_the_check_left_in_progress_on_the_old_one() {
    let bot = TestBot::start().await;
    let github = &bot.github;
    with_pull(github, REPO, 1, "- [ ] a");
    let first = open_and_check(&bot, REPO, 1).await;
    assert_eq!(
        (first["head_sha"].as_str(), first["status"].as_str()),
        (Some(SHA_A), Some("in_progress"))
    );

    github.upsert_pull(
        REPO,
        PullRequest::new(1)
            .body("- [ ] a")
            .author("alice")
            .head_sha(SHA_B),
    );
    let answer = bot
        .send(&webhooks::pull_request_synchronize(github, REPO, 1, SHA_A))
        .await;
    assert_eq!(answer.status, 202);
    bot.check_runs_arrived(REPO, 3).await;
    settled(&bot).await;
    let runs = github.check_runs(REPO);
    assert_eq!(runs.len(), 3, "one extra write: {runs:#?}");
    let on_a: Vec<&Value> = runs
        .iter()
        .filter(|r| r.head_sha == SHA_A)
        .map(|r| &r.body)
        .collect();
    let on_b: Vec<&Value> = runs
        .iter()
        .filter(|r| r.head_sha == SHA_B)
        .map(|r| &r.body)
        .collect();
    assert_eq!(on_a.len(), 2);
    assert_eq!(on_a[1]["status"], "completed");
    assert_eq!(on_a[1]["conclusion"], "neutral");
    assert_eq!(on_a[1]["name"], "task-list-completed");
    assert_eq!(
        on_a[1]["output"]["title"],
        "Not checked: superseded by a newer commit"
    );
    assert_eq!(on_b.len(), 1);
    assert_eq!(on_b[0]["status"], "in_progress");

    // The same push delivered again completes nothing more: the latest
    // check on the old head is completed now.
    let finished = bot.stats.finished_claims_now();
    bot.send(&webhooks::pull_request_synchronize(github, REPO, 1, SHA_A))
        .await;
    bot.processed(finished + 2).await;
    assert_eq!(
        github
            .check_runs(REPO)
            .iter()
            .filter(|r| r.head_sha == SHA_A)
            .count(),
        2
    );
}

#[tokio::test]
async fn a_completed_check_on_the_old_head_is_left_alone() {
    let bot = TestBot::start().await;
    let github = &bot.github;
    with_pull(github, REPO, 1, "- [x] a");
    let first = open_and_check(&bot, REPO, 1).await;
    assert_eq!(first["conclusion"], "success");
    github.upsert_pull(
        REPO,
        PullRequest::new(1)
            .body("- [x] a")
            .author("alice")
            .head_sha(SHA_B),
    );
    let finished = bot.stats.finished_claims_now();
    bot.send(&webhooks::pull_request_synchronize(github, REPO, 1, SHA_A))
        .await;
    // The new head's check and the old head's retirement, both finished.
    bot.processed(finished + 2).await;
    let on_a = github
        .check_runs(REPO)
        .iter()
        .filter(|r| r.head_sha == SHA_A)
        .count();
    assert_eq!(on_a, 1, "no write for a completed check");
}

#[tokio::test]
async fn closing_or_merging_completes_the_check_left_in_progress() {
    let bot = TestBot::start().await;
    let github = &bot.github;
    for (number, merged) in [(1, false), (2, true)] {
        with_pull(github, REPO, number, "- [ ] a");
        let check = open_and_check(&bot, REPO, number).await;
        assert_eq!(check["status"], "in_progress");
        let pull = PullRequest::new(number)
            .body("- [ ] a")
            .author("alice")
            .head_sha(SHA_A);
        github.upsert_pull(REPO, if merged { pull.merged() } else { pull.closed() });
        let runs_before = github.check_runs(REPO).len();
        let answer = bot
            .send(&webhooks::pull_request_closed(github, REPO, number))
            .await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        bot.check_runs_arrived(REPO, runs_before + 1).await;
        let last = github.check_runs(REPO).last().unwrap().body.clone();
        assert_eq!(last["head_sha"], SHA_A);
        assert_eq!(last["conclusion"], "neutral");
        let why = if merged {
            "pull request merged"
        } else {
            "pull request closed"
        };
        assert_eq!(last["output"]["title"], format!("Not checked: {why}"));
    }

    // Closing a pull request whose check is completed writes nothing.
    let done = "octo/done";
    with_pull(github, done, 1, "- [x] a");
    open_and_check(&bot, done, 1).await;
    github.upsert_pull(
        done,
        PullRequest::new(1)
            .body("- [x] a")
            .author("alice")
            .head_sha(SHA_A)
            .closed(),
    );
    let finished = bot.stats.finished_claims_now();
    bot.send(&webhooks::pull_request_closed(github, done, 1))
        .await;
    bot.processed(finished + 1).await;
    assert_eq!(github.check_runs(done).len(), 1);
}

#[tokio::test]
async fn the_first_check_waits_for_first_check_delay() {
    let bot = TestBot::start().await;
    let github = &bot.github;
    let opened = Instant::now();
    with_pull(github, REPO, 1, "- [ ] a");
    github.put_file(REPO, SETTINGS_PATH, "first_check_delay: 3s\n");

    let answer = bot
        .send(&webhooks::pull_request_opened(github, REPO, 1))
        .await;
    assert_eq!(answer.status, 202);
    bot.check_runs_arrived(REPO, 1).await;
    let run = github.check_runs(REPO)[0].clone();
    // GitHub gives the creation time in whole seconds, so the wait is at
    // least two of the three seconds after the pull request was opened.
    let waited = run.received_at.duration_since(opened);
    assert!(waited >= Duration::from_secs(2), "written after {waited:?}");
    assert_eq!(
        bot.stats.dropped.load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // Later checks of the same head do not wait.
    let comment = github.add_issue_comment(REPO, 1, "bob", "- [x] b");
    let comment_at = Instant::now();
    bot.send(&webhooks::issue_comment_created(github, REPO, 1, comment))
        .await;
    bot.check_runs_arrived(REPO, 2).await;
    assert!(comment_at.elapsed() < Duration::from_secs(2));
}
