//! The durable pending sets' shared suite: every case runs against SQLite
//! (the host's store) and PostgreSQL (the fleet's), each handle standing
//! for one worker process. PostgreSQL is a real server this binary starts
//! itself (`support/postgres.rs`); without its binaries these tests fail.

#[path = "support/postgres.rs"]
mod pg;
#[path = "support/temp_dir.rs"]
mod temp_dir;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use task_list_bot::github::{InstallationId, PullNumber, PullRequestRef, RepoName};
use task_list_bot::pending::{
    Added, DELIVERY_MEMORY, FleetCeiling, Pause, PendingSet, PgOptions, PostgresPendingSet,
    RECHECK_DELAY, Retirement, SqlitePendingSet, WorkItem,
};
use temp_dir::TempDir;

/// Short leases, so that a dead worker's claims come back in a test's time;
/// the heartbeat still renews several times per lease on a loaded machine.
const TEST_LEASE: PgOptions = PgOptions {
    lease: Duration::from_secs(2),
    heartbeat: Duration::from_millis(250),
};

/// One store kind: opens handles on one shared set, as worker processes do.
trait Backend {
    type Set: PendingSet;
    fn open(&self) -> Self::Set;
    /// Ends a handle as a crash would: nothing given back.
    fn kill(&self, set: Self::Set);
    /// How long a dead worker's claims may stay out of the pool.
    fn recovery_time(&self) -> Duration;
    /// Records `count` delivery ids as seen at `seen`.
    fn remember(set: &Self::Set, prefix: &str, count: usize, seen: SystemTime);
    /// Delivery ids the set remembers.
    fn remembered(set: &Self::Set) -> usize;
}

struct Sqlite {
    dir: TempDir,
}

impl Sqlite {
    fn new(name: &str) -> Sqlite {
        Sqlite {
            dir: TempDir::new(name),
        }
    }
}

impl Backend for Sqlite {
    type Set = SqlitePendingSet;
    fn open(&self) -> SqlitePendingSet {
        SqlitePendingSet::open(self.dir.path()).unwrap()
    }
    fn kill(&self, set: SqlitePendingSet) {
        // Closing the owner lock's file is what the kernel does at death;
        // leave the file behind as a killed process would.
        let lock = self
            .dir
            .path()
            .join("owners")
            .join(format!("{}.lock", set.owner()));
        let kept = lock.with_extension("kept");
        std::fs::hard_link(&lock, &kept).unwrap();
        drop(set);
        std::fs::rename(&kept, &lock).unwrap();
    }
    fn recovery_time(&self) -> Duration {
        Duration::from_secs(2)
    }
    fn remember(set: &Self::Set, prefix: &str, count: usize, seen: SystemTime) {
        set.remember_deliveries_for_test(prefix, count, seen)
            .unwrap();
    }
    fn remembered(set: &Self::Set) -> usize {
        set.remembered_deliveries().unwrap()
    }
}

struct Postgres {
    url: SecretString,
}

impl Postgres {
    fn new(_name: &str) -> Postgres {
        Postgres {
            url: pg::fresh_database(),
        }
    }
}

impl Backend for Postgres {
    type Set = PostgresPendingSet;
    fn open(&self) -> PostgresPendingSet {
        PostgresPendingSet::open(&self.url, TEST_LEASE).unwrap()
    }
    fn kill(&self, set: PostgresPendingSet) {
        set.crash_for_test();
    }
    fn recovery_time(&self) -> Duration {
        TEST_LEASE.lease + Duration::from_secs(3)
    }
    fn remember(set: &Self::Set, prefix: &str, count: usize, seen: SystemTime) {
        set.remember_deliveries_for_test(prefix, count, seen)
            .unwrap();
    }
    fn remembered(set: &Self::Set) -> usize {
        set.remembered_deliveries().unwrap()
    }
}

fn pull(installation: u64, number: u64) -> WorkItem {
    WorkItem::PullRequest(PullRequestRef {
        installation: InstallationId(installation),
        repo: RepoName("octo/repo".into()),
        number: PullNumber(number),
    })
}

