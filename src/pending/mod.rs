//! The set of work waiting for a write slot: pull requests that need a fresh
//! check, and merge-queue commits that need their success.
//!
//! It is a set, not a queue of payloads: ten deliveries for one pull request
//! while it waits make one entry, and the check is computed from GitHub's
//! state when its turn comes. [`PendingSet`] is the whole interface (add,
//! claim, done, retry later), so that the store behind it can change.

/// SQL (SQLite's and PostgreSQL's alike; `MemoryInner::is_ready` does the
/// same in memory): a retirement is not claimable
/// while its pull request's own item is claimed. That claim may have read
/// the pull request before its new head or its closing and may still write
/// a check on the old head; the retirement then runs after it, not before.
/// (A retirement's target is `reason:number:sha`, a pull request's is its
/// number.)
macro_rules! retirement_not_blocked {
    () => {
        " AND NOT (kind = 'retire' AND EXISTS (
            SELECT 1 FROM pending AS pull
            WHERE pull.installation = pending.installation AND pull.repo = pending.repo
              AND pull.kind = 'pull_request' AND pull.claimed_by IS NOT NULL
              AND pending.target LIKE '%:' || pull.target || ':%'))"
    };
}

mod checkpoint;
pub mod fleet;
mod postgres;
mod row;
mod sqlite;
mod store;
mod wake;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::github::{InstallationId, PullRequestRef, RepoName};

pub use fleet::{DroppedItem, WorkerFigures};
pub use postgres::{
    CALL_TIMEOUT, POOL_SIZE, PgOptions, PostgresPendingSet, is_postgres_url, read_fleet, redact_url,
};
pub use sqlite::{BUSY_TIMEOUT, DATABASE_FILE, RedeliveryRecord, SqlitePendingSet};
pub use store::{GroupCommit, Store, StoreHealth};

/// How long an item added again while it was being worked on waits before
/// its next turn. Without it, a pull request that receives events faster
/// than it can be read would be read in a loop, spending the installation's
/// API budget; with it, each pull request is read at most about once a
/// second per host, however many events arrive.
pub const RECHECK_DELAY: Duration = Duration::from_secs(1);

/// How long a delivery id is remembered. Only to answer whether a delivery
/// is a redelivery: a delivery seen before is still recorded (its work is an
/// idempotent recompute, and GitHub's "Redeliver" button must work), unless
/// its item is waiting right now, when recording it again would add nothing.
pub const DELIVERY_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// How far back GitHub redelivers: deliveries of the past 3 days
/// ("Redelivering webhooks" in GitHub's docs). Redelivery requests are
/// remembered as long, and forgotten after.
pub const REDELIVERY_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);

/// One unit of work for one installation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkItem {
    /// Recompute this pull request's check from fresh state.
    PullRequest(PullRequestRef),
    /// Mark this merge-queue commit's check a success.
    MergeGroup {
        installation: InstallationId,
        repo: RepoName,
        head_sha: String,
    },
    /// Complete the check the bot left in progress on `head_sha`, if it
    /// did: the commit is no longer the head of an open pull request.
    Retire {
        pull: PullRequestRef,
        head_sha: String,
        reason: Retirement,
    },
}

/// Why a pull request's check on a commit is no longer wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Retirement {
    /// A newer head commit was pushed.
    Superseded,
    /// The pull request was closed without merging.
    Closed,
    /// The pull request was merged.
    Merged,
}

impl Retirement {
    pub fn name(self) -> &'static str {
        match self {
            Retirement::Superseded => "superseded",
            Retirement::Closed => "closed",
            Retirement::Merged => "merged",
        }
    }

    pub fn parse(name: &str) -> Option<Retirement> {
        [
            Retirement::Superseded,
            Retirement::Closed,
            Retirement::Merged,
        ]
        .into_iter()
        .find(|r| r.name() == name)
    }
}

