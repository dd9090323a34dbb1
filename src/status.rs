//! `task-list-bot status`: the host's fleet at a glance, read from the
//! shared store.
//!
//! Each worker records its figures in the store every
//! [`HEARTBEAT_INTERVAL`] ([`spawn_heartbeat`], through the store thread),
//! and each item it gives up on ([`crate::pending::Store::record_dropped`]).
//! [`check`] reads them back read-only, with the pending items and the
//! pauses, into a [`Report`]: printed as a table or as one JSON document,
//! and turned into an exit status.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::pending::fleet::{self, FleetReadError, FleetSnapshot};
use crate::pending::{PendingError, Store, WorkerFigures};
use crate::worker::Stats;

/// How often a worker records its figures and heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// A heartbeat older than this means the worker is not working, even if
/// its process holds its lock (a wedged worker is restarted by the
/// watchdog well before).
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(30);

/// Pending work older than this makes the fleet unhealthy, by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

/// How long `status` waits for a busy store before it says so.
pub const READ_PATIENCE: Duration = Duration::from_secs(2);

/// The figures `stats` holds now, as the store records them.
pub fn worker_figures(name: &str, started: SystemTime, stats: &Stats) -> WorkerFigures {
    WorkerFigures {
        name: name.to_owned(),
        pid: std::process::id(),
        started,
        deliveries: stats.deliveries.load(Ordering::Relaxed),
        writes: stats.writes.load(Ordering::Relaxed),
        unchanged: stats.skipped_unchanged.load(Ordering::Relaxed),
        dropped: stats.dropped.load(Ordering::Relaxed),
        last_error: stats
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    }
}

/// Records this worker's figures and heartbeat once.
pub async fn record_heartbeat(
    store: &Store,
    name: &str,
    started: SystemTime,
    stats: &Stats,
) -> Result<(), PendingError> {
    store
        .record_worker(worker_figures(name, started, stats))
        .await
}

/// Records this worker's figures every [`HEARTBEAT_INTERVAL`] until the
/// task is aborted. The write runs on the store thread; a failure is
/// logged and the next beat tries again. Nothing is spawned for a store
/// that only this process sees.
pub fn spawn_heartbeat(
    store: Store,
    name: String,
    stats: Arc<Stats>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !store.is_shared() {
        return None;
    }
    let started = SystemTime::now();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            match record_heartbeat(&store, &name, started, &stats).await {
                Ok(()) => failing = false,
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot record this worker's figures for status");
                }
                Err(_) => {}
            }
        }
    }))
}

/// Reads the fleet in `state_dir` at `now`.
pub fn check(
    state_dir: &Path,
    max_age: Duration,
    now: SystemTime,
) -> Result<Report, FleetReadError> {
    let snapshot = fleet::read_fleet(state_dir, now, READ_PATIENCE)?;
    Ok(Report::new(state_dir, &snapshot, max_age, now))
}

