//! From a pull request's state to the check run that describes it. Pure: no
//! I/O, no clock (the caller passes the time).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::event::PayloadSnapshot;
use crate::github::PullRequestState;
use crate::tasklist::{CheckOutput, Markers, TaskList};

/// The check's name, which branch protection rules refer to.
pub const CHECK_NAME: &str = "task-list-completed";

/// Pull requests by this login keep their body out of the count: Renovate
/// writes its own checkboxes (for rebasing and the like) into the body.
const RENOVATE: &str = "renovate[bot]";

/// A kind of document a repository may count tasks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The pull request's description.
    Body,
    /// Issue comments on the pull request.
    Comments,
    /// Review bodies.
    Reviews,
    /// Comments on lines of the diff.
    ReviewComments,
}

impl Source {
    /// Every source, in the order they are read: today's behaviour.
    pub const ALL: [Source; 4] = [
        Source::Body,
        Source::Comments,
        Source::Reviews,
        Source::ReviewComments,
    ];

    /// The name settings files use.
    pub fn name(self) -> &'static str {
        match self {
            Source::Body => "body",
            Source::Comments => "comments",
            Source::Reviews => "reviews",
            Source::ReviewComments => "review_comments",
        }
    }
}

/// How a repository counts tasks; the default is today's behaviour.
#[derive(Debug, Clone, Copy)]
pub struct CountRules<'a> {
    pub markers: &'a Markers,
    pub ignored_bots: &'a [String],
    /// Count the body of a pull request opened by Renovate.
    pub count_renovate_body: bool,
}

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

    /// Like [`TaskSources::from_state`], with only the documents of the
    /// chosen `sources` (the body is left out when `Source::Body` is not
    /// among them); the order stays body, comments, reviews, review comments.
    pub fn from_state_selected(state: &'a PullRequestState, sources: &[Source]) -> TaskSources<'a> {
        let chosen = |source: Source, items: &'a [crate::github::Authored]| {
            let items = if sources.contains(&source) {
                items
            } else {
                &[]
            };
            items
                .iter()
                .map(|item| (item.login(), item.body.as_deref().unwrap_or("")))
        };
        let discussion = chosen(Source::Comments, &state.issue_comments)
            .chain(chosen(Source::Reviews, &state.reviews))
            .chain(chosen(Source::ReviewComments, &state.review_comments))
            .collect();
        TaskSources {
            author: &state.pull.user.login,
            body: state
                .pull
                .body
                .as_deref()
                .filter(|_| sources.contains(&Source::Body)),
            discussion,
        }
    }

    /// The tasks that count: the body unless Renovate wrote it, then every
    /// comment not written by an ignored bot.
    pub fn tasks(&self, ignored_bots: &[String]) -> TaskList {
        self.tasks_with(&CountRules {
            markers: &Markers::default(),
            ignored_bots,
            count_renovate_body: false,
        })
    }

    /// [`TaskSources::tasks`] under a repository's rules.
    pub fn tasks_with(&self, rules: &CountRules<'_>) -> TaskList {
        let mut tasks = TaskList::default();
        if rules.count_renovate_body || !self.author.contains(RENOVATE) {
            tasks.extend_from_with(self.body.unwrap_or(""), rules.markers);
        }
        for (author, body) in &self.discussion {
            if !rules.ignored_bots.iter().any(|bot| bot == author) {
                tasks.extend_from_with(body, rules.markers);
            }
        }
        tasks
    }
}