impl WorkItem {
    /// The work a delivery asks for, in order; empty for events the bot
    /// ignores. A new head commit asks for two items: the pull request's
    /// check, and the retirement of the check on the commit it replaces.
    pub fn from_event(event: crate::event::Event) -> Vec<WorkItem> {
        use crate::event::Event;
        match event {
            Event::PullRequestChanged {
                pull,
                superseded_head,
                ..
            } => {
                let retire = superseded_head.map(|head_sha| WorkItem::Retire {
                    pull: pull.clone(),
                    head_sha,
                    reason: Retirement::Superseded,
                });
                std::iter::once(WorkItem::PullRequest(pull))
                    .chain(retire)
                    .collect()
            }
            Event::PullRequestClosed {
                pull,
                head_sha,
                merged,
            } => vec![WorkItem::Retire {
                pull,
                head_sha,
                reason: if merged {
                    Retirement::Merged
                } else {
                    Retirement::Closed
                },
            }],
            Event::MergeGroupChecksRequested {
                installation,
                repo,
                head_sha,
            } => vec![WorkItem::MergeGroup {
                installation,
                repo,
                head_sha,
            }],
            Event::Ignored { .. } => Vec::new(),
        }
    }

    /// The delivery id an item of a delivery is recorded under: the
    /// delivery's own for its first item, with a suffix for the others, so
    /// that each is deduplicated on its own when GitHub redelivers.
    pub fn delivery_id_of(delivery_id: &str, index: usize) -> String {
        match index {
            0 => delivery_id.to_owned(),
            n => format!("{delivery_id}/{n}"),
        }
    }

    /// The pull request the item is about, if any.
    pub fn pull_number(&self) -> u64 {
        match self {
            WorkItem::PullRequest(pull) | WorkItem::Retire { pull, .. } => pull.number.0,
            WorkItem::MergeGroup { .. } => 0,
        }
    }

    pub fn installation(&self) -> InstallationId {
        match self {
            WorkItem::PullRequest(pull) | WorkItem::Retire { pull, .. } => pull.installation,
            WorkItem::MergeGroup { installation, .. } => *installation,
        }
    }

    pub fn repo(&self) -> &RepoName {
        match self {
            WorkItem::PullRequest(pull) | WorkItem::Retire { pull, .. } => &pull.repo,
            WorkItem::MergeGroup { repo, .. } => repo,
        }
    }
}

/// A claimed item: the claimer computes and writes, then reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub item: WorkItem,
    /// The most recent delivery that asked for this work, for the logs.
    pub delivery_id: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the earliest delivery this claim answers was recorded, to
    /// measure the lag from delivery to check written.
    pub received_at: SystemTime,
}

/// The pending items of one installation, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    pub installation: InstallationId,
    /// Items waiting or being worked on.
    pub items: usize,
    /// When the earliest delivery still unanswered by a check was recorded.
    pub oldest: SystemTime,
}

impl Backlog {
    /// How long the oldest item has waited at `now`.
    pub fn oldest_age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.oldest).unwrap_or_default()
    }
}

/// An installation held back because GitHub asked us to slow down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub installation: InstallationId,
    pub until: SystemTime,
}

/// Whether `add` made a new entry, joined an existing one, or saw a
/// delivery it had already recorded for an item that is waiting right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New,
    Coalesced,
    DuplicateDelivery,
}

/// `FLEET_WRITE_RATE`: a ceiling on check-run writes per installation
/// shared by every worker of every host, kept in a store they all share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetCeiling {
    /// The time one write takes of the ceiling: 1 / the rate.
    pub interval: Duration,
    /// Writes that may go at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl FleetCeiling {
    /// `rate` writes per second per installation, one at a time.
    pub fn per_second(rate: f64) -> FleetCeiling {
        FleetCeiling {
            interval: Duration::from_secs_f64(1.0 / rate),
            burst: 1,
        }
    }

    /// How far ahead of its turn a write may go (GCRA's tolerance).
    pub fn tolerance(&self) -> Duration {
        self.interval * self.burst.saturating_sub(1)
    }
}

