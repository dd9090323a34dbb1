//! From a pull request's state to the check run that describes it. Pure: no
//! I/O, no clock (the caller passes the time).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::event::PayloadSnapshot;
use crate::github::PullRequestState;
use crate::tasklist::{CheckOutput, TaskList};

/// The check's name, which branch protection rules refer to.
pub const CHECK_NAME: &str = "task-list-completed";

/// Pull requests by this login keep their body out of the count: Renovate
/// writes its own checkboxes (for rebasing and the like) into the body.
const RENOVATE: &str = "renovate[bot]";

/// Everything a check is computed from, in the order the old app read it.
pub struct TaskSources<'a> {
    pub author: &'a str,
    pub body: Option<&'a str>,
    /// (author, body) of every issue comment, review and review comment.
    pub discussion: Vec<(&'a str, &'a str)>,
}

impl<'a> TaskSources<'a> {
    /// What a delivery's payload alone shows: the pull request's body and
    /// the comment or review that triggered it (dry runs, `receive`).
    pub fn from_snapshot(snapshot: &'a PayloadSnapshot) -> TaskSources<'a> {
        TaskSources {
            author: &snapshot.author,
            body: snapshot.body.as_deref(),
            discussion: snapshot
                .discussion
                .iter()
                .map(|(author, body)| (author.as_str(), body.as_str()))
                .collect(),
        }
    }

    pub fn from_state(state: &'a PullRequestState) -> TaskSources<'a> {
        let discussion = state
            .issue_comments
            .iter()
            .chain(&state.reviews)
            .chain(&state.review_comments)
            .map(|item| (item.login(), item.body.as_deref().unwrap_or("")))
            .collect();
        TaskSources {
            author: &state.pull.user.login,
            body: state.pull.body.as_deref(),
            discussion,
        }
    }

    /// The tasks that count: the body unless Renovate wrote it, then every
    /// comment not written by an ignored bot.
    pub fn tasks(&self, ignored_bots: &[String]) -> TaskList {
        let mut tasks = TaskList::default();
        if !self.author.contains(RENOVATE) {
            tasks.extend_from(self.body.unwrap_or(""));
        }
        for (author, body) in &self.discussion {
            if !ignored_bots.iter().any(|bot| bot == author) {
                tasks.extend_from(body);
            }
        }
        tasks
    }
}

/// The body of `POST /repos/{owner}/{repo}/check-runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRunRequest {
    pub name: &'static str,
    pub head_sha: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub output: CheckOutput,
}

impl CheckRunRequest {
    /// In progress while required tasks remain, a success once none do.
    pub fn for_tasks(head_sha: &str, tasks: &TaskList, now: DateTime<Utc>) -> CheckRunRequest {
        let output = tasks.render();
        if tasks.is_complete() {
            return CheckRunRequest::success(head_sha, output, now);
        }
        CheckRunRequest {
            name: CHECK_NAME,
            head_sha: head_sha.to_owned(),
            status: "in_progress",
            conclusion: None,
            started_at: Some(timestamp(now)),
            completed_at: None,
            output,
        }
    }

    /// The immediate success for a merge queue's merge commit.
    pub fn merge_group(head_sha: &str, now: DateTime<Utc>) -> CheckRunRequest {
        let output = CheckOutput {
            title: "All tasks already verified".into(),
            summary: "Tasks were already checked before this PR entered the merge queue".into(),
            text: String::new(),
        };
        CheckRunRequest::success(head_sha, output, now)
    }

    fn success(head_sha: &str, output: CheckOutput, now: DateTime<Utc>) -> CheckRunRequest {
        CheckRunRequest {
            name: CHECK_NAME,
            head_sha: head_sha.to_owned(),
            status: "completed",
            conclusion: Some("success"),
            started_at: None,
            completed_at: Some(timestamp(now)),
            output,
        }
    }

