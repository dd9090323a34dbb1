//! What check run each kind of delivery leads to, end to end: a signed
//! webhook into the real handler, the worker reading the fake GitHub, and
//! the check run the fake receives.

mod support;

use support::bot::TestBot;
use support::fake_github::{FakeGitHub, PullRequest};
use support::webhooks;

const REPO: &str = "octo/hello";
const INSTALLATION: u64 = 7;

fn with_pull(github: &FakeGitHub, number: u64, body: &str) {
    github.add_repo(INSTALLATION, REPO);
    github.upsert_pull(REPO, PullRequest::new(number).body(body).author("alice"));
}

fn head_sha(github: &FakeGitHub, number: u64) -> String {
    github.pull(REPO, number).expect("pull exists").head_sha
}

/// The output title and status of the last check run the fake received.
fn last_check(bot: &TestBot) -> serde_json::Value {
    bot.github
        .check_runs(REPO)
        .last()
        .expect("a check run arrived")
        .body
        .clone()
}

#[tokio::test]
async fn an_opened_pull_request_with_open_tasks_gets_an_in_progress_check() {
    let bot = TestBot::start().await;
    with_pull(
        &bot.github,
        1,
        "## Checklist\n- [x] tests written\n- [ ] docs updated\n",
    );

    let answer = bot
        .send(&webhooks::pull_request_opened(&bot.github, REPO, 1))
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    bot.check_runs_arrived(REPO, 1).await;

    let check = last_check(&bot);
    assert_eq!(check["name"], "task-list-completed");
    assert_eq!(check["head_sha"], head_sha(&bot.github, 1));
    assert_eq!(check["status"], "in_progress");
    assert!(check["started_at"].is_string());
    assert!(check.get("conclusion").is_none());
    assert_eq!(check["output"]["title"], "1 / 2 tasks completed");
    assert_eq!(check["output"]["summary"], "1 task still to be completed");
    assert_eq!(
        check["output"]["text"],
        "\n## Required Tasks\n| Task | Status |\n| ---- | ------ |\n| tests written | Completed |\n| docs updated | **Incomplete** |\n"
    );
}

#[tokio::test]
async fn ticking_the_last_box_in_an_edit_completes_the_check() {
    let bot = TestBot::start().await;
    with_pull(&bot.github, 2, "- [ ] one\n- [ ] two");
    bot.send(&webhooks::pull_request_opened(&bot.github, REPO, 2))
        .await;
    bot.check_runs_arrived(REPO, 1).await;

    bot.github.upsert_pull(
        REPO,
        PullRequest::new(2)
            .body("- [x] one\n- [x] two")
            .author("alice"),
    );
    bot.send(&webhooks::pull_request_edited(
        &bot.github,
        REPO,
        2,
        Some("- [ ] one\n- [ ] two"),
        None,
    ))
    .await;
    bot.check_runs_arrived(REPO, 2).await;

    let check = last_check(&bot);
    assert_eq!(check["status"], "completed");
    assert_eq!(check["conclusion"], "success");
    assert!(check["completed_at"].is_string());
    assert_eq!(check["output"]["title"], "2 / 2 tasks completed");
    assert_eq!(check["output"]["summary"], "All tasks have been completed");
}

#[tokio::test]
async fn tasks_in_comments_reviews_and_review_comments_count() {
    let bot = TestBot::start().await;
    with_pull(&bot.github, 3, "- [x] body task");
    let comment = bot
        .github
        .add_issue_comment(REPO, 3, "bob", "- [ ] comment task");
    bot.send(&webhooks::issue_comment_created(
        &bot.github,
        REPO,
        3,
        comment,
    ))
    .await;
    bot.check_runs_arrived(REPO, 1).await;
    assert_eq!(last_check(&bot)["output"]["title"], "1 / 2 tasks completed");

    let review = bot.github.add_review(REPO, 3, "carol", "- [ ] review task");
    bot.send(&webhooks::pull_request_review_submitted(
        &bot.github,
        REPO,
        3,
        review,
    ))
    .await;
    bot.check_runs_arrived(REPO, 2).await;
    assert_eq!(last_check(&bot)["output"]["title"], "1 / 3 tasks completed");

    let review_comment =
        bot.github
            .add_review_comment(REPO, 3, "dave", "- [x] review comment task");
    bot.send(&webhooks::pull_request_review_comment_created(
        &bot.github,
        REPO,
        3,
        review_comment,
    ))
    .await;
    bot.check_runs_arrived(REPO, 3).await;
    assert_eq!(last_check(&bot)["output"]["title"], "2 / 4 tasks completed");
}

#[tokio::test]
async fn checkboxes_of_known_bots_are_ignored_everywhere() {
    let bot = TestBot::start().await;
    with_pull(&bot.github, 4, "- [ ] the human task");
    bot.github
        .add_issue_comment(REPO, 4, "linear", "- [x] linear thing");
    bot.github
        .add_review(REPO, 4, "linear[bot]", "- [ ] linear bot thing");
    let last = bot
        .github
        .add_review_comment(REPO, 4, "coderabbitai[bot]", "- [x] rabbit thing");
    bot.send(&webhooks::pull_request_review_comment_created(
        &bot.github,
        REPO,
        4,
        last,
    ))
    .await;
    bot.check_runs_arrived(REPO, 1).await;
    assert_eq!(last_check(&bot)["output"]["title"], "0 / 1 tasks completed");
}