/// A future that resolves when the set may have changed.
pub type Changed<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The store could not record or update work.
#[derive(Debug, thiserror::Error)]
#[error("pending set: {0}")]
pub struct PendingError(pub String);

/// The pending work of one process (and, behind a durable store, of every
/// worker of a host).
pub trait PendingSet: Send + Sync + 'static {
    /// Records that `item` needs doing. An item already waiting is not added
    /// twice; one being worked on is marked to be done again afterwards,
    /// since the claimer may have read the state before this change. A
    /// delivery id recorded within [`DELIVERY_MEMORY`] whose item is waiting
    /// right now adds nothing ([`Added::DuplicateDelivery`]); otherwise a
    /// delivery seen before is recorded like a new one.
    fn add(&self, item: WorkItem, delivery_id: &str) -> Result<Added, PendingError>;

    /// Records several deliveries at once: a durable store commits them in
    /// one transaction (group commit). All are recorded, or none.
    fn add_many(&self, batch: &[(WorkItem, String)]) -> Result<Vec<Added>, PendingError> {
        batch
            .iter()
            .map(|(item, delivery_id)| self.add(item.clone(), delivery_id))
            .collect()
    }

    /// Resolves when work may have been added, by this process or another.
    fn changed(&self) -> Changed<'_>;

    /// Holds every claim of `installation` back until `until`: GitHub asked
    /// us to slow down, and every worker sharing this set must honour it.
    fn pause(&self, installation: InstallationId, until: SystemTime) -> Result<(), PendingError>;

    /// When the installation's pause ends, if it is paused at `now`.
    fn paused_until(&self, installation: InstallationId, now: SystemTime) -> Option<SystemTime>;

    /// Takes the oldest ready item of `installation`, if any.
    fn claim(
        &self,
        installation: InstallationId,
        now: SystemTime,
    ) -> Result<Option<Claim>, PendingError>;

    /// The claim is finished: removes the entry, unless it was added again
    /// while claimed, in which case it waits for another turn.
    fn done(&self, claim: &Claim) -> Result<(), PendingError>;

    /// The claim failed: it becomes ready again at `not_before`, with one
    /// more failed attempt counted.
    fn retry_later(&self, claim: &Claim, not_before: SystemTime) -> Result<(), PendingError>;

    /// Installations that have an item ready at `now`.
    fn ready_installations(&self, now: SystemTime) -> Result<Vec<InstallationId>, PendingError>;

    /// The earliest time an item that is waiting to be retried, or an
    /// installation that is paused, becomes ready.
    fn next_retry(&self) -> Option<SystemTime>;

    /// Items waiting or being worked on.
    fn len(&self) -> usize;

    /// Pending items per installation, with the oldest delivery they answer.
    fn backlog(&self) -> Result<Vec<Backlog>, PendingError>;

    /// Installations paused at `now`, and until when.
    fn pauses(&self, now: SystemTime) -> Result<Vec<Pause>, PendingError>;

    /// Records this worker's figures, with `now` as its heartbeat, for
    /// `task-list-bot status`. Only a store the host's workers share keeps
    /// them; others have no one to tell.
    fn record_worker(
        &self,
        _figures: &WorkerFigures,
        _now: SystemTime,
    ) -> Result<(), PendingError> {
        Ok(())
    }

    /// Remembers an item given up on, for `task-list-bot status`.
    fn record_dropped(&self, _dropped: &DroppedItem) -> Result<(), PendingError> {
        Ok(())
    }

    /// Asks the fleet-wide ceiling for a write slot of `installation`:
    /// `None` takes it (write now), `Some(wait)` means ask again after
    /// `wait`. Only a store every host shares keeps the ceiling; the others
    /// always grant (each process's own limiter still applies).
    fn fleet_write_slot(
        &self,
        _installation: InstallationId,
        _ceiling: &FleetCeiling,
    ) -> Result<Option<Duration>, PendingError> {
        Ok(None)
    }

    /// Upkeep off the request path, run by the store thread now and then:
    /// forget old delivery ids in small batches, return claims of dead
    /// workers, sweep their files.
    fn housekeeping(&self, _now: SystemTime) -> Result<(), PendingError> {
        Ok(())
    }

    /// Gives up this process's place among the workers sharing the store
    /// (its owner lock file): called once, as the process exits.
    fn release(&self) {}

    /// Whether other processes work on this set too (and so keep what this
    /// process leaves behind).
    fn is_shared(&self) -> bool;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