fn retire(installation: u64, number: u64, head_sha: &str) -> WorkItem {
    WorkItem::Retire {
        pull: PullRequestRef {
            installation: InstallationId(installation),
            repo: RepoName("octo/repo".into()),
            number: PullNumber(number),
        },
        head_sha: head_sha.into(),
        reason: Retirement::Superseded,
    }
}

/// `SystemTime` as the stores keep it, to the millisecond.
fn to_ms(at: SystemTime) -> SystemTime {
    let ms = at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Each case, written once over [`Backend`].
mod cases {
    use super::*;

    pub fn two_workers_share_one_set_and_never_claim_the_same_item(b: &impl Backend) {
        let a = b.open();
        let c = b.open();
        assert_eq!(a.add(pull(1, 1), "d1").unwrap(), Added::New);
        assert_eq!(c.add(pull(1, 1), "d2").unwrap(), Added::Coalesced);
        assert_eq!(c.add(pull(1, 2), "d3").unwrap(), Added::New);
        assert_eq!(a.len(), 2);
        let now = SystemTime::now();
        let first = c.claim(InstallationId(1), now).unwrap().unwrap();
        let second = a.claim(InstallationId(1), now).unwrap().unwrap();
        assert_ne!(first.item, second.item);
        assert_eq!(first.delivery_id, "d2", "the latest delivery is remembered");
        assert_eq!(a.claim(InstallationId(1), now).unwrap(), None);
        c.done(&first).unwrap();
        a.done(&second).unwrap();
        assert!(a.is_empty() && c.is_empty());
    }

    pub fn claims_are_per_installation_and_first_come_first_served(b: &impl Backend) {
        let set = b.open();
        set.add(pull(1, 3), "a").unwrap();
        set.add(pull(2, 1), "b").unwrap();
        set.add(pull(1, 1), "c").unwrap();
        let merge = WorkItem::MergeGroup {
            installation: InstallationId(1),
            repo: RepoName("octo/repo".into()),
            head_sha: "abc123".into(),
        };
        set.add(merge.clone(), "d").unwrap();
        let now = SystemTime::now();
        let claimed: Vec<WorkItem> = (0..3)
            .map(|_| set.claim(InstallationId(1), now).unwrap().unwrap().item)
            .collect();
        assert_eq!(claimed, [pull(1, 3), pull(1, 1), merge]);
        assert_eq!(set.claim(InstallationId(1), now).unwrap(), None);
        assert_eq!(set.ready_installations(now).unwrap(), [InstallationId(2)]);
    }

    pub fn a_delivery_seen_before_is_recorded_again_unless_its_item_is_waiting(b: &impl Backend) {
        let set = b.open();
        assert_eq!(set.add(pull(1, 1), "same").unwrap(), Added::New);
        assert_eq!(
            set.add(pull(1, 1), "same").unwrap(),
            Added::DuplicateDelivery
        );
        let claim = set
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(
            set.add(pull(1, 1), "same").unwrap(),
            Added::Coalesced,
            "claimed: the claimer may have read before, so it runs again"
        );
        set.done(&claim).unwrap();
        let again = set
            .claim(InstallationId(1), SystemTime::now() + RECHECK_DELAY)
            .unwrap()
            .expect("requeued");
        set.done(&again).unwrap();
        assert!(set.is_empty());
        assert_eq!(set.add(pull(1, 1), "same").unwrap(), Added::New);
    }

    /// A claimed pull request may have been read before its new head, and
    /// may still write a check on the old one: the old head's retirement
    /// waits for that claim, on every worker.
    pub fn a_retirement_waits_while_its_pull_request_is_claimed(b: &impl Backend) {
        let a = b.open();
        let c = b.open();
        let now = SystemTime::now();
        a.add(pull(1, 7), "open").unwrap();
        let computing = a.claim(InstallationId(1), now).unwrap().unwrap();
        assert_eq!(computing.item, pull(1, 7));
        // The push: a new check for the pull request, and the old head's
        // retirement; another pull request's retirement is not held back.
        c.add_many(&[
            (pull(1, 7), "push".into()),
            (retire(1, 7, "old"), "push#1".into()),
            (retire(1, 70, "other"), "push-70#1".into()),
        ])
        .unwrap();
        let other = c.claim(InstallationId(1), now).unwrap().unwrap();
        assert_eq!(other.item, retire(1, 70, "other"));
        c.done(&other).unwrap();
        assert_eq!(c.claim(InstallationId(1), now).unwrap(), None);
        assert!(c.ready_installations(now).unwrap().is_empty());

        a.done(&computing).unwrap();
        let later = SystemTime::now() + RECHECK_DELAY;
        assert_eq!(c.ready_installations(later).unwrap(), [InstallationId(1)]);
        // The pull request's item, requeued by the push, keeps its place
        // ahead; while it is claimed again, the retirement still waits.
        let recheck = c.claim(InstallationId(1), later).unwrap().unwrap();
        assert_eq!(recheck.item, pull(1, 7));
        assert_eq!(a.claim(InstallationId(1), later).unwrap(), None);
        c.done(&recheck).unwrap();
        let retired = a.claim(InstallationId(1), later).unwrap().unwrap();
        assert_eq!(retired.item, retire(1, 7, "old"));
        a.done(&retired).unwrap();
        assert!(c.is_empty());
    }

    /// A batch meets claimed and waiting rows, and names delivery ids the
    /// store has seen and ids it names twice itself: each delivery gets
    /// the outcome it would have had recorded alone, after the ones before.
    pub fn a_batch_gives_each_delivery_the_outcome_it_would_have_alone(b: &impl Backend) {
        let set = b.open();
        let now = SystemTime::now();
        set.add(pull(1, 1), "x").unwrap();
        let claimed = set.claim(InstallationId(1), now).unwrap().unwrap();
        assert_eq!(claimed.item, pull(1, 1));
        set.add(pull(1, 3), "y").unwrap();
        let batch = [
            // Seen, but its item is claimed: the claimer may have read
            // before it, so the work is done again.
            (pull(1, 1), "x".to_owned()),
            // Seen, and its item waits: nothing to add.
            (pull(1, 3), "y".to_owned()),
            // New, and its item waits: joins it.
            (pull(1, 3), "z".to_owned()),
            // Seen before, for an item with no row: recorded like a new one.
            (pull(1, 4), "y".to_owned()),
            (pull(1, 4), "w".to_owned()),
            // Named twice in the batch, its item now waiting.
            (pull(1, 4), "w".to_owned()),
        ];
        assert_eq!(
            set.add_many(&batch).unwrap(),
            [
                Added::Coalesced,
                Added::DuplicateDelivery,
                Added::Coalesced,
                Added::New,
                Added::Coalesced,
                Added::DuplicateDelivery,
            ]
        );
        assert_eq!(set.len(), 3);
        // The waiting items answer the latest deliveries that joined them,
        // in the order they were first recorded.
        let third = set.claim(InstallationId(1), now).unwrap().unwrap();
        assert_eq!((third.item, third.delivery_id.as_str()), (pull(1, 3), "z"));
        let fourth = set.claim(InstallationId(1), now).unwrap().unwrap();
        assert_eq!(
            (fourth.item, fourth.delivery_id.as_str()),
            (pull(1, 4), "w")
        );
        // The claimed item comes back once its claim is done.
        set.done(&claimed).unwrap();
        let again = set
            .claim(InstallationId(1), SystemTime::now() + RECHECK_DELAY)
            .unwrap()
            .expect("the claimed item is requeued");
        assert_eq!((again.item, again.delivery_id.as_str()), (pull(1, 1), "x"));
    }

    pub fn a_batch_is_recorded_at_once_with_each_outcome(b: &impl Backend) {
        let set = b.open();
        let batch = [
            (pull(1, 2), "c".to_owned()),
            (pull(1, 1), "a".to_owned()),
            (pull(1, 1), "b".to_owned()),
            (pull(1, 2), "c".to_owned()),
        ];
        assert_eq!(
            set.add_many(&batch).unwrap(),
            [
                Added::New,
                Added::New,
                Added::Coalesced,
                Added::DuplicateDelivery
            ]
        );
        assert_eq!(set.len(), 2);
        let first = set
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(first.item, pull(1, 2), "arrival order within a batch");
    }

    pub fn an_add_during_a_claim_brings_the_item_back_after_done(b: &impl Backend) {
        let set = b.open();
        set.add(pull(1, 7), "d1").unwrap();
        let claim = set
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        set.add(pull(1, 7), "d2").unwrap();
        set.done(&claim).unwrap();
        let right_away = SystemTime::now();
        assert_eq!(set.claim(InstallationId(1), right_away).unwrap(), None);
        assert!(set.next_retry().is_some());
        drop(set);
        let reopened = b.open();
        let again = reopened
            .claim(InstallationId(1), right_away + RECHECK_DELAY)
            .unwrap()
            .expect("must be recomputed");
        assert_eq!(again.delivery_id, "d2");
        reopened.done(&again).unwrap();
        assert!(reopened.is_empty());
    }

    pub fn retry_later_waits_and_counts_attempts(b: &impl Backend) {
        let set = b.open();
        set.add(pull(1, 7), "d1").unwrap();
        let now = SystemTime::now();
        let claim = set.claim(InstallationId(1), now).unwrap().unwrap();
        let later = to_ms(now + Duration::from_secs(30));
        set.retry_later(&claim, later).unwrap();
        assert_eq!(set.claim(InstallationId(1), now).unwrap(), None);
        assert!(set.ready_installations(now).unwrap().is_empty());
        assert_eq!(set.next_retry(), Some(later));
        let retried = set.claim(InstallationId(1), later).unwrap().unwrap();
        assert_eq!(retried.attempts, 1);
        assert_eq!(
            retried.received_at, claim.received_at,
            "kept across retries"
        );
    }

    pub fn a_claim_carries_when_its_earliest_delivery_was_recorded(b: &impl Backend) {
        let set = b.open();
        let before_first = to_ms(SystemTime::now());
        set.add(pull(1, 1), "d1").unwrap();
        let after_first = SystemTime::now();
        set.add(pull(1, 1), "d2").unwrap();
        let claim = set
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        assert!(before_first <= claim.received_at && claim.received_at <= after_first);
        let before_again = to_ms(SystemTime::now());
        set.add(pull(1, 1), "d3").unwrap();
        set.add(pull(1, 1), "d4").unwrap();
        set.done(&claim).unwrap();
        let again = set
            .claim(InstallationId(1), SystemTime::now() + RECHECK_DELAY)
            .unwrap()
            .unwrap();
        assert!(again.received_at >= before_again);
    }

    pub fn backlog_and_pauses_are_reported_per_installation(b: &impl Backend) {
        let set = b.open();
        let start = to_ms(SystemTime::now());
        set.add(pull(2, 1), "a").unwrap();
        set.add(pull(1, 1), "b").unwrap();
        set.add(pull(1, 2), "c").unwrap();
        set.claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        let backlog = set.backlog().unwrap();
        let summary: Vec<(u64, usize)> = backlog
            .iter()
            .map(|b| (b.installation.0, b.items))
            .collect();
        assert_eq!(summary, [(1, 2), (2, 1)], "claimed items count too");
        assert!(backlog.iter().all(|b| b.oldest >= start));

        let now = SystemTime::now();
        let until = to_ms(now + Duration::from_secs(60));
        set.pause(InstallationId(2), until).unwrap();
        set.pause(InstallationId(2), now + Duration::from_secs(5))
            .unwrap();
        set.pause(InstallationId(3), now - Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            set.pauses(now).unwrap(),
            [Pause {
                installation: InstallationId(2),
                until
            }],
            "only pauses in force, and a shorter pause never shortens one"
        );
    }

    pub fn a_pause_holds_every_worker_back(b: &impl Backend) {
        let a = b.open();
        let c = b.open();
        a.add(pull(3, 1), "d1").unwrap();
        let now = SystemTime::now();
        a.pause(InstallationId(3), now + Duration::from_secs(60))
            .unwrap();
        assert_eq!(c.claim(InstallationId(3), now).unwrap(), None);
        assert!(c.ready_installations(now).unwrap().is_empty());
        assert!(c.paused_until(InstallationId(3), now).is_some());
        let later = now + Duration::from_secs(61);
        assert!(c.claim(InstallationId(3), later).unwrap().is_some());
    }

    pub fn an_add_by_one_worker_wakes_another(b: &impl Backend) {
        let a = b.open();
        let c = b.open();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // The first wake-up may be a listener saying it (re)connected.
            for attempt in 0..2 {
                let woken = c.changed();
                let started = Instant::now();
                a.add(pull(1, attempt), &format!("d{attempt}")).unwrap();
                tokio::time::timeout(Duration::from_secs(2), woken)
                    .await
                    .expect("woken well before the one-second poll would");
                assert!(started.elapsed() < Duration::from_millis(900));
            }
        });
    }

    pub fn a_dead_workers_claims_return_to_the_pool(b: &impl Backend) {
        let survivor = b.open();
        let doomed = b.open();
        doomed.add(pull(1, 1), "d1").unwrap();
        doomed
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        // While its owner lives, the claim stays with it.
        survivor.housekeeping(SystemTime::now()).unwrap();
        assert_eq!(
            survivor
                .claim(InstallationId(1), SystemTime::now())
                .unwrap(),
            None
        );
        b.kill(doomed);
        let died = Instant::now();
        let deadline = died + b.recovery_time() + Duration::from_secs(5);
        let claim = loop {
            survivor.housekeeping(SystemTime::now()).unwrap();
            if let Some(claim) = survivor
                .claim(InstallationId(1), SystemTime::now())
                .unwrap()
            {
                break claim;
            }
            assert!(Instant::now() < deadline, "the claim never came back");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            died.elapsed() <= b.recovery_time(),
            "came back after {:?}",
            died.elapsed()
        );
        assert_eq!(claim.item, pull(1, 1));
        survivor.done(&claim).unwrap();
        assert!(survivor.is_empty());
    }

    pub fn old_delivery_ids_are_forgotten_in_batches_by_upkeep<B: Backend>(b: &B) {
        let set = b.open();
        let now = SystemTime::now();
        let old = now - DELIVERY_MEMORY - Duration::from_secs(60);
        B::remember(&set, "old", 1200, old);
        B::remember(&set, "new", 10, now);
        set.housekeeping(now).unwrap();
        let after_one = B::remembered(&set);
        assert!(
            after_one < 1210 && after_one > 10,
            "one batch at a time: {after_one}"
        );
        for _ in 0..3 {
            set.housekeeping(now).unwrap();
        }
        assert_eq!(B::remembered(&set), 10);
        // A recent id still makes a duplicate of its waiting item; a
        // forgotten one is just another delivery.
        assert_eq!(set.add(pull(1, 1), "first").unwrap(), Added::New);
        assert_eq!(
            set.add(pull(1, 1), "new-1").unwrap(),
            Added::DuplicateDelivery
        );
        assert_eq!(set.add(pull(1, 1), "old-1").unwrap(), Added::Coalesced);
    }

    /// Several workers, each on its own connection, claim concurrently from
    /// one set until it is empty: each item is claimed exactly once.
    pub fn concurrent_claims_never_hand_out_an_item_twice(b: &impl Backend) {
        const WORKERS: usize = 6;
        const INSTALLATIONS: u64 = 3;
        const PER_INSTALLATION: u64 = 60;
        let workers: Vec<_> = (0..WORKERS).map(|_| b.open()).collect();
        let batch: Vec<(WorkItem, String)> = (0..INSTALLATIONS)
            .flat_map(|i| (0..PER_INSTALLATION).map(move |n| (pull(i + 1, n), format!("d{i}-{n}"))))
            .collect();
        for chunk in batch.chunks(45) {
            workers[0].add_many(chunk).unwrap();
        }
        let claimed = Mutex::new(Vec::new());
        let deadline = Instant::now() + Duration::from_secs(60);
        std::thread::scope(|scope| {
            for worker in &workers {
                let claimed = &claimed;
                scope.spawn(move || {
                    loop {
                        let now = SystemTime::now();
                        let ready = worker.ready_installations(now).unwrap();
                        if ready.is_empty() && worker.is_empty() {
                            return;
                        }
                        for installation in ready {
                            while let Some(claim) = worker.claim(installation, now).unwrap() {
                                claimed.lock().unwrap().push(claim.item.clone());
                                worker.done(&claim).unwrap();
                            }
                        }
                        assert!(Instant::now() < deadline, "the set never emptied");
                    }
                });
            }
        });
        let claimed = claimed.into_inner().unwrap();
        let distinct: HashSet<&WorkItem> = claimed.iter().collect();
        assert_eq!(distinct.len(), claimed.len(), "an item was claimed twice");
        assert_eq!(claimed.len(), batch.len());
    }
}

