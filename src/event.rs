//! [`Event`]: the closed set of webhook deliveries the bot reacts to, decoded
//! from GitHub's payloads. Anything else decodes to [`Event::Ignored`].

use serde::Deserialize;

use crate::github::{InstallationId, PullNumber, PullRequestRef, RepoName};

/// What a delivery asks of the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Something that may change a pull request's tasks happened: its check
    /// must be recomputed from fresh state.
    PullRequestChanged {
        pull: PullRequestRef,
        /// What the payload itself says, used only in dry-run mode.
        snapshot: PayloadSnapshot,
        /// On `synchronize`: the head commit the pull request had before
        /// (`before`), whose check the new head supersedes.
        superseded_head: Option<String>,
    },
    /// A pull request was closed (merged or not): a check the bot left in
    /// progress on its head commit is completed.
    PullRequestClosed {
        pull: PullRequestRef,
        head_sha: String,
        merged: bool,
    },
    /// A merge queue wants checks on a merge commit: the tasks were verified
    /// before the pull request entered the queue.
    MergeGroupChecksRequested {
        installation: InstallationId,
        repo: RepoName,
        head_sha: String,
    },
    /// Not for this bot; answered 200 and dropped.
    Ignored { reason: String },
}

/// The pull request as a payload describes it: enough for dry-run mode to
/// compute a check without calling GitHub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadSnapshot {
    pub head_sha: Option<String>,
    pub author: String,
    pub body: Option<String>,
    /// The comment or review that triggered the delivery: (author, body).
    pub discussion: Vec<(String, String)>,
}

/// A payload that cannot be what its event name says.
#[derive(Debug, thiserror::Error)]
#[error("malformed {event} payload: {source}")]
pub struct DecodeError {
    pub event: String,
    #[source]
    pub source: serde_json::Error,
}

impl Event {
    /// Decodes a delivery of type `event_name` (the `X-GitHub-Event` header).
    pub fn decode(event_name: &str, payload: &[u8]) -> Result<Event, DecodeError> {
        let fail = |source| DecodeError {
            event: event_name.to_owned(),
            source,
        };
        let not_handled = |action: &str| {
            Ok(Event::Ignored {
                reason: format!("{event_name}.{action} is not handled"),
            })
        };
        // GitHub's payloads begin with their action: a delivery the bot
        // ignores is answered without reading the rest (most of what an
        // App subscribed to pull requests receives is ignored).
        if let Some(action) = leading_action(payload)
            && !is_handled(event_name, action)
        {
            return not_handled(action);
        }
        if !is_handled_event(event_name) {
            // Only the envelope: what is not handled is not read further.
            let envelope: Envelope = serde_json::from_slice(payload).map_err(fail)?;
            let action = envelope.action.as_deref().unwrap_or("");
            return not_handled(action);
        }
        // One pass over the payload (the acknowledgement waits for it). An
        // action the bot does not handle may carry parts of another shape:
        // those deliveries are read again as an envelope only.
        let p: Payload = match serde_json::from_slice(payload) {
            Ok(p) => p,
            Err(error) => {
                let envelope: Envelope = serde_json::from_slice(payload).map_err(fail)?;
                let action = envelope.action.as_deref().unwrap_or("");
                if is_handled(event_name, action) {
                    return Err(fail(error));
                }
                return not_handled(action);
            }
        };
        let action = p.action.as_deref().unwrap_or("");
        if !is_handled(event_name, action) {
            return not_handled(action);
        }
        let Some(installation) = p.installation else {
            return Ok(Event::Ignored {
                reason: "no installation in payload".into(),
            });
        };
        let installation = InstallationId(installation.id);
        let missing = |field| {
            fail(<serde_json::Error as serde::de::Error>::missing_field(
                field,
            ))
        };
        let repo = RepoName(p.repository.ok_or_else(|| missing("repository"))?.full_name);
        match event_name {
            "merge_group" => Ok(Event::MergeGroupChecksRequested {
                installation,
                repo,
                head_sha: p
                    .merge_group
                    .ok_or_else(|| missing("merge_group"))?
                    .head_sha,
            }),
            "issue_comment" => {
                let issue = p.issue.ok_or_else(|| missing("issue"))?;
                let comment = p.comment.ok_or_else(|| missing("comment"))?;
                if issue.pull_request.is_none() {
                    return Ok(Event::Ignored {
                        reason: "comment on an issue, not a pull request".into(),
                    });
                }
                Ok(Event::PullRequestChanged {
                    superseded_head: None,
                    pull: PullRequestRef {
                        installation,
                        repo,
                        number: PullNumber(issue.number),
                    },
                    snapshot: PayloadSnapshot {
                        // issue_comment payloads carry no head sha.
                        head_sha: None,
                        author: issue.user.login,
                        body: issue.body,
                        discussion: vec![(comment.user.login, comment.body.unwrap_or_default())],
                    },
                })
            }
            _ => {
                let pull_request = p.pull_request.ok_or_else(|| missing("pull_request"))?;
                let pull = PullRequestRef {
                    installation,
                    repo,
                    number: PullNumber(pull_request.number),
                };
                if event_name == "pull_request" && action == "closed" {
                    return Ok(Event::PullRequestClosed {
                        pull,
                        head_sha: pull_request.head.sha,
                        merged: pull_request.merged.unwrap_or(false),
                    });
                }
                let superseded_head = p
                    .before
                    .filter(|before| action == "synchronize" && *before != pull_request.head.sha)
                    .filter(|before| before.bytes().any(|b| b != b'0'));
                let mut discussion = Vec::new();
                for item in [p.review, p.comment].into_iter().flatten() {
                    discussion.push((item.user.login, item.body.unwrap_or_default()));
                }
                Ok(Event::PullRequestChanged {
                    pull,
                    superseded_head,
                    snapshot: PayloadSnapshot {
                        head_sha: Some(pull_request.head.sha),
                        author: pull_request.user.login,
                        body: pull_request.body,
                        discussion,
                    },
                })
            }
        }
    }
}