struct Entry {
    /// Arrival order, so that claims are first come, first served.
    sequence: u64,
    delivery_id: String,
    attempts: u32,
    received_at: SystemTime,
    /// When the first delivery recorded while the item was claimed came.
    received_again_at: Option<SystemTime>,
    state: EntryState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryState {
    Waiting { not_before: Option<SystemTime> },
    Claimed { added_again: bool },
}

/// A [`PendingSet`] in this process's memory: lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryPendingSet {
    /// A std Mutex: every operation is a few map lookups, never I/O, so it is
    /// never held across an await.
    inner: Mutex<MemoryInner>,
    added: Notify,
}

#[derive(Debug, Default)]
struct MemoryInner {
    next_sequence: u64,
    entries: HashMap<WorkItem, Entry>,
    /// Waiting items by installation and arrival.
    waiting: BTreeMap<(InstallationId, u64), WorkItem>,
    paused: HashMap<InstallationId, SystemTime>,
    deliveries: HashMap<String, SystemTime>,
}

impl MemoryInner {
    /// Whether a waiting item can be claimed at `now`: its retry time has
    /// come, and a retirement waits while its pull request's item is
    /// claimed (see `retirement_not_blocked!`).
    fn is_ready(&self, item: &WorkItem, now: SystemTime) -> bool {
        let EntryState::Waiting { not_before } = self.entries[item].state else {
            return false;
        };
        if let WorkItem::Retire { pull, .. } = item {
            let pull_item = WorkItem::PullRequest(pull.clone());
            if self
                .entries
                .get(&pull_item)
                .is_some_and(|entry| matches!(entry.state, EntryState::Claimed { .. }))
            {
                return false;
            }
        }
        not_before.is_none_or(|t| t <= now)
    }
}

