//! Asking GitHub to redeliver what no worker could answer.
//!
//! GitHub never resends a failed delivery by itself, and redelivers only
//! deliveries of the past 3 days ([`REDELIVERY_WINDOW`]). This job lists the
//! App's recent deliveries (as the App, with its JWT), finds the delivery
//! GUIDs that still have no 2xx answer, and asks for a redelivery of each,
//! spaced out: once at first, then again after 10 minutes, 20, 40, … (at
//! most every 6 hours) for as long as no attempt succeeds and the delivery
//! is within the window. What it asked for is remembered in the store, so
//! that runs (every 10 minutes under the timer) keep that spacing; what
//! GitHub lists as redelivery attempts counts too, so a fresh store does not
//! ask again at once. Records are forgotten once their delivery has left
//! the window.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use http::Method;
use serde::Deserialize;

use crate::github::{GitHub, GitHubError};
use crate::pending::{REDELIVERY_WINDOW, RedeliveryRecord, SqlitePendingSet};

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
    /// Deliveries within the window that have no 2xx attempt.
    pub failed_deliveries: usize,
    pub redelivered: usize,
    /// Failed deliveries asked for recently: their next request waits.
    pub already_requested: usize,
    /// Failed deliveries too old for GitHub to redeliver.
    pub out_of_window: usize,
    /// Redelivery records forgotten because their delivery left the window.
    pub forgotten: usize,
    pub errors: usize,
}

/// A delivery GUID none of whose attempts got a 2xx answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanswered {
    pub guid: String,
    /// The newest attempt, the one to ask a redelivery of.
    pub newest_attempt_id: u64,
    /// When GitHub first delivered it: the window counts from here.
    pub first_delivered_at: DateTime<Utc>,
    /// Redelivery attempts GitHub lists, and the newest one's time.
    pub redeliveries: u32,
    pub last_redelivery_at: Option<DateTime<Utc>>,
}

/// The deliveries that never got a 2xx answer, one entry per GUID.
pub fn unanswered(attempts: &[DeliveryAttempt]) -> Vec<Unanswered> {
    let mut by_guid: BTreeMap<&str, Vec<&DeliveryAttempt>> = BTreeMap::new();
    for attempt in attempts {
        by_guid
            .entry(attempt.guid.as_str())
            .or_default()
            .push(attempt);
    }
    by_guid
        .into_iter()
        .filter(|(_, tries)| !tries.iter().any(|t| (200..300).contains(&t.status_code)))
        .filter_map(|(guid, tries)| {
            let newest = tries.iter().max_by_key(|t| t.delivered_at)?;
            let first = tries.iter().map(|t| t.delivered_at).min()?;
            let redeliveries: Vec<_> = tries.iter().filter(|t| t.redelivery).collect();
            Some(Unanswered {
                guid: guid.to_owned(),
                newest_attempt_id: newest.id,
                first_delivered_at: first,
                redeliveries: redeliveries.len() as u32,
                last_redelivery_at: redeliveries.iter().map(|t| t.delivered_at).max(),
            })
        })
        .collect()
}

/// When to ask (again) for a redelivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How far back GitHub redelivers.
    pub window: Duration,
    /// The wait after the first request; it doubles with each further one.
    pub first_spacing: Duration,
    pub max_spacing: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            window: REDELIVERY_WINDOW,
            first_spacing: Duration::from_secs(10 * 60),
            max_spacing: Duration::from_secs(6 * 3600),
        }
    }
}

/// What the policy says of one unanswered delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Ask,
    /// Asked for recently; the next request waits.
    Wait,
    /// Too old for GitHub to redeliver.
    OutOfWindow,
}

impl Policy {
    /// The wait after `requests` requests (at least one).
    pub fn spacing(&self, requests: u32) -> Duration {
        let doublings = requests.saturating_sub(1).min(20);
        self.first_spacing
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.max_spacing)
    }

    pub fn decide(
        &self,
        delivery: &Unanswered,
        record: Option<RedeliveryRecord>,
        now: SystemTime,
    ) -> Decision {
        let first = SystemTime::from(delivery.first_delivered_at);
        if now.duration_since(first).unwrap_or_default() >= self.window {
            return Decision::OutOfWindow;
        }
        let listed_last = delivery.last_redelivery_at.map(SystemTime::from);
        let remembered_last = record.map(|r| r.last_requested);
        let requests = record.map_or(0, |r| r.requests).max(delivery.redeliveries);
        let Some(last) = listed_last.max(remembered_last) else {
            return Decision::Ask;
        };
        if now.duration_since(last).unwrap_or_default() >= self.spacing(requests.max(1)) {
            Decision::Ask
        } else {
            Decision::Wait
        }
    }
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