/// A `push` delivery, as far as per-repository settings care: which files
/// it may have changed on the default branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub installation: Option<InstallationId>,
    pub repo: RepoName,
    /// Whether it moved the default branch, where settings are read from.
    pub to_default_branch: bool,
    /// Files its commits added, modified or removed.
    pub paths: std::collections::BTreeSet<String>,
    /// Whether `paths` may be incomplete: a forced push or a deletion lists
    /// no commits for what changed, and GitHub lists at most 2048 commits.
    pub paths_incomplete: bool,
}

impl Push {
    /// GitHub lists at most this many commits in a push payload.
    const MAX_LISTED_COMMITS: usize = 2048;

    /// Decodes a `push` payload.
    pub fn decode(payload: &[u8]) -> Result<Push, DecodeError> {
        #[derive(Deserialize)]
        struct Payload {
            #[serde(rename = "ref")]
            git_ref: String,
            #[serde(default)]
            forced: bool,
            #[serde(default)]
            deleted: bool,
            #[serde(default)]
            commits: Vec<Commit>,
            repository: PushRepository,
            installation: Option<Installation>,
        }
        #[derive(Deserialize)]
        struct PushRepository {
            full_name: String,
            default_branch: Option<String>,
        }
        #[derive(Deserialize)]
        struct Commit {
            #[serde(default)]
            added: Vec<String>,
            #[serde(default)]
            modified: Vec<String>,
            #[serde(default)]
            removed: Vec<String>,
        }
        let p: Payload = serde_json::from_slice(payload).map_err(|source| DecodeError {
            event: "push".into(),
            source,
        })?;
        let to_default_branch = p
            .repository
            .default_branch
            .is_some_and(|branch| p.git_ref == format!("refs/heads/{branch}"));
        let paths_incomplete = p.forced
            || p.deleted
            || p.commits.is_empty()
            || p.commits.len() >= Self::MAX_LISTED_COMMITS;
        let paths = p
            .commits
            .into_iter()
            .flat_map(|c| c.added.into_iter().chain(c.modified).chain(c.removed))
            .collect();
        Ok(Push {
            installation: p.installation.map(|i| InstallationId(i.id)),
            repo: RepoName(p.repository.full_name),
            to_default_branch,
            paths,
            paths_incomplete,
        })
    }

    /// Whether this push may have changed `path` on the default branch.
    pub fn may_touch(&self, path: &str) -> bool {
        self.to_default_branch && (self.paths_incomplete || self.paths.contains(path))
    }
}

/// The events and actions the old app reacted to, plus comment and review
/// edits and deletions, which change tasks just as much, and `closed`,
/// which ends the pull request's check.
/// The `action` of a payload that begins with it, as GitHub's do
/// (`{"action":"labeled",...`); `None` for any other start, or an action
/// with escapes, which are then read as a whole.
fn leading_action(payload: &[u8]) -> Option<&str> {
    let rest = payload.trim_ascii_start().strip_prefix(b"{")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"action\"")?;
    let rest = rest.trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

/// Whether some action of `event` is handled.
fn is_handled_event(event: &str) -> bool {
    matches!(
        event,
        "pull_request"
            | "issue_comment"
            | "pull_request_review"
            | "pull_request_review_comment"
            | "merge_group"
    )
}