impl MemoryPendingSet {
    pub fn new() -> MemoryPendingSet {
        MemoryPendingSet::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panic while holding the lock leaves consistent maps (every
        // operation mutates at its end), so poisoning is not fatal.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl PendingSet for MemoryPendingSet {
    fn add(&self, item: WorkItem, delivery_id: &str) -> Result<Added, PendingError> {
        let mut inner = self.lock();
        let now = SystemTime::now();
        let seen_before = inner
            .deliveries
            .insert(delivery_id.to_owned(), now)
            .is_some();
        if let Some(entry) = inner.entries.get_mut(&item) {
            match &mut entry.state {
                EntryState::Waiting { .. } if seen_before => return Ok(Added::DuplicateDelivery),
                EntryState::Waiting { .. } => {}
                EntryState::Claimed { added_again } => {
                    *added_again = true;
                    entry.received_again_at.get_or_insert(now);
                }
            }
            entry.delivery_id = delivery_id.to_owned();
            return Ok(Added::Coalesced);
        }
        let sequence = inner.next_sequence;
        inner.next_sequence += 1;
        inner
            .waiting
            .insert((item.installation(), sequence), item.clone());
        inner.entries.insert(
            item,
            Entry {
                sequence,
                delivery_id: delivery_id.to_owned(),
                attempts: 0,
                received_at: now,
                received_again_at: None,
                state: EntryState::Waiting { not_before: None },
            },
        );
        drop(inner);
        self.added.notify_one();
        Ok(Added::New)
    }

    fn changed(&self) -> Changed<'_> {
        Box::pin(self.added.notified())
    }

    fn pause(&self, installation: InstallationId, until: SystemTime) -> Result<(), PendingError> {
        let mut inner = self.lock();
        let entry = inner.paused.entry(installation).or_insert(until);
        *entry = (*entry).max(until);
        Ok(())
    }

    fn paused_until(&self, installation: InstallationId, now: SystemTime) -> Option<SystemTime> {
        self.lock()
            .paused
            .get(&installation)
            .copied()
            .filter(|until| *until > now)
    }

    fn claim(
        &self,
        installation: InstallationId,
        now: SystemTime,
    ) -> Result<Option<Claim>, PendingError> {
        let mut inner = self.lock();
        if inner
            .paused
            .get(&installation)
            .is_some_and(|until| *until > now)
        {
            return Ok(None);
        }
        let range = (installation, 0)..=(installation, u64::MAX);
        let ready = inner
            .waiting
            .range(range)
            .find(|(_, item)| inner.is_ready(item, now))
            .map(|(key, item)| (*key, item.clone()));
        let Some((key, item)) = ready else {
            return Ok(None);
        };
        inner.waiting.remove(&key);
        let entry = inner
            .entries
            .get_mut(&item)
            .expect("waiting items have entries");
        entry.state = EntryState::Claimed { added_again: false };
        Ok(Some(Claim {
            item,
            delivery_id: entry.delivery_id.clone(),
            attempts: entry.attempts,
            received_at: entry.received_at,
        }))
    }

    fn done(&self, claim: &Claim) -> Result<(), PendingError> {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(&claim.item) else {
            return Ok(());
        };
        match entry.state {
            EntryState::Claimed { added_again: true } => {
                entry.state = EntryState::Waiting {
                    not_before: Some(SystemTime::now() + RECHECK_DELAY),
                };
                entry.attempts = 0;
                if let Some(again) = entry.received_again_at.take() {
                    entry.received_at = again;
                }
                let key = (claim.item.installation(), entry.sequence);
                inner.waiting.insert(key, claim.item.clone());
            }
            _ => {
                inner.entries.remove(&claim.item);
            }
        }
        Ok(())
    }

    fn retry_later(&self, claim: &Claim, not_before: SystemTime) -> Result<(), PendingError> {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(&claim.item) else {
            return Ok(());
        };
        entry.attempts = claim.attempts + 1;
        entry.received_again_at = None;
        entry.state = EntryState::Waiting {
            not_before: Some(not_before),
        };
        let key = (claim.item.installation(), entry.sequence);
        inner.waiting.insert(key, claim.item.clone());
        Ok(())
    }

    fn ready_installations(&self, now: SystemTime) -> Result<Vec<InstallationId>, PendingError> {
        let mut inner = self.lock();
        inner.paused.retain(|_, until| *until > now);
        let mut installations: Vec<InstallationId> = inner
            .waiting
            .iter()
            .filter(|((installation, _), _)| !inner.paused.contains_key(installation))
            .filter(|(_, item)| inner.is_ready(item, now))
            .map(|((installation, _), _)| *installation)
            .collect();
        installations.dedup();
        Ok(installations)
    }

    fn next_retry(&self) -> Option<SystemTime> {
        let inner = self.lock();
        let retries = inner
            .entries
            .values()
            .filter_map(|entry| match entry.state {
                EntryState::Waiting { not_before } => not_before,
                EntryState::Claimed { .. } => None,
            });
        retries.chain(inner.paused.values().copied()).min()
    }

    fn len(&self) -> usize {
        self.lock().entries.len()
    }

    fn backlog(&self) -> Result<Vec<Backlog>, PendingError> {
        let inner = self.lock();
        let mut by_installation: BTreeMap<InstallationId, Backlog> = BTreeMap::new();
        for (item, entry) in &inner.entries {
            let installation = item.installation();
            let backlog = by_installation
                .entry(installation)
                .or_insert_with(|| Backlog {
                    installation,
                    items: 0,
                    oldest: entry.received_at,
                });
            backlog.items += 1;
            backlog.oldest = backlog.oldest.min(entry.received_at);
        }
        Ok(by_installation.into_values().collect())
    }

    fn pauses(&self, now: SystemTime) -> Result<Vec<Pause>, PendingError> {
        let mut pauses: Vec<Pause> = self
            .lock()
            .paused
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(installation, until)| Pause {
                installation: *installation,
                until: *until,
            })
            .collect();
        pauses.sort_by_key(|pause| pause.installation);
        Ok(pauses)
    }

