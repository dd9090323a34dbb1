//! Asking GitHub to redeliver what no worker could answer.
//!
//! GitHub never resends a failed delivery by itself. This job lists the
//! App's recent deliveries (as the App, with its JWT), finds the delivery
//! GUIDs that never got a 2xx answer, and asks for one redelivery of each.
//! It is idempotent across runs: a GUID with a redelivery attempt on
//! GitHub's side, or one recorded in the store, is not asked for again.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::Method;
use serde::Deserialize;

use crate::github::{GitHub, GitHubError};
use crate::pending::SqlitePendingSet;

/// One attempt at a delivery, as `GET /app/hook/deliveries` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryAttempt {
    pub id: u64,
    pub guid: String,
    pub delivered_at: DateTime<Utc>,
    #[serde(default)]
    pub redelivery: bool,
    /// 0 when GitHub could not connect at all.
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub event: String,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub attempts_seen: usize,
    pub failed_deliveries: usize,
    pub redelivered: usize,
    pub already_requested: usize,
    pub errors: usize,
}

/// The deliveries that need a redelivery: per GUID, no 2xx attempt and no
/// redelivery attempt yet; returns the id of the newest attempt of each.
pub fn needing_redelivery(attempts: &[DeliveryAttempt]) -> Vec<(String, u64)> {
    let mut by_guid: BTreeMap<&str, Vec<&DeliveryAttempt>> = BTreeMap::new();
    for attempt in attempts {
        by_guid
            .entry(attempt.guid.as_str())
            .or_default()
            .push(attempt);
    }
    by_guid
        .into_iter()
        .filter(|(_, tries)| {
            !tries.iter().any(|t| (200..300).contains(&t.status_code))
                && !tries.iter().any(|t| t.redelivery)
        })
        .filter_map(|(guid, tries)| {
            let newest = tries.iter().max_by_key(|t| t.delivered_at)?;
            Some((guid.to_owned(), newest.id))
        })
        .collect()
}

/// Lists deliveries newer than `since`, following GitHub's cursor pages.
pub async fn recent_attempts(
    github: &GitHub,
    since: Duration,
) -> Result<Vec<DeliveryAttempt>, GitHubError> {
    let horizon =
        Utc::now() - chrono::Duration::from_std(since).unwrap_or(chrono::Duration::days(3));
    let app = github.as_app();
    let mut attempts = Vec::new();
    let mut next = Some("/app/hook/deliveries?per_page=100".to_owned());
    while let Some(path) = next {
        let answer = app.send(Method::GET, &path, None).await?;
        let page: Vec<DeliveryAttempt> =
            serde_json::from_slice(&answer.body).map_err(|e| GitHubError::Decode {
                path: path.clone(),
                cause: e.to_string(),
                request_id: answer.request_id(),
            })?;
        // Newest first: once a page reaches past the horizon, stop.
        let reached_horizon = page.iter().any(|a| a.delivered_at < horizon);
        attempts.extend(page.into_iter().filter(|a| a.delivered_at >= horizon));
        next = if reached_horizon {
            None
        } else {
            answer.next_page()
        };
    }
    Ok(attempts)
}

/// One run of the job.
pub async fn run(
    github: &GitHub,
    store: &SqlitePendingSet,
    since: Duration,
) -> crate::Result<Report> {
    let attempts = recent_attempts(github, since).await?;
    let failed = needing_redelivery(&attempts);
    let mut report = Report {
        attempts_seen: attempts.len(),
        failed_deliveries: failed.len(),
        ..Report::default()
    };
    let app = github.as_app();
    for (guid, attempt_id) in failed {
        if store.redelivery_requested(&guid)? {
            report.already_requested += 1;
            continue;
        }
        let path = format!("/app/hook/deliveries/{attempt_id}/attempts");
        match app.send(Method::POST, &path, None).await {
            Ok(answer) => {
                store.record_redelivery(&guid)?;
                report.redelivered += 1;
                tracing::info!(delivery_id = %guid, attempt_id, github_request_id = %answer.request_id(), "redelivery requested");
            }
            Err(error) => {
                report.errors += 1;
                tracing::error!(delivery_id = %guid, attempt_id, %error, "cannot request redelivery");
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(
        id: u64,
        guid: &str,
        status_code: u16,
        redelivery: bool,
        minute: u32,
    ) -> DeliveryAttempt {
        DeliveryAttempt {
            id,
            guid: guid.into(),
            delivered_at: DateTime::parse_from_rfc3339(&format!("2026-01-01T00:{minute:02}:00Z"))
                .unwrap()
                .with_timezone(&Utc),
            redelivery,
            status_code,
            event: "pull_request".into(),
        }
    }

    #[test]
    fn only_deliveries_that_never_succeeded_and_were_never_redelivered_are_picked() {
        let attempts = [
            attempt(1, "ok", 202, false, 1),
            attempt(2, "failed", 503, false, 2),
            attempt(3, "refused", 0, false, 3),
            attempt(4, "failed-then-ok", 502, false, 4),
            attempt(5, "failed-then-ok", 200, true, 5),
            attempt(6, "already-redelivered", 503, false, 6),
            attempt(7, "already-redelivered", 503, true, 7),
        ];
        let mut picked = needing_redelivery(&attempts);
        picked.sort();
        assert_eq!(
            picked,
            [("failed".to_owned(), 2), ("refused".to_owned(), 3)]
        );
    }
}