    /// Whether `existing` already says what this request would say, so the
    /// write can be skipped. Timestamps do not count.
    pub fn says_the_same_as(&self, existing: &ExistingCheckRun) -> bool {
        existing.head_sha == self.head_sha
            && existing.status == self.status
            && existing.conclusion.as_deref() == self.conclusion
            && existing.output.title.as_deref() == Some(self.output.title.as_str())
            && existing.output.summary.as_deref() == Some(self.output.summary.as_str())
            && existing.output.text.as_deref().unwrap_or("") == self.output.text
    }
}

/// A check run as `GET .../check-runs` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct ExistingCheckRun {
    pub id: u64,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub output: ExistingOutput,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExistingOutput {
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
}

/// ISO 8601 as GitHub writes it: `2024-01-02T03:04:05Z`.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bots() -> Vec<String> {
        crate::config::DEFAULT_IGNORED_BOTS
            .split(',')
            .map(str::to_owned)
            .collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn checkboxes_of_known_bots_are_ignored_in_every_kind_of_comment() {
        for bot in ["linear", "linear[bot]", "coderabbitai[bot]"] {
            let sources = TaskSources {
                author: "alice",
                body: Some("- [ ] human task"),
                discussion: vec![(bot, "- [x] bot one\n- [ ] bot two"), ("bob", "no tasks")],
            };
            let tasks = sources.tasks(&bots());
            assert_eq!(tasks.render().title, "0 / 1 tasks completed", "{bot}");
        }
    }

    #[test]
    fn renovate_bodies_do_not_count_but_comments_on_them_do() {
        let sources = TaskSources {
            author: "renovate[bot]",
            body: Some("- [ ] <!-- rebase-check -->If you want to rebase"),
            discussion: vec![("alice", "- [x] reviewed the lockfile")],
        };
        let tasks = sources.tasks(&bots());
        assert_eq!(tasks.render().title, "1 / 1 tasks completed");
        assert!(tasks.is_complete());
    }

    #[test]
    fn open_tasks_give_an_in_progress_check_and_none_a_success() {
        let open = TaskList::parse("- [ ] a\n- [x] b");
        let request = CheckRunRequest::for_tasks("abc", &open, now());
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json["name"], "task-list-completed");
        assert_eq!(json["status"], "in_progress");
        assert_eq!(json["started_at"], "2026-01-02T03:04:05Z");
        assert!(json.get("conclusion").is_none() && json.get("completed_at").is_none());

        let done = TaskList::parse("- [x] a\n- [x] b");
        let json = serde_json::to_value(CheckRunRequest::for_tasks("abc", &done, now())).unwrap();
        assert_eq!(json["status"], "completed");
        assert_eq!(json["conclusion"], "success");
        assert_eq!(json["completed_at"], "2026-01-02T03:04:05Z");
        assert!(json.get("started_at").is_none());
    }

    #[test]
    fn merge_group_success_has_the_old_strings() {
        let request = CheckRunRequest::merge_group("feed", now());
        assert_eq!(request.output.title, "All tasks already verified");
        assert_eq!(
            request.output.summary,
            "Tasks were already checked before this PR entered the merge queue"
        );
        assert_eq!(request.conclusion, Some("success"));
    }

    #[test]
    fn an_identical_existing_check_is_recognised_and_a_different_one_is_not() {
        let request = CheckRunRequest::for_tasks("abc", &TaskList::parse("- [ ] a"), now());
        let existing = |title: &str, status: &str| ExistingCheckRun {
            id: 1,
            head_sha: "abc".into(),
            status: status.into(),
            conclusion: None,
            output: ExistingOutput {
                title: Some(title.into()),
                summary: Some(request.output.summary.clone()),
                text: Some(request.output.text.clone()),
            },
        };
        assert!(request.says_the_same_as(&existing(&request.output.title, "in_progress")));
        assert!(!request.says_the_same_as(&existing("1 / 1 tasks completed", "in_progress")));
        assert!(!request.says_the_same_as(&existing(&request.output.title, "completed")));
    }
}