/// What `status --json` prints. Field names are stable; times are RFC 3339
/// in UTC, ages whole seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub state_directory: PathBuf,
    pub generated_at: String,
    /// No problem found: some worker is alive and no pending item is
    /// older than `max_age_seconds`.
    pub healthy: bool,
    /// What makes the fleet unhealthy, one sentence each.
    pub problems: Vec<String>,
    pub max_age_seconds: u64,
    pub workers: Vec<WorkerReport>,
    pub pending: PendingReport,
    pub pauses: Vec<PauseReport>,
    /// Items given up on in the last 24 hours, newest first (at most 100).
    pub dropped: Vec<DroppedReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerReport {
    pub name: String,
    pub pid: u32,
    /// Its owner lock is held and its heartbeat is fresh.
    pub alive: bool,
    pub lock_held: bool,
    pub started_at: String,
    pub heartbeat_at: String,
    pub heartbeat_age_seconds: u64,
    pub deliveries: u64,
    pub writes: u64,
    pub unchanged: u64,
    pub dropped: u64,
    pub last_github_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PendingReport {
    pub items: u64,
    pub claimed: u64,
    pub oldest_age_seconds: Option<u64>,
    pub installations: Vec<InstallationReport>,
    /// Items being worked on now, and by whom (at most 100).
    pub claimed_items: Vec<ItemReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstallationReport {
    pub installation: u64,
    pub items: u64,
    pub claimed: u64,
    pub oldest_at: String,
    pub oldest_age_seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemReport {
    pub installation: u64,
    pub repository: String,
    /// The pull request number, the merge-queue commit, or for `retire`
    /// `reason:number:commit`.
    pub target: String,
    /// `pull_request`, `merge_group` or `retire`.
    pub kind: String,
    pub worker: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PauseReport {
    pub installation: u64,
    pub until: String,
    pub remaining_seconds: u64,
    /// Why, when the store knows (it does not record it yet).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DroppedReport {
    pub at: String,
    pub age_seconds: u64,
    pub installation: u64,
    pub repository: String,
    pub target: String,
    pub kind: String,
    pub cause: String,
    pub worker: String,
}

fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn age(now: SystemTime, at: SystemTime) -> u64 {
    now.duration_since(at).unwrap_or_default().as_secs()
}

impl Report {
    pub fn new(
        state_dir: &Path,
        snapshot: &FleetSnapshot,
        max_age: Duration,
        now: SystemTime,
    ) -> Report {
        let workers: Vec<WorkerReport> = snapshot
            .workers
            .iter()
            .map(|row| {
                let heartbeat_age = now.duration_since(row.heartbeat).unwrap_or_default();
                WorkerReport {
                    name: row.figures.name.clone(),
                    pid: row.figures.pid,
                    alive: row.lock_held && heartbeat_age <= HEARTBEAT_STALE,
                    lock_held: row.lock_held,
                    started_at: rfc3339(row.figures.started),
                    heartbeat_at: rfc3339(row.heartbeat),
                    heartbeat_age_seconds: heartbeat_age.as_secs(),
                    deliveries: row.figures.deliveries,
                    writes: row.figures.writes,
                    unchanged: row.figures.unchanged,
                    dropped: row.figures.dropped,
                    last_github_error: row.figures.last_error.clone(),
                }
            })
            .collect();
        let installations: Vec<InstallationReport> = snapshot
            .backlog
            .iter()
            .map(|b| InstallationReport {
                installation: b.installation.0,
                items: b.items,
                claimed: b.claimed,
                oldest_at: rfc3339(b.oldest),
                oldest_age_seconds: age(now, b.oldest),
            })
            .collect();
        let oldest = snapshot.backlog.iter().map(|b| b.oldest).min();
        let pending = PendingReport {
            items: installations.iter().map(|i| i.items).sum(),
            claimed: installations.iter().map(|i| i.claimed).sum(),
            oldest_age_seconds: oldest.map(|at| age(now, at)),
            installations,
            claimed_items: snapshot
                .claimed
                .iter()
                .map(|c| ItemReport {
                    installation: c.installation.0,
                    repository: c.repo.clone(),
                    target: c.target.clone(),
                    kind: c.kind.clone(),
                    worker: c.worker.clone(),
                })
                .collect(),
        };
        let mut problems = Vec::new();
        if !workers.iter().any(|w| w.alive) {
            problems.push("no worker is alive".to_owned());
        }
        if let Some(oldest) = oldest
            && now.duration_since(oldest).unwrap_or_default() > max_age
        {
            problems.push(format!(
                "pending work has waited {} (more than {})",
                human_duration(age(now, oldest)),
                human_duration(max_age.as_secs())
            ));
        }
        Report {
            state_directory: state_dir.to_owned(),
            generated_at: rfc3339(now),
            healthy: problems.is_empty(),
            problems,
            max_age_seconds: max_age.as_secs(),
            workers,
            pending,
            pauses: snapshot
                .pauses
                .iter()
                .map(|p| PauseReport {
                    installation: p.installation.0,
                    until: rfc3339(p.until),
                    remaining_seconds: p.until.duration_since(now).unwrap_or_default().as_secs(),
                    reason: None,
                })
                .collect(),
            dropped: snapshot
                .dropped
                .iter()
                .map(|d| DroppedReport {
                    at: rfc3339(d.at),
                    age_seconds: age(now, d.at),
                    installation: d.installation.0,
                    repository: d.repo.clone(),
                    target: d.target.clone(),
                    kind: d.kind.clone(),
                    cause: d.cause.clone(),
                    worker: d.worker.clone(),
                })
                .collect(),
        }
    }

    /// 0 when healthy, 1 when not.
    pub fn exit_code(&self) -> u8 {
        if self.healthy { 0 } else { 1 }
    }

    /// The JSON document, pretty-printed.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialise")
    }

    /// The compact tables for a person.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let verdict = if self.healthy {
            "healthy".to_owned()
        } else {
            format!("UNHEALTHY: {}", self.problems.join("; "))
        };
        let _ = writeln!(
            out,
            "Fleet in {}: {verdict}",
            self.state_directory.display()
        );
        let alive = self.workers.iter().filter(|w| w.alive).count();
        let _ = writeln!(out, "\nWorkers: {alive} alive of {}", self.workers.len());
        if !self.workers.is_empty() {
            let mut rows = vec![row(&[
                "NAME",
                "PID",
                "ALIVE",
                "HEARTBEAT",
                "DELIVERIES",
                "WRITES",
                "UNCHANGED",
                "DROPPED",
                "LAST GITHUB ERROR",
            ])];
            for w in &self.workers {
                rows.push(vec![
                    w.name.clone(),
                    w.pid.to_string(),
                    if w.alive { "yes" } else { "no" }.to_owned(),
                    format!("{} ago", human_duration(w.heartbeat_age_seconds)),
                    w.deliveries.to_string(),
                    w.writes.to_string(),
                    w.unchanged.to_string(),
                    w.dropped.to_string(),
                    w.last_github_error.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            table(&mut out, &rows);
        }
        let p = &self.pending;
        match p.oldest_age_seconds {
            Some(oldest) => {
                let _ = writeln!(
                    out,
                    "\nPending: {}, {} claimed, oldest {}",
                    plural(p.items, "item"),
                    p.claimed,
                    human_duration(oldest)
                );
                let mut rows = vec![row(&["INSTALLATION", "ITEMS", "CLAIMED", "OLDEST"])];
                for i in &p.installations {
                    rows.push(vec![
                        i.installation.to_string(),
                        i.items.to_string(),
                        i.claimed.to_string(),
                        human_duration(i.oldest_age_seconds),
                    ]);
                }
                table(&mut out, &rows);
                for c in &p.claimed_items {
                    let _ = writeln!(
                        out,
                        "  claimed: {} (installation {}) by {}",
                        item_name(&c.repository, &c.kind, &c.target),
                        c.installation,
                        c.worker
                    );
                }
            }
            None => {
                let _ = writeln!(out, "\nPending: none");
            }
        }
        if self.pauses.is_empty() {
            let _ = writeln!(out, "\nPaused: none");
        } else {
            let _ = writeln!(out, "\nPaused: {}", self.pauses.len());
            let mut rows = vec![row(&["INSTALLATION", "UNTIL", "REMAINING", "WHY"])];
            for pause in &self.pauses {
                rows.push(vec![
                    pause.installation.to_string(),
                    pause.until.clone(),
                    human_duration(pause.remaining_seconds),
                    pause.reason.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            table(&mut out, &rows);
        }
        if self.dropped.is_empty() {
            let _ = writeln!(out, "\nDropped in the last 24 h: none");
        } else {
            let _ = writeln!(out, "\nDropped in the last 24 h: {}", self.dropped.len());
            let mut rows = vec![row(&["WHEN", "INSTALLATION", "ITEM", "WORKER", "CAUSE"])];
            for d in &self.dropped {
                rows.push(vec![
                    format!("{} ago", human_duration(d.age_seconds)),
                    d.installation.to_string(),
                    item_name(&d.repository, &d.kind, &d.target),
                    d.worker.clone(),
                    d.cause.clone(),
                ]);
            }
            table(&mut out, &rows);
        }
        out
    }
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// `owner/repo#12` for a pull request, `owner/repo@sha` for a merge commit,
/// `owner/repo#12@sha (superseded)` for a retirement.
fn item_name(repository: &str, kind: &str, target: &str) -> String {
    let short = |sha: &str| sha.chars().take(12).collect::<String>();
    match kind {
        "merge_group" => format!("{repository}@{}", short(target)),
        "retire" => match target.splitn(3, ':').collect::<Vec<_>>().as_slice() {
            [reason, number, sha] => format!("{repository}#{number}@{} ({reason})", short(sha)),
            _ => format!("{repository} {target}"),
        },
        _ => format!("{repository}#{target}"),
    }
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// `45s`, `12m 3s`, `3h 4m`, `2d 1h`.
pub fn human_duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Parses `--max-age`: seconds, or a number with `s`, `m` or `h`.
pub fn parse_max_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: use seconds, or e.g. 90s, 10m, 1h"))?;
    let unit = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        other => return Err(format!("unknown unit {other:?}: use s, m or h")),
    };
    Ok(Duration::from_secs(number.saturating_mul(unit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_takes_seconds_or_a_unit() {
        assert_eq!(parse_max_age("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_max_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_max_age("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_max_age("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_max_age("ten").is_err());
        assert!(parse_max_age("5d").is_err());
        assert!(parse_max_age("").is_err());
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(human_duration(4), "4s");
        assert_eq!(human_duration(723), "12m 3s");
        assert_eq!(human_duration(3 * 3600 + 4 * 60 + 5), "3h 4m");
        assert_eq!(human_duration(2 * 86_400 + 3600), "2d 1h");
    }
}