fn is_handled(event: &str, action: &str) -> bool {
    match event {
        "pull_request" => matches!(
            action,
            "opened" | "edited" | "synchronize" | "reopened" | "closed"
        ),
        "issue_comment" => matches!(action, "created" | "edited" | "deleted"),
        "pull_request_review" => matches!(action, "submitted" | "edited" | "dismissed"),
        "pull_request_review_comment" => matches!(action, "created" | "edited" | "deleted"),
        "merge_group" => action == "checks_requested",
        _ => false,
    }
}

#[derive(Deserialize)]
struct Envelope {
    action: Option<String>,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct Authored {
    user: User,
    body: Option<String>,
}

/// Every part of a handled delivery the bot reads, whichever its event:
/// one pass decodes them all.
#[derive(Deserialize)]
struct Payload {
    action: Option<String>,
    installation: Option<Installation>,
    repository: Option<Repository>,
    /// `synchronize` only: the head commit before the push.
    before: Option<String>,
    pull_request: Option<PullRequest>,
    review: Option<Authored>,
    comment: Option<Authored>,
    issue: Option<Issue>,
    merge_group: Option<MergeGroup>,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    merged: Option<bool>,
    body: Option<String>,
    user: User,
    head: Head,
}

#[derive(Deserialize)]
struct Head {
    sha: String,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    body: Option<String>,
    user: User,
    /// Present only when the issue is a pull request.
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct MergeGroup {
    head_sha: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn push_payload(git_ref: &str, commits: serde_json::Value) -> Vec<u8> {
        json!({
            "ref": git_ref,
            "forced": false,
            "deleted": false,
            "commits": commits,
            "repository": {"full_name": "octo/repo", "default_branch": "main"},
            "installation": {"id": 9}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_push_tells_which_files_it_may_have_changed_on_the_default_branch() {
        let settings = ".github/task-list-completed.yml";
        let commits = json!([
            {"added": ["src/a.rs"], "modified": [settings], "removed": []},
            {"added": [], "modified": ["README.md"], "removed": ["old.txt"]}
        ]);
        let push = Push::decode(&push_payload("refs/heads/main", commits.clone())).unwrap();
        assert_eq!(push.installation, Some(InstallationId(9)));
        assert_eq!(push.repo, RepoName("octo/repo".into()));
        assert!(push.may_touch(settings) && push.may_touch("old.txt"));
        assert!(!push.may_touch("other.yml"));

        let topic = Push::decode(&push_payload("refs/heads/topic", commits)).unwrap();
        assert!(!topic.may_touch(settings), "other branches do not count");

        let untouched = json!([{"added": [], "modified": ["README.md"], "removed": []}]);
        let push = Push::decode(&push_payload("refs/heads/main", untouched)).unwrap();
        assert!(!push.may_touch(settings));

        let no_commits = Push::decode(&push_payload("refs/heads/main", json!([]))).unwrap();
        assert!(
            no_commits.may_touch(settings),
            "a push listing nothing may change anything"
        );

        let malformed = Push::decode(br#"{"ref": 1}"#).unwrap_err();
        assert_eq!(malformed.event, "push");
    }

    fn pull_request_payload(action: &str) -> serde_json::Value {
        json!({
            "action": action,
            "number": 7,
            "pull_request": {"number": 7, "body": "- [ ] a", "user": {"login": "alice"},
                             "head": {"sha": "abc123", "ref": "topic"}},
            "repository": {"full_name": "octo/repo", "name": "repo", "owner": {"login": "octo"}},
            "installation": {"id": 9}
        })
    }

    fn decode(event: &str, payload: &serde_json::Value) -> Event {
        Event::decode(event, payload.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn pull_request_actions_that_change_tasks_recompute() {
        for action in ["opened", "edited", "synchronize", "reopened"] {
            let event = decode("pull_request", &pull_request_payload(action));
            let Event::PullRequestChanged { pull, snapshot, .. } = event else {
                panic!("{action}: {event:?}");
            };
            assert_eq!(pull.installation, InstallationId(9));
            assert_eq!(pull.repo.0, "octo/repo");
            assert_eq!(pull.number, PullNumber(7));
            assert_eq!(snapshot.head_sha.as_deref(), Some("abc123"));
            assert_eq!(snapshot.body.as_deref(), Some("- [ ] a"));
        }
        for action in ["labeled", "assigned"] {
            assert!(matches!(
                decode("pull_request", &pull_request_payload(action)),
                Event::Ignored { .. }
            ));
        }
    }

    #[test]
    fn a_new_head_supersedes_the_old_one_and_closing_ends_the_check() {
        let mut payload = pull_request_payload("synchronize");
        payload["before"] = json!("old123");
        let Event::PullRequestChanged {
            superseded_head, ..
        } = decode("pull_request", &payload)
        else {
            panic!()
        };
        assert_eq!(superseded_head.as_deref(), Some("old123"));
        payload["before"] = json!("0000000000000000000000000000000000000000");
        assert!(matches!(
            decode("pull_request", &payload),
            Event::PullRequestChanged {
                superseded_head: None,
                ..
            }
        ));
        let mut closed = pull_request_payload("closed");
        closed["pull_request"]["merged"] = json!(true);
        assert_eq!(
            decode("pull_request", &closed),
            Event::PullRequestClosed {
                pull: PullRequestRef {
                    installation: InstallationId(9),
                    repo: RepoName("octo/repo".into()),
                    number: PullNumber(7),
                },
                head_sha: "abc123".into(),
                merged: true,
            }
        );
    }

    #[test]
    fn issue_comment_counts_only_on_pull_requests() {
        let mut payload = json!({
            "action": "created",
            "issue": {"number": 3, "body": "b", "user": {"login": "alice"}, "pull_request": {"url": "u"}},
            "comment": {"body": "- [x] done", "user": {"login": "bob"}},
            "repository": {"full_name": "octo/repo"},
            "installation": {"id": 1}
        });
        let Event::PullRequestChanged { snapshot, .. } = decode("issue_comment", &payload) else {
            panic!()
        };
        assert_eq!(
            snapshot.discussion,
            [("bob".to_owned(), "- [x] done".to_owned())]
        );
        payload["issue"]
            .as_object_mut()
            .unwrap()
            .remove("pull_request");
        assert!(matches!(
            decode("issue_comment", &payload),
            Event::Ignored { .. }
        ));
    }

    #[test]
    fn merge_group_checks_requested_carries_the_merge_sha() {
        let payload = json!({
            "action": "checks_requested",
            "merge_group": {"head_sha": "feed", "head_ref": "refs/heads/gh-readonly-queue/main/pr-1"},
            "repository": {"full_name": "octo/repo"},
            "installation": {"id": 5}
        });
        assert_eq!(
            decode("merge_group", &payload),
            Event::MergeGroupChecksRequested {
                installation: InstallationId(5),
                repo: RepoName("octo/repo".into()),
                head_sha: "feed".into()
            }
        );
    }

    #[test]
    fn unknown_events_and_missing_installation_are_ignored() {
        assert!(matches!(
            decode("push", &json!({"ref": "x"})),
            Event::Ignored { .. }
        ));
        let mut payload = pull_request_payload("opened");
        payload.as_object_mut().unwrap().remove("installation");
        assert!(matches!(
            decode("pull_request", &payload),
            Event::Ignored { .. }
        ));
    }

    #[test]
    fn a_handled_event_with_a_broken_shape_is_an_error() {
        let payload = json!({"action": "opened", "installation": {"id": 1}, "pull_request": 5});
        let error = Event::decode("pull_request", payload.to_string().as_bytes()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("malformed pull_request payload")
        );
    }

    #[test]
    fn a_handled_action_without_its_parts_names_what_is_missing() {
        let mut payload = pull_request_payload("opened");
        payload.as_object_mut().unwrap().remove("pull_request");
        let error = Event::decode("pull_request", payload.to_string().as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("missing field `pull_request`"),
            "{error}"
        );

        let mut payload = pull_request_payload("opened");
        payload.as_object_mut().unwrap().remove("repository");
        let error = Event::decode("pull_request", payload.to_string().as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("missing field `repository`"),
            "{error}"
        );
    }

    #[test]
    fn an_action_not_handled_is_ignored_whatever_shape_its_parts_have() {
        let payload = json!({"action": "labeled", "installation": {"id": 1}, "pull_request": 5});
        assert!(matches!(
            decode("pull_request", &payload),
            Event::Ignored { reason } if reason == "pull_request.labeled is not handled"
        ));
    }

    #[test]
    fn an_ignored_action_is_known_from_the_payloads_start() {
        assert_eq!(
            leading_action(br#"{"action":"labeled","number":1}"#),
            Some("labeled")
        );
        assert_eq!(
            leading_action(b" {\n  \"action\" : \"opened\" }"),
            Some("opened")
        );
        assert_eq!(leading_action(br#"{"number":1,"action":"opened"}"#), None);
        assert_eq!(leading_action(br#"{"action":"op\u0065ned"}"#), None);
        assert_eq!(leading_action(br#"{"action":"opened"#), None);
        // Not read past its action: the rest need not even be JSON.
        assert!(matches!(
            Event::decode("pull_request", br#"{"action":"labeled", not json"#),
            Ok(Event::Ignored { .. })
        ));
        // A handled action is read whole, and must be well formed.
        assert!(Event::decode("pull_request", br#"{"action":"opened", not json"#).is_err());
        // An action written with escapes is read whole too.
        let escaped = br#"{"action":"op\u0065ned","installation":{"id":1},"pull_request":5}"#;
        assert!(Event::decode("pull_request", escaped).is_err());
    }
}