macro_rules! for_each_store {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $( #[test] fn $case() { cases::$case(&Sqlite::new("set")); } )*
        }
        mod postgres {
            use super::*;
            $( #[test] fn $case() { cases::$case(&Postgres::new(stringify!($case))); } )*
        }
    };
}

for_each_store!(
    two_workers_share_one_set_and_never_claim_the_same_item,
    claims_are_per_installation_and_first_come_first_served,
    a_delivery_seen_before_is_recorded_again_unless_its_item_is_waiting,
    a_batch_is_recorded_at_once_with_each_outcome,
    a_batch_gives_each_delivery_the_outcome_it_would_have_alone,
    a_retirement_waits_while_its_pull_request_is_claimed,
    an_add_during_a_claim_brings_the_item_back_after_done,
    retry_later_waits_and_counts_attempts,
    a_claim_carries_when_its_earliest_delivery_was_recorded,
    backlog_and_pauses_are_reported_per_installation,
    a_pause_holds_every_worker_back,
    an_add_by_one_worker_wakes_another,
    a_dead_workers_claims_return_to_the_pool,
    concurrent_claims_never_hand_out_an_item_twice,
    old_delivery_ids_are_forgotten_in_batches_by_upkeep,
);

// PostgreSQL only: what only a fleet-wide store does.