#[tokio::test]
async fn every_page_of_a_long_discussion_is_read() {
    let bot = TestBot::start().await;
    with_pull(&bot.github, 5, "- [x] body");
    for i in 0..250 {
        bot.github
            .add_issue_comment(REPO, 5, "bob", &format!("comment {i} without tasks"));
    }
    // The only open task is in the 251st comment: on the third page.
    let last = bot
        .github
        .add_issue_comment(REPO, 5, "bob", "- [ ] the task on page three");
    bot.send(&webhooks::issue_comment_created(&bot.github, REPO, 5, last))
        .await;
    bot.check_runs_arrived(REPO, 1).await;
    assert_eq!(last_check(&bot)["output"]["title"], "1 / 2 tasks completed");
    let comment_pages = bot
        .github
        .requests()
        .iter()
        .filter(|r| r.path.contains("/issues/5/comments"))
        .count();
    assert_eq!(comment_pages, 3, "251 comments at 100 a page");
}

#[tokio::test]
async fn a_comment_on_a_plain_issue_is_ignored() {
    let bot = TestBot::start().await;
    bot.github.add_repo(INSTALLATION, REPO);
    bot.github
        .add_issue(REPO, 9, "an issue", "alice", "- [ ] not a PR task");
    let comment = bot
        .github
        .add_issue_comment(REPO, 9, "bob", "- [ ] neither");
    let answer = bot
        .send(&webhooks::issue_comment_created(
            &bot.github,
            REPO,
            9,
            comment,
        ))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "ignored\n");
    assert!(bot.pending_is_empty());
}

#[tokio::test]
async fn a_merge_group_gets_an_immediate_success() {
    let bot = TestBot::start().await;
    with_pull(&bot.github, 6, "- [ ] would block a pull request");
    let webhook =
        webhooks::merge_group_checks_requested(&bot.github, REPO, 6, "feedfacecafe", "main");
    let answer = bot.send(&webhook).await;
    assert_eq!(answer.status, 202);
    bot.check_runs_arrived(REPO, 1).await;
    let check = last_check(&bot);
    assert_eq!(check["head_sha"], "feedfacecafe");
    assert_eq!(check["status"], "completed");
    assert_eq!(check["conclusion"], "success");
    assert_eq!(check["output"]["title"], "All tasks already verified");
    assert_eq!(
        check["output"]["summary"],
        "Tasks were already checked before this PR entered the merge queue"
    );
    let reads = bot
        .github
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .count();
    assert_eq!(reads, 0, "a merge group needs no reads");
}

#[tokio::test]
async fn renovate_bodies_do_not_count() {
    let bot = TestBot::start().await;
    bot.github.add_repo(INSTALLATION, REPO);
    bot.github.upsert_pull(
        REPO,
        PullRequest::new(8)
            .body("- [ ] <!-- rebase-check -->If you want to rebase/retry this PR, check this box")
            .author("renovate[bot]"),
    );
    bot.send(&webhooks::pull_request_opened(&bot.github, REPO, 8))
        .await;
    bot.check_runs_arrived(REPO, 1).await;
    let check = last_check(&bot);
    assert_eq!(check["output"]["title"], "0 / 0 tasks completed");
    assert_eq!(check["conclusion"], "success");
}

#[tokio::test]
async fn a_pull_request_closed_before_its_turn_gets_no_check() {
    let bot = TestBot::start().await;
    with_pull(&bot.github, 10, "- [ ] a");
    let webhook = webhooks::pull_request_opened(&bot.github, REPO, 10);
    bot.github.upsert_pull(
        REPO,
        PullRequest::new(10)
            .body("- [ ] a")
            .author("alice")
            .merged(),
    );
    bot.send(&webhook).await;
    bot.processed(1).await;
    assert!(bot.github.check_runs(REPO).is_empty());
}

#[tokio::test]
async fn an_unchanged_state_makes_no_second_write() {
    let bot = TestBot::start().await;
    with_pull(&bot.github, 11, "- [ ] a");
    bot.send(&webhooks::pull_request_opened(&bot.github, REPO, 11))
        .await;
    bot.processed(1).await;
    // A comment without tasks changes nothing.
    let comment = bot.github.add_issue_comment(REPO, 11, "bob", "LGTM");
    bot.send(&webhooks::issue_comment_created(
        &bot.github,
        REPO,
        11,
        comment,
    ))
    .await;
    bot.processed(2).await;
    assert_eq!(bot.github.check_runs(REPO).len(), 1);
    assert_eq!(
        bot.stats
            .skipped_unchanged
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn events_the_bot_does_not_handle_are_answered_and_dropped() {
    let bot = TestBot::start().await;
    with_pull(&bot.github, 12, "- [ ] a");
    let labeled =
        webhooks::pull_request_event(&bot.github, REPO, 12, "labeled", serde_json::json!({}));
    let answer = bot.send(&labeled).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ignored\n"));
    let ping = serde_json::json!({"zen": "Keep it logically awesome.", "hook_id": 1});
    assert_eq!(bot.deliver("ping", &ping).await.status, 200);
    assert!(bot.pending_is_empty());
    assert!(
        bot.github.requests().is_empty(),
        "no GitHub call for ignored events"
    );
}

/// Found with the task-list fuzz target's limit check: the text of a check with
/// thousands of tasks passed GitHub's 65535-character limit, GitHub answered
/// 422 and the pull request never got its check.
#[tokio::test]
async fn a_pull_request_with_thousands_of_tasks_still_gets_its_check() {
    let bot = TestBot::start().await;
    with_pull(&bot.github, 1, &"- [ ] a task to do\n".repeat(10_000));

    bot.send(&webhooks::pull_request_opened(&bot.github, REPO, 1))
        .await;
    bot.check_runs_arrived(REPO, 1).await;

    let check = last_check(&bot);
    assert_eq!(check["output"]["title"], "0 / 10000 tasks completed");
    let text = check["output"]["text"].as_str().unwrap();
    assert!(text.len() <= 65_535, "{}", text.len());
    assert!(text.contains("more tasks are not listed"), "{text}");
}
