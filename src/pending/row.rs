//! How a [`WorkItem`] is kept in a store's `pending` row: the key columns
//! (installation, repo, kind, target), one mapping for every store.

use super::{PendingError, Retirement, WorkItem};
use crate::github::{InstallationId, PullNumber, PullRequestRef, RepoName};

/// The row key of `item`. A retirement's target is `reason:number:sha`
/// (`retirement_not_blocked!` relies on it).
pub(super) fn key(item: &WorkItem) -> (i64, &str, &'static str, String) {
    match item {
        WorkItem::PullRequest(pull) => (
            pull.installation.0 as i64,
            pull.repo.0.as_str(),
            "pull_request",
            pull.number.0.to_string(),
        ),
        WorkItem::MergeGroup {
            installation,
            repo,
            head_sha,
        } => (
            installation.0 as i64,
            repo.0.as_str(),
            "merge_group",
            head_sha.clone(),
        ),
        WorkItem::Retire {
            pull,
            head_sha,
            reason,
        } => (
            pull.installation.0 as i64,
            pull.repo.0.as_str(),
            "retire",
            format!("{}:{}:{head_sha}", reason.name(), pull.number.0),
        ),
    }
}

pub(super) fn item_from_row(
    installation: InstallationId,
    repo: String,
    kind: &str,
    target: String,
) -> Result<WorkItem, PendingError> {
    let repo = RepoName(repo);
    match kind {
        "pull_request" => {
            let number = target.parse().map_err(|_| {
                PendingError(format!("bad pull request number {target:?} in store"))
            })?;
            Ok(WorkItem::PullRequest(PullRequestRef {
                installation,
                repo,
                number: PullNumber(number),
            }))
        }
        "merge_group" => Ok(WorkItem::MergeGroup {
            installation,
            repo,
            head_sha: target,
        }),
        "retire" => {
            let bad = || PendingError(format!("bad retirement {target:?} in store"));
            let mut parts = target.splitn(3, ':');
            let reason = parts.next().and_then(Retirement::parse).ok_or_else(bad)?;
            let number = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
            let head_sha = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
            Ok(WorkItem::Retire {
                pull: PullRequestRef {
                    installation,
                    repo,
                    number: PullNumber(number),
                },
                head_sha: head_sha.to_owned(),
                reason,
            })
        }
        other => Err(PendingError(format!("unknown kind {other:?} in store"))),
    }
}