/// The body of `POST /repos/{owner}/{repo}/check-runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRunRequest {
    pub name: String,
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
        CheckRunRequest::for_tasks_with(head_sha, tasks, now, CHECK_NAME, ("in_progress", None))
    }

    /// A repository's check: named `name`, with `incomplete` (a `status`
    /// and `conclusion`) while required tasks remain, and a success once
    /// none do.
    pub fn for_tasks_with(
        head_sha: &str,
        tasks: &TaskList,
        now: DateTime<Utc>,
        name: &str,
        incomplete: (&'static str, Option<&'static str>),
    ) -> CheckRunRequest {
        let output = tasks.render();
        if tasks.is_complete() {
            let mut success = CheckRunRequest::success(head_sha, output, now);
            success.name = name.to_owned();
            return success;
        }
        let (status, conclusion) = incomplete;
        let completed = status == "completed";
        CheckRunRequest {
            name: name.to_owned(),
            head_sha: head_sha.to_owned(),
            status,
            conclusion,
            started_at: (!completed).then(|| timestamp(now)),
            completed_at: completed.then(|| timestamp(now)),
            output,
        }
    }

    /// Completes, as neutral, a check left in progress on a commit that is
    /// no longer the head of an open pull request, so that it does not
    /// stay "in progress" forever. `why` is the title's reason: "superseded
    /// by a newer commit", "pull request closed", "pull request merged".
    pub fn retired(head_sha: &str, name: &str, why: &str, now: DateTime<Utc>) -> CheckRunRequest {
        CheckRunRequest {
            name: name.to_owned(),
            head_sha: head_sha.to_owned(),
            status: "completed",
            conclusion: Some("neutral"),
            started_at: None,
            completed_at: Some(timestamp(now)),
            output: CheckOutput {
                title: format!("Not checked: {why}"),
                summary: format!(
                    "This check was in progress when it stopped applying ({why}); it is completed so that it is not left in progress."
                ),
                text: String::new(),
            },
        }
    }

    /// Puts `report` (markdown) before the output's text, keeping the text
    /// within GitHub's limit by cutting the end of the old text.
    pub fn prepend_text(&mut self, report: &str) {
        if report.is_empty() {
            return;
        }
        let mut text = format!("{report}\n{}", self.output.text);
        if text.len() > crate::tasklist::MAX_OUTPUT_BYTES {
            let mut cut = crate::tasklist::MAX_OUTPUT_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        self.output.text = text;
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
            name: CHECK_NAME.to_owned(),
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

    fn state_with_every_source() -> PullRequestState {
        let authored = |login: &str, body: &str| crate::github::Authored {
            user: Some(crate::github::User {
                login: login.into(),
            }),
            body: Some(body.into()),
        };
        PullRequestState {
            pull: crate::github::PullRequest {
                number: 1,
                created_at: None,
                state: "open".into(),
                merged: false,
                body: Some("- [ ] body".into()),
                user: crate::github::User {
                    login: "renovate[bot]".into(),
                },
                head: crate::github::Head { sha: "abc".into() },
            },
            issue_comments: vec![authored("alice", "- [ ] comment")],
            reviews: vec![authored("bob", "- [ ] review")],
            review_comments: vec![authored("carol", "- [ ] review comment")],
        }
    }

    fn texts(tasks: &TaskList) -> Vec<&str> {
        tasks.required.iter().map(|t| t.text.as_str()).collect()
    }

    #[test]
    fn a_repository_may_choose_its_sources_and_count_renovate_bodies() {
        let state = state_with_every_source();
        let markers = Markers::default();
        let rules = CountRules {
            markers: &markers,
            ignored_bots: &[],
            count_renovate_body: true,
        };
        let all = TaskSources::from_state_selected(&state, &Source::ALL).tasks_with(&rules);
        assert_eq!(texts(&all), ["body", "comment", "review", "review comment"]);
        let some = TaskSources::from_state_selected(&state, &[Source::Reviews, Source::Body])
            .tasks_with(&rules);
        assert_eq!(texts(&some), ["body", "review"]);
        let bots = ["bob".to_owned()];
        let without_renovate = CountRules {
            ignored_bots: &bots,
            count_renovate_body: false,
            ..rules
        };
        let today =
            TaskSources::from_state_selected(&state, &Source::ALL).tasks_with(&without_renovate);
        assert_eq!(texts(&today), ["comment", "review comment"]);
        assert_eq!(
            today,
            TaskSources::from_state(&state).tasks(&bots),
            "the defaults are today's behaviour"
        );
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
    fn a_repository_names_its_check_and_what_it_says_while_tasks_remain() {
        let open = TaskList::parse("- [ ] a");
        let failing = CheckRunRequest::for_tasks_with(
            "abc",
            &open,
            now(),
            "tasks",
            ("completed", Some("failure")),
        );
        let json = serde_json::to_value(&failing).unwrap();
        assert_eq!(json["name"], "tasks");
        assert_eq!(json["status"], "completed");
        assert_eq!(json["conclusion"], "failure");
        assert_eq!(json["completed_at"], "2026-01-02T03:04:05Z");
        assert!(json.get("started_at").is_none());
        let done = TaskList::parse("- [x] a");
        let json = serde_json::to_value(CheckRunRequest::for_tasks_with(
            "abc",
            &done,
            now(),
            "tasks",
            ("completed", Some("failure")),
        ))
        .unwrap();
        assert_eq!(
            (&json["name"], &json["conclusion"]),
            (&"tasks".into(), &"success".into())
        );

        let retired = CheckRunRequest::retired("abc", "tasks", "pull request closed", now());
        assert_eq!(retired.status, "completed");
        assert_eq!(retired.conclusion, Some("neutral"));
        assert_eq!(retired.output.title, "Not checked: pull request closed");

        let mut long = CheckRunRequest::for_tasks("abc", &open, now());
        long.output.text = "x".repeat(crate::tasklist::MAX_OUTPUT_BYTES);
        long.prepend_text("## Settings not applied");
        assert!(long.output.text.starts_with("## Settings not applied\n"));
        assert_eq!(long.output.text.len(), crate::tasklist::MAX_OUTPUT_BYTES);
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