/// A batch the database refuses is recorded not at all, and the
/// connection it failed on serves no later call with its transaction
/// still open: what comes next is recorded and committed.
#[test]
fn a_refused_batch_leaves_no_transaction_behind() {
    let url = pg::fresh_database();
    let set = PostgresPendingSet::open(&url, TEST_LEASE).unwrap();
    // PostgreSQL's text cannot hold NUL.
    let refused = WorkItem::PullRequest(PullRequestRef {
        installation: InstallationId(1),
        repo: RepoName("octo/re\0po".into()),
        number: PullNumber(2),
    });
    let error = set
        .add_many(&[(pull(1, 1), "a".into()), (refused, "b".into())])
        .unwrap_err();
    assert!(error.0.contains("database error"), "{error}");
    assert_eq!(set.len(), 0, "all of the batch or none of it");
    for i in 0..8 {
        assert_eq!(
            set.add(pull(1, 10 + i), &format!("d{i}")).unwrap(),
            Added::New
        );
    }
    let other = PostgresPendingSet::open(&url, TEST_LEASE).unwrap();
    assert_eq!(other.len(), 8, "committed, as another worker sees");
}

/// Workers starting together migrate the schema once, under the advisory
/// lock, and all come up.
#[test]
fn workers_starting_together_migrate_once() {
    let url = pg::fresh_database();
    let sets: Vec<PostgresPendingSet> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| PostgresPendingSet::open(&url, TEST_LEASE).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    sets[0].add(pull(1, 1), "d").unwrap();
    assert_eq!(sets[3].len(), 1);
}