/// One run of the job with the default [`Policy`], looking back `since`
/// (at most the window).
pub async fn run(
    github: &GitHub,
    store: &SqlitePendingSet,
    since: Duration,
) -> crate::Result<Report> {
    run_with(github, store, since, &Policy::default(), SystemTime::now()).await
}

/// One run of the job at `now`.
pub async fn run_with(
    github: &GitHub,
    store: &SqlitePendingSet,
    since: Duration,
    policy: &Policy,
    now: SystemTime,
) -> crate::Result<Report> {
    let forgotten = store.prune_redeliveries(now.checked_sub(policy.window).unwrap_or(now))?;
    let attempts = recent_attempts(github, since.min(policy.window)).await?;
    let failed = unanswered(&attempts);
    let mut report = Report {
        attempts_seen: attempts.len(),
        forgotten,
        ..Report::default()
    };
    let app = github.as_app();
    for delivery in failed {
        let record = store.redelivery_record(&delivery.guid)?;
        match policy.decide(&delivery, record, now) {
            Decision::OutOfWindow => {
                report.out_of_window += 1;
                continue;
            }
            Decision::Wait => {
                report.failed_deliveries += 1;
                report.already_requested += 1;
                continue;
            }
            Decision::Ask => report.failed_deliveries += 1,
        }
        let guid = delivery.guid.as_str();
        let attempt_id = delivery.newest_attempt_id;
        let path = format!("/app/hook/deliveries/{attempt_id}/attempts");
        match app.send(Method::POST, &path, None).await {
            Ok(answer) => {
                store.record_redelivery(
                    guid,
                    SystemTime::from(delivery.first_delivered_at),
                    now,
                )?;
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
    fn only_deliveries_that_never_succeeded_are_unanswered() {
        let attempts = [
            attempt(1, "ok", 202, false, 1),
            attempt(2, "failed", 503, false, 2),
            attempt(3, "refused", 0, false, 3),
            attempt(4, "failed-then-ok", 502, false, 4),
            attempt(5, "failed-then-ok", 200, true, 5),
            attempt(6, "redelivered-and-failed", 503, false, 6),
            attempt(7, "redelivered-and-failed", 503, true, 7),
        ];
        let picked: Vec<(String, u64, u32)> = unanswered(&attempts)
            .into_iter()
            .map(|d| (d.guid, d.newest_attempt_id, d.redeliveries))
            .collect();
        assert_eq!(
            picked,
            [
                ("failed".to_owned(), 2, 0),
                ("redelivered-and-failed".to_owned(), 7, 1),
                ("refused".to_owned(), 3, 0),
            ]
        );
    }

    fn at(minute: u32) -> SystemTime {
        SystemTime::from(attempt(0, "", 0, false, minute).delivered_at)
    }

    #[test]
    fn requests_are_spaced_out_and_stop_at_the_window() {
        let policy = Policy::default();
        let never_asked = &unanswered(&[attempt(1, "g", 503, false, 0)])[0];
        assert_eq!(policy.decide(never_asked, None, at(1)), Decision::Ask);

        let asked_once = Some(RedeliveryRecord {
            requests: 1,
            last_requested: at(1),
        });
        assert_eq!(
            policy.decide(never_asked, asked_once, at(5)),
            Decision::Wait
        );
        assert_eq!(
            policy.decide(never_asked, asked_once, at(11)),
            Decision::Ask
        );

        let asked_twice = Some(RedeliveryRecord {
            requests: 2,
            last_requested: at(11),
        });
        assert_eq!(
            policy.decide(never_asked, asked_twice, at(25)),
            Decision::Wait
        );
        assert_eq!(
            policy.decide(never_asked, asked_twice, at(31)),
            Decision::Ask
        );
        assert_eq!(policy.spacing(30), policy.max_spacing);

        let three_days_later = at(0) + REDELIVERY_WINDOW;
        assert_eq!(
            policy.decide(never_asked, None, three_days_later),
            Decision::OutOfWindow
        );
    }

    #[test]
    fn redeliveries_github_lists_count_when_the_store_has_none() {
        let policy = Policy::default();
        let attempts = [
            attempt(1, "g", 503, false, 0),
            attempt(2, "g", 503, true, 20),
        ];
        let delivery = &unanswered(&attempts)[0];
        assert_eq!(policy.decide(delivery, None, at(25)), Decision::Wait);
        assert_eq!(policy.decide(delivery, None, at(30)), Decision::Ask);
    }
}
