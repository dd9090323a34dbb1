//! The set of work waiting for a write slot: pull requests that need a fresh
//! check, and merge-queue commits that need their success.
//!
//! It is a set, not a queue of payloads: ten deliveries for one pull request
//! while it waits make one entry, and the check is computed from GitHub's
//! state when its turn comes. [`PendingSet`] is the whole interface (add,
//! claim, done, retry later), so that the store behind it can change.

mod sqlite;
mod wake;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::github::{InstallationId, PullRequestRef, RepoName};

pub use sqlite::{DATABASE_FILE, SqlitePendingSet};

/// How long an item added again while it was being worked on waits before
/// its next turn. Without it, a pull request that receives events faster
/// than it can be read would be read in a loop, spending the installation's
/// API budget; with it, each pull request is read at most about once a
/// second per host, however many events arrive.
pub const RECHECK_DELAY: Duration = Duration::from_secs(1);

/// How long a delivery id is remembered, so that a redelivered delivery
/// whose work was already recorded is not handled twice.
pub const DELIVERY_MEMORY: Duration = Duration::from_secs(24 * 3600);

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
}

impl WorkItem {
    pub fn installation(&self) -> InstallationId {
        match self {
            WorkItem::PullRequest(pull) => pull.installation,
            WorkItem::MergeGroup { installation, .. } => *installation,
        }
    }

    pub fn repo(&self) -> &RepoName {
        match self {
            WorkItem::PullRequest(pull) => &pull.repo,
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
    /// When the oldest delivery this claim answers was recorded: the first
    /// one while the item waited, or the first one that arrived during the
    /// previous claim. The lag from delivery to written check counts from it.
    pub received_at: SystemTime,
}

/// Whether `add` made a new entry, joined an existing one, or saw a
/// delivery it had already recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New,
    Coalesced,
    DuplicateDelivery,
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
    /// delivery id recorded within [`DELIVERY_MEMORY`] adds nothing.
    fn add(&self, item: WorkItem, delivery_id: &str) -> Result<Added, PendingError>;

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

    /// When the oldest delivery still waiting for its check was recorded.
    fn oldest_received(&self) -> Option<SystemTime>;

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
    /// See [`Claim::received_at`].
    received_at: SystemTime,
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
        if inner.deliveries.len() > 100_000 {
            inner
                .deliveries
                .retain(|_, seen| seen.elapsed().is_ok_and(|age| age < DELIVERY_MEMORY));
        }
        if inner
            .deliveries
            .insert(delivery_id.to_owned(), now)
            .is_some()
        {
            return Ok(Added::DuplicateDelivery);
        }
        if let Some(entry) = inner.entries.get_mut(&item) {
            entry.delivery_id = delivery_id.to_owned();
            if let EntryState::Claimed { added_again } = &mut entry.state {
                if !*added_again {
                    // The claimer answers older deliveries; this one waits
                    // for the next turn.
                    entry.received_at = now;
                }
                *added_again = true;
            }
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
        let ready = inner.waiting.range(range).find_map(|(key, item)| {
            let entry = &inner.entries[item];
            match entry.state {
                EntryState::Waiting { not_before } if not_before.is_none_or(|t| t <= now) => {
                    Some((*key, item.clone()))
                }
                _ => None,
            }
        });
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
            .filter(|(_, item)| match inner.entries[*item].state {
                EntryState::Waiting { not_before } => not_before.is_none_or(|t| t <= now),
                EntryState::Claimed { .. } => false,
            })
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

    fn oldest_received(&self) -> Option<SystemTime> {
        self.lock()
            .entries
            .values()
            .map(|entry| entry.received_at)
            .min()
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
    fn a_claim_counts_from_the_oldest_delivery_it_answers() {
        let set = MemoryPendingSet::new();
        set.add(pull(1, 7), "d1").unwrap();
        let first_seen = set.oldest_received().expect("one item waits");
        std::thread::sleep(Duration::from_millis(5));
        set.add(pull(1, 7), "d2").unwrap();
        let claim = set
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(claim.received_at, first_seen, "coalescing keeps the first");
        std::thread::sleep(Duration::from_millis(5));
        set.add(pull(1, 7), "d3").unwrap();
        let during_claim = set.oldest_received().unwrap();
        assert!(during_claim > first_seen, "the next turn answers d3");
        set.add(pull(1, 7), "d4").unwrap();
        set.done(&claim).unwrap();
        let again = set
            .claim(InstallationId(1), SystemTime::now() + RECHECK_DELAY)
            .unwrap()
            .unwrap();
        assert_eq!(again.received_at, during_claim);
        set.done(&again).unwrap();
        assert_eq!(set.oldest_received(), None);
    }
}