/// A worker that exits gives its claims back at once, without waiting for
/// its lease to run out.
#[test]
fn a_worker_that_exits_gives_its_claims_back_at_once() {
    let b = Postgres::new("release");
    let survivor = b.open();
    let leaving = b.open();
    leaving.add(pull(1, 1), "d").unwrap();
    leaving
        .claim(InstallationId(1), SystemTime::now())
        .unwrap()
        .unwrap();
    leaving.release();
    assert!(
        survivor
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .is_some()
    );
}

/// A live worker keeps its claims across many lease periods: the heartbeat
/// renews them, so no other worker's upkeep takes them.
#[test]
fn a_live_workers_claims_outlast_its_lease() {
    let b = Postgres::new("alive");
    let owner = b.open();
    let other = b.open();
    owner.add(pull(1, 1), "d").unwrap();
    let claim = owner
        .claim(InstallationId(1), SystemTime::now())
        .unwrap()
        .unwrap();
    let until = Instant::now() + TEST_LEASE.lease * 3;
    while Instant::now() < until {
        assert_eq!(other.reap_dead_owners().unwrap(), 0);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        other.claim(InstallationId(1), SystemTime::now()).unwrap(),
        None
    );
    owner.done(&claim).unwrap();
    assert!(other.is_empty());
}