    fn housekeeping(&self, now: SystemTime) -> Result<(), PendingError> {
        // Memory is cheap to keep for a while; sweep only a large map, so
        // that a busy process does not walk it every second.
        let mut inner = self.lock();
        if inner.deliveries.len() > 10_000 {
            let horizon = now
                .checked_sub(DELIVERY_MEMORY)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            inner.deliveries.retain(|_, seen| *seen >= horizon);
        }
        Ok(())
    }

    fn is_shared(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::PullNumber;
    use std::time::Duration;

    fn pull(installation: u64, number: u64) -> WorkItem {
        WorkItem::PullRequest(PullRequestRef {
            installation: InstallationId(installation),
            repo: RepoName("octo/repo".into()),
            number: PullNumber(number),
        })
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    #[test]
    fn many_adds_for_one_pull_request_make_one_entry() {
        let set = MemoryPendingSet::new();
        assert_eq!(set.add(pull(1, 7), "d1").unwrap(), Added::New);
        for i in 2..=10 {
            assert_eq!(
                set.add(pull(1, 7), &format!("d{i}")).unwrap(),
                Added::Coalesced
            );
        }
        assert_eq!(set.len(), 1);
        let claim = set.claim(InstallationId(1), now()).unwrap().unwrap();
        assert_eq!(
            claim.delivery_id, "d10",
            "the latest delivery is remembered"
        );
        set.done(&claim).unwrap();
        assert!(set.is_empty());
    }

    #[test]
    fn a_retirement_waits_while_its_pull_request_is_claimed() {
        let set = MemoryPendingSet::new();
        let retire = |number| WorkItem::Retire {
            pull: PullRequestRef {
                installation: InstallationId(1),
                repo: RepoName("octo/repo".into()),
                number: PullNumber(number),
            },
            head_sha: "old".into(),
            reason: Retirement::Superseded,
        };
        set.add(pull(1, 7), "open").unwrap();
        let computing = set.claim(InstallationId(1), now()).unwrap().unwrap();
        set.add(retire(7), "push#1").unwrap();
        set.add(retire(70), "push-70#1").unwrap();
        let other = set.claim(InstallationId(1), now()).unwrap().unwrap();
        assert_eq!(other.item, retire(70));
        set.done(&other).unwrap();
        assert_eq!(set.claim(InstallationId(1), now()).unwrap(), None);
        assert!(set.ready_installations(now()).unwrap().is_empty());
        set.done(&computing).unwrap();
        assert_eq!(set.ready_installations(now()).unwrap(), [InstallationId(1)]);
        let retired = set.claim(InstallationId(1), now()).unwrap().unwrap();
        assert_eq!(retired.item, retire(7));
    }

    #[test]
    fn claims_are_per_installation_and_first_come_first_served() {
        let set = MemoryPendingSet::new();
        set.add(pull(1, 3), "a").unwrap();
        set.add(pull(2, 1), "b").unwrap();
        set.add(pull(1, 1), "c").unwrap();
        let first = set.claim(InstallationId(1), now()).unwrap().unwrap();
        assert_eq!(first.item, pull(1, 3));
        let second = set.claim(InstallationId(1), now()).unwrap().unwrap();
        assert_eq!(second.item, pull(1, 1));
        assert_eq!(
            set.claim(InstallationId(1), now()).unwrap(),
            None,
            "claimed items are not handed out twice"
        );
        assert_eq!(set.ready_installations(now()).unwrap(), [InstallationId(2)]);
    }

    #[test]
    fn an_add_during_a_claim_brings_the_item_back_after_done() {
        let set = MemoryPendingSet::new();
        set.add(pull(1, 7), "d1").unwrap();
        let claim = set.claim(InstallationId(1), now()).unwrap().unwrap();
        assert_eq!(set.add(pull(1, 7), "d2").unwrap(), Added::Coalesced);
        set.done(&claim).unwrap();
        let right_away = SystemTime::now();
        assert_eq!(
            set.claim(InstallationId(1), right_away).unwrap(),
            None,
            "not at once"
        );
        let again = set
            .claim(InstallationId(1), right_away + RECHECK_DELAY)
            .unwrap()
            .expect("must be recomputed");
        assert_eq!(again.delivery_id, "d2");
        set.done(&again).unwrap();
        assert!(set.is_empty());
    }

    #[test]
    fn retry_later_waits_and_counts_attempts() {
        let set = MemoryPendingSet::new();
        set.add(pull(1, 7), "d1").unwrap();
        let claim = set.claim(InstallationId(1), now()).unwrap().unwrap();
        let later = now() + Duration::from_secs(30);
        set.retry_later(&claim, later).unwrap();
        assert_eq!(set.claim(InstallationId(1), now()).unwrap(), None);
        assert!(set.ready_installations(now()).unwrap().is_empty());
        assert_eq!(set.next_retry(), Some(later));
        let retried = set.claim(InstallationId(1), later).unwrap().unwrap();
        assert_eq!(retried.attempts, 1);
    }

    #[test]
    fn a_delivery_seen_before_is_recorded_again_unless_its_item_is_waiting() {
        let set = MemoryPendingSet::new();
        assert_eq!(set.add(pull(1, 7), "same").unwrap(), Added::New);
        assert_eq!(
            set.add(pull(1, 7), "same").unwrap(),
            Added::DuplicateDelivery
        );
        let claim = set.claim(InstallationId(1), now()).unwrap().unwrap();
        assert_eq!(set.add(pull(1, 7), "same").unwrap(), Added::Coalesced);
        set.done(&claim).unwrap();
        let again = set
            .claim(InstallationId(1), SystemTime::now() + RECHECK_DELAY)
            .unwrap()
            .unwrap();
        set.done(&again).unwrap();
        assert_eq!(set.add(pull(1, 7), "same").unwrap(), Added::New);
    }

    #[test]
    fn claims_carry_their_earliest_delivery_and_the_backlog_its_age() {
        let set = MemoryPendingSet::new();
        let before = SystemTime::now();
        set.add(pull(1, 7), "d1").unwrap();
        let after_first = SystemTime::now();
        set.add(pull(1, 7), "d2").unwrap();
        set.add(pull(2, 1), "d3").unwrap();
        let backlog = set.backlog().unwrap();
        assert_eq!(
            backlog
                .iter()
                .map(|b| (b.installation.0, b.items))
                .collect::<Vec<_>>(),
            [(1, 1), (2, 1)]
        );
        assert!(backlog[0].oldest >= before && backlog[0].oldest <= after_first);
        let claim = set.claim(InstallationId(1), now()).unwrap().unwrap();
        assert!(claim.received_at >= before && claim.received_at <= after_first);
        let during = SystemTime::now();
        set.add(pull(1, 7), "d4").unwrap();
        set.done(&claim).unwrap();
        let again = set
            .claim(InstallationId(1), SystemTime::now() + RECHECK_DELAY)
            .unwrap()
            .unwrap();
        assert!(again.received_at >= during);

        let until = now() + Duration::from_secs(60);
        set.pause(InstallationId(2), until).unwrap();
        assert_eq!(
            set.pauses(now()).unwrap(),
            [Pause {
                installation: InstallationId(2),
                until
            }]
        );
        assert!(set.pauses(until).unwrap().is_empty());
    }
}