/// FLEET_WRITE_RATE: the ceiling is one per installation for every worker:
/// a slot taken by one is not granted to another, other installations are
/// not held back, and the next slot comes after the interval.
#[test]
fn the_fleet_write_ceiling_is_shared_by_every_worker() {
    let b = Postgres::new("ceiling");
    let a = b.open();
    let c = b.open();
    let ceiling = FleetCeiling::per_second(2.0);
    assert_eq!(
        a.fleet_write_slot(InstallationId(1), &ceiling).unwrap(),
        None
    );
    let wait = c
        .fleet_write_slot(InstallationId(1), &ceiling)
        .unwrap()
        .expect("the slot was just taken by another worker");
    assert!(
        wait <= Duration::from_millis(500) && wait > Duration::from_millis(300),
        "{wait:?}"
    );
    assert_eq!(
        c.fleet_write_slot(InstallationId(2), &ceiling).unwrap(),
        None
    );
    std::thread::sleep(wait);
    assert_eq!(
        c.fleet_write_slot(InstallationId(1), &ceiling).unwrap(),
        None
    );

    // Many workers racing for slots: in a window of 2 s at most the burst
    // plus 2 × 2 writes go, however many ask.
    let burst = FleetCeiling {
        interval: Duration::from_millis(500),
        burst: 2,
    };
    let granted = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let window = Duration::from_secs(2);
    std::thread::scope(|scope| {
        for set in [&a, &c] {
            let granted = &granted;
            scope.spawn(move || {
                while started.elapsed() < window {
                    if set
                        .fleet_write_slot(InstallationId(9), &burst)
                        .unwrap()
                        .is_none()
                    {
                        granted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let granted = granted.into_inner();
    let elapsed = started.elapsed().as_secs_f64();
    let most = 2 + (elapsed / 0.5).floor() as usize;
    assert!(granted <= most, "{granted} writes in {elapsed:.2} s");
    assert!(granted >= 4, "{granted} writes in {elapsed:.2} s");
}

/// A database that cannot be reached is an error within the call timeout
/// (a delivery then gets 503 and GitHub redelivers), and its message never
/// shows the password.
#[test]
fn an_unreachable_database_fails_fast_without_showing_the_password() {
    let dir = TempDir::new("nowhere");
    let url = SecretString::from(format!(
        "postgresql://bot:s3cret@localhost/none?host={}",
        dir.path().display()
    ));
    let started = Instant::now();
    let error = PostgresPendingSet::open(&url, TEST_LEASE)
        .err()
        .expect("nothing listens there");
    let shown = format!("{error:#}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
    assert!(started.elapsed() < Duration::from_secs(40));
}

/// The connection has no TLS: asking for it is refused at once, in words,
/// rather than failing every connection attempt.
#[test]
fn a_url_that_requires_tls_is_refused_with_the_reason() {
    let url = SecretString::from("postgresql://bot:s3cret@db.example/tlb?sslmode=require");
    let error = PostgresPendingSet::open(&url, TEST_LEASE)
        .err()
        .expect("TLS is not offered");
    let shown = format!("{error:#}");
    assert!(shown.contains("sslmode=require"), "{shown}");
    assert!(shown.contains("without TLS"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
}

/// Once the store's database goes away under a running worker, calls fail
/// (the webhook answers 503 for any store error) rather than hang.
#[test]
fn calls_fail_within_the_timeout_when_the_database_goes_away() {
    let url = pg::fresh_database();
    let set = PostgresPendingSet::open(&url, TEST_LEASE).unwrap();
    set.add(pull(1, 1), "d1").unwrap();
    let name = url_database(&url);
    let server = pg::server();
    server.psql(
        "postgres",
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
    );
    server.psql(
        "postgres",
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
    );
    let started = Instant::now();
    let outcome = set.add(pull(1, 2), "d2");
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(started.elapsed() < task_list_bot::pending::CALL_TIMEOUT + Duration::from_secs(1));
    server.psql(
        "postgres",
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while set.add(pull(1, 2), "d2").is_err() {
        assert!(Instant::now() < deadline, "the store never recovered");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(set.len(), 2);
}

fn url_database(url: &SecretString) -> String {
    use secrecy::ExposeSecret as _;
    let text = url.expose_secret();
    let path = text.split("///").nth(1).unwrap();
    path.split('?').next().unwrap().to_owned()
}

/// `task-list-bot status` reads a fleet in PostgreSQL: every host's
/// workers (alive while their lease holds), claims, pauses and drops, and
/// never shows the database password.
#[test]
fn status_reads_the_fleet_from_the_database() {
    use secrecy::ExposeSecret as _;
    use task_list_bot::pending::{DroppedItem, WorkerFigures, read_fleet};
    let url = pg::fresh_database();
    let worker = PostgresPendingSet::open(&url, TEST_LEASE).unwrap();
    let now = SystemTime::now();
    worker
        .record_worker(
            &WorkerFigures {
                name: "7".into(),
                pid: 4242,
                started: now,
                deliveries: 3,
                writes: 2,
                unchanged: 1,
                dropped: 1,
                last_error: None,
            },
            now,
        )
        .unwrap();
    worker.add(pull(1, 1), "d1").unwrap();
    worker.add(pull(1, 2), "d2").unwrap();
    worker.claim(InstallationId(1), now).unwrap().unwrap();
    worker
        .pause(InstallationId(1), now + Duration::from_secs(60))
        .unwrap();
    worker
        .record_dropped(&DroppedItem {
            item: pull(1, 9),
            cause: "gone (404)".into(),
            at: now,
        })
        .unwrap();

    let snapshot = read_fleet(&url, SystemTime::now()).unwrap();
    assert_eq!(snapshot.workers.len(), 1);
    let row = &snapshot.workers[0];
    assert!(row.lock_held, "its lease holds");
    assert!(row.figures.name.ends_with("/7"), "{}", row.figures.name);
    assert_eq!((row.figures.pid, row.figures.writes), (4242, 2));
    assert_eq!(
        (snapshot.backlog[0].items, snapshot.backlog[0].claimed),
        (2, 1)
    );
    assert_eq!(snapshot.claimed[0].worker, row.figures.name);
    assert_eq!(snapshot.pauses.len(), 1);
    assert_eq!(snapshot.dropped[0].cause, "gone (404)");
    assert_eq!(snapshot.dropped[0].worker, row.figures.name);

    // The command itself, with a password in the URL it must not print.
    let with_password = format!("{}&password=s3cret-pw", url.expose_secret());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_task-list-bot"))
        .args(["status", "--json"])
        .env_clear()
        .env("DATABASE_URL", &with_password)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stdout.contains("s3cret-pw") && !stderr.contains("s3cret-pw"),
        "{stdout}{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect(&stderr);
    assert_eq!(report["workers"][0]["alive"], true, "{report}");
    assert_eq!(output.status.code(), Some(0), "{report}");

    // A worker whose lease ran out shows as not alive.
    worker.crash_for_test();
    let deadline = Instant::now() + TEST_LEASE.lease + Duration::from_secs(5);
    while read_fleet(&url, SystemTime::now()).unwrap().workers[0].lock_held {
        assert!(Instant::now() < deadline, "the lease never ran out");
        std::thread::sleep(Duration::from_millis(100));
    }
}
