//! The scenarios: bursts of `opened` events, a realistic burst of activity,
//! and sustained ingest. Each sets up its own installations and
//! repositories in the fake, so no scenario's tokens or checks leak into
//! another's figures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;

use crate::client::{self, Answer, Connection, SignedDelivery};
use crate::fake_github::{Endpoint, FakeGitHub, ReviewState};
use crate::launcher::{Fleet, StatusFigures};
use crate::prs::{BenchPull, Tally};
use crate::verify::{self, Expected, Verification};
use crate::webhooks::{self, Webhook};

/// Check-run writes per second per installation per worker (`WRITE_RATE`).
pub const WRITE_RATE: f64 = 1.0;
/// How long the fleet may take beyond the ideal to finish a scenario before
/// the benchmark stops waiting and reports what it has.
const EXTRA_PATIENCE: Duration = Duration::from_secs(30);
/// Workers send `STATUS=` every 2 s when it changed; how long to wait for
/// their figures to catch up with what the fake saw.
const STATUS_LAG: Duration = Duration::from_secs(5);

/// What every scenario works with.
pub struct Bench<'a> {
    pub fake: &'a FakeGitHub,
    pub fleet: &'a Fleet,
    pub secret: &'a str,
    pub workers: usize,
}

impl Bench<'_> {
    fn address(&self) -> SocketAddr {
        self.fleet.address
    }

    fn sign(&self, webhook: &Webhook) -> SignedDelivery {
        SignedDelivery::new(webhook, self.secret)
    }

    /// The time `writes` checks take on `installations` installations
    /// when every worker writes at the full rate.
    fn ideal(&self, writes: usize, installations: usize) -> Duration {
        let rate = self.workers as f64 * installations as f64 * WRITE_RATE;
        Duration::from_secs_f64(writes as f64 / rate)
    }
}

/// Pull requests spread evenly over consecutive installations, one
/// repository each, created in the fake.
pub struct Plan {
    pub installations: Vec<u64>,
    pub pulls: Vec<BenchPull>,
}

impl Plan {
    pub fn seed(
        fake: &FakeGitHub,
        name: &str,
        first_installation: u64,
        installations: usize,
        pulls: usize,
    ) -> Plan {
        let per_installation = pulls.div_ceil(installations);
        let installations: Vec<u64> = (first_installation..).take(installations).collect();
        let mut seeded = Vec::with_capacity(pulls);
        for &installation in &installations {
            let repo = format!("org-{installation}/{name}");
            fake.add_repo(installation, &repo);
            // A settings file that keeps the defaults: every repository's
            // check reads it (once per worker per cache period).
            fake.put_file(
                &repo,
                crate::fake_github::SETTINGS_PATH,
                "when_incomplete: in_progress\n",
            );
            for number in 1..=per_installation as u64 {
                if seeded.len() == pulls {
                    break;
                }
                seeded.push(BenchPull::new(&repo, number));
            }
        }
        Plan {
            installations,
            pulls: seeded,
        }
    }

    fn create_pulls(&self, fake: &FakeGitHub) {
        for pull in &self.pulls {
            pull.upsert_into(fake);
        }
    }

    fn expected_unchanged(&self) -> Vec<Expected> {
        self.pulls
            .iter()
            .map(|pull| Expected::of(pull, vec![pull.body_tally]))
            .collect()
    }
}

/// Figures 1, 2, 4 and 8 for one burst.
#[derive(Debug)]
pub struct BurstOutcome {
    pub events: usize,
    pub installations: usize,
    pub payload_bytes: usize,
    pub ideal: Duration,
    /// First send until the last pull request got its check.
    pub drained_in: Option<Duration>,
    pub ack_latencies: AckRounds,
    pub per_worker: Vec<StatusFigures>,
    /// Installation tokens the fake issued, per installation.
    pub tokens: BTreeMap<u64, usize>,
    pub github: GitHubRequests,
    pub idle_reached: bool,
    pub verification: Verification,
}

/// Figure 4's baseline: the acknowledgement latency of bursts that need
/// no work (`labeled`, answered 200 "ignored"), so neither the pending set
/// nor the workers' GitHub traffic is involved.
#[derive(Debug)]
pub struct BaselineOutcome {
    pub ack_latencies: AckRounds,
    pub problems: Vec<String>,
}

/// The acknowledgement latencies of several bursts of the same deliveries,
/// one list per burst. The latency of one burst of 60 is a small sample:
/// its p99 is its slowest delivery, which one scheduling hiccup of a
/// two-core machine decides. Every burst starts from a quiet fleet.
#[derive(Debug, Default)]
pub struct AckRounds {
    pub bursts: Vec<Vec<Duration>>,
    /// For each burst whose workers' threads could be read: their run time
    /// from before its first connection to its last answer.
    pub worker_cpu: Vec<Duration>,
}

impl AckRounds {
    /// Every delivery of every burst.
    pub fn all(&self) -> Vec<Duration> {
        self.bursts.iter().flatten().copied().collect()
    }
}

/// `labeled` for every pull request of the plan, all sent at once, each on
/// its own connection; `rounds` times, each after the fleet went quiet.
pub async fn ignored_burst(bench: &Bench<'_>, plan: &Plan, rounds: usize) -> BaselineOutcome {
    plan.create_pulls(bench.fake);
    let before = bench.fleet.figures();
    let mut outcome = BaselineOutcome {
        ack_latencies: AckRounds::default(),
        problems: Vec::new(),
    };
    let mut accepted = 0;
    for _ in 0..rounds {
        let deliveries: Vec<SignedDelivery> = plan
            .pulls
            .iter()
            .map(|pull| bench.sign(&IngestKind::Ignored.webhook(bench.fake, pull)))
            .collect();
        let (answers, worker_cpu) = send_burst(bench, deliveries).await;
        let mut acks = acknowledgements(&answers);
        accepted += acks.accepted;
        settle(bench, &before, accepted, &[], STATUS_LAG).await;
        outcome.ack_latencies.bursts.push(acks.latencies);
        outcome.ack_latencies.worker_cpu.extend(worker_cpu);
        outcome.problems.append(&mut acks.problems);
    }
    outcome
}

/// `opened` for every pull request of the plan, all sent at once, each on
/// its own connection, timed until every pull request has its check. Then
/// `rounds - 1` more such bursts, each once the fleet is quiet, for their
/// acknowledgements: their checks are written already and stay as they
/// are, so each pull request is read again and not written.
pub async fn burst(bench: &Bench<'_>, plan: &Plan, rounds: usize) -> BurstOutcome {
    plan.create_pulls(bench.fake);
    let opened = || -> Vec<SignedDelivery> {
        plan.pulls
            .iter()
            .map(|pull| {
                bench.sign(&webhooks::pull_request_opened(
                    bench.fake,
                    &pull.repo,
                    pull.number,
                ))
            })
            .collect()
    };
    let deliveries = opened();
    let payload_bytes = deliveries
        .iter()
        .map(SignedDelivery::body_len)
        .max()
        .unwrap_or(0);
    let events = deliveries.len();
    let ideal = bench.ideal(events, plan.installations.len());
    let before = bench.fleet.figures();

    let first_send = Instant::now();
    let (answers, worker_cpu) = send_burst(bench, deliveries).await;
    let Acknowledgements {
        latencies,
        mut accepted,
        mut problems,
    } = acknowledgements(&answers);
    let mut ack_latencies = AckRounds {
        bursts: vec![latencies],
        worker_cpu: worker_cpu.into_iter().collect(),
    };
    let expected = plan.expected_unchanged();
    let mut idle_reached = settle(
        bench,
        &before,
        accepted,
        &expected,
        ideal * 2 + EXTRA_PATIENCE,
    )
    .await;
    let drained_in = every_pull_checked_at(bench.fake, &expected).map(|at| at - first_send);
    let github = GitHubRequests::since(bench.fake, first_send);
    let tokens = tokens_per_installation(bench.fake, &plan.installations);
    let per_worker = bench.fleet.figures_since(&before);
    for _ in 1..rounds {
        let (answers, worker_cpu) = send_burst(bench, opened()).await;
        let mut acks = acknowledgements(&answers);
        accepted += acks.accepted;
        problems.append(&mut acks.problems);
        ack_latencies.bursts.push(acks.latencies);
        ack_latencies.worker_cpu.extend(worker_cpu);
        idle_reached &= settle(bench, &before, accepted, &expected, EXTRA_PATIENCE).await;
    }
    let mut verification = verify::exactly_one_each(bench.fake, &expected);
    verification.problems.append(&mut problems);
    BurstOutcome {
        events,
        installations: plan.installations.len(),
        payload_bytes,
        ideal,
        drained_in,
        ack_latencies,
        per_worker,
        tokens,
        github,
        idle_reached,
        verification,
    }
}

/// Waits until the pending set is empty and the workers' figures account
/// for every accepted delivery and every check the fake recorded for
/// `expected`, so per-worker figures are complete and the next scenario
/// starts from a quiet fleet. False when the fleet never went quiet.
async fn settle(
    bench: &Bench<'_>,
    before: &[StatusFigures],
    accepted: u64,
    expected: &[Expected],
    patience: Duration,
) -> bool {
    let idle = bench
        .fleet
        .wait_until_idle(before, accepted, 0, patience)
        .await;
    let writes = verify::recorded(bench.fake, expected).len() as u64;
    let counted = bench
        .fleet
        .wait_until_idle(before, accepted, writes, STATUS_LAG)
        .await;
    idle && counted
}

/// [`send_all_at_once`] to the fleet, with what the burst cost the
/// workers' threads from before its first connection to its last answer
/// (`None` when a worker's threads could not be read). The fleet is quiet
/// before a burst, so this is the burst's own CPU, which the latencies of
/// a few bursts do not show.
async fn send_burst(
    bench: &Bench<'_>,
    deliveries: Vec<SignedDelivery>,
) -> (Vec<anyhow::Result<Answer>>, Option<Duration>) {
    let threads_before = bench.fleet.threads().ok();
    let answers = send_all_at_once(bench.address(), deliveries).await;
    let worker_cpu = threads_before
        .zip(bench.fleet.threads().ok())
        .map(|(before, after)| crate::procfs::threads_since(&before, &after).run);
    (answers, worker_cpu)
}

/// Sends every delivery on its own connection, all written at the same
/// instant: the connections are opened first, then every request is
/// written once all are open, so each latency is from the request written
/// to its answer (GitHub's view of the acknowledgement), not the connect.
async fn send_all_at_once(
    address: SocketAddr,
    deliveries: Vec<SignedDelivery>,
) -> Vec<anyhow::Result<Answer>> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(deliveries.len()));
    let mut sends = JoinSet::new();
    for delivery in deliveries {
        let start = std::sync::Arc::clone(&start);
        sends.spawn(async move {
            let connection = Connection::open(address).await;
            // Every task reaches the barrier, opened or not, so none waits
            // forever for one whose connection failed.
            start.wait().await;
            let mut connection = connection?;
            connection.send_as_signed(&delivery).await
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = sends.join_next().await {
        answers.push(joined.unwrap_or_else(|error| Err(anyhow::anyhow!("send task: {error}"))));
    }
    answers
}

/// How the fleet answered a set of deliveries.
struct Acknowledgements {
    /// Of every answered delivery, whatever the status.
    latencies: Vec<Duration>,
    /// Answered 2xx.
    accepted: u64,
    /// One per delivery that failed or got a non-2xx answer (GitHub would
    /// record it as failed).
    problems: Vec<String>,
}

fn acknowledgements(answers: &[anyhow::Result<Answer>]) -> Acknowledgements {
    let mut acks = Acknowledgements {
        latencies: Vec::new(),
        accepted: 0,
        problems: Vec::new(),
    };
    for answer in answers {
        match answer {
            Ok(answer) if answer.is_success() => {
                acks.latencies.push(answer.took);
                acks.accepted += 1;
            }
            Ok(answer) => {
                acks.latencies.push(answer.took);
                acks.problems.push(format!(
                    "delivery answered {} {:?}",
                    answer.status,
                    answer.body.trim()
                ));
            }
            Err(error) => acks.problems.push(format!("delivery failed: {error:#}")),
        }
    }
    acks
}

/// When the last pull request got its first check, if all got one.
fn every_pull_checked_at(fake: &FakeGitHub, expected: &[Expected]) -> Option<Instant> {
    let runs = verify::recorded(fake, expected);
    expected
        .iter()
        .map(|pull| {
            runs.iter()
                .find(|run| run.repo == pull.repo && run.head_sha == pull.head_sha)
                .map(|run| run.received_at)
        })
        .collect::<Option<Vec<Instant>>>()?
        .into_iter()
        .max()
}

fn tokens_per_installation(fake: &FakeGitHub, installations: &[u64]) -> BTreeMap<u64, usize> {
    let mut tokens: BTreeMap<u64, usize> = installations.iter().map(|&i| (i, 0)).collect();
    for token in fake.tokens_issued() {
        if let Some(count) = tokens.get_mut(&token.installation_id) {
            *count += 1;
        }
    }
    tokens
}

/// The requests the fleet made to the fake GitHub during a scenario.
#[derive(Clone, Copy, Debug, Default)]
pub struct GitHubRequests {
    /// GETs: pull requests, comments, reviews, check runs.
    pub reads: u64,
    pub check_run_writes: u64,
    pub token_requests: u64,
    /// Settings-file reads (the contents API), also counted in `reads`.
    pub contents: u64,
    /// Of those, conditional ones answered 304 (free of rate limit).
    pub contents_not_modified: u64,
    /// Repositories whose pull requests were read.
    pub repositories: usize,
    pub other: u64,
    /// Answered 4xx or 5xx (e.g. 403 when the installation's hourly budget
    /// of 5000 requests is spent).
    pub refused: u64,
}

impl GitHubRequests {
    pub fn total(&self) -> u64 {
        self.reads + self.check_run_writes + self.token_requests + self.other
    }

    /// Requests the fake received since `since`.
    fn since(fake: &FakeGitHub, since: Instant) -> GitHubRequests {
        let mut counts = GitHubRequests::default();
        let mut repositories = std::collections::BTreeSet::new();
        for request in fake.requests().iter().filter(|r| r.received_at >= since) {
            let path = request.path.trim_start_matches("/api/v3");
            if path.contains("/contents/") {
                counts.contents += 1;
                if request.status == 304 {
                    counts.contents_not_modified += 1;
                }
            }
            if let ["", "repos", owner, name, "pulls", ..] =
                path.split('/').collect::<Vec<_>>().as_slice()
            {
                repositories.insert(format!("{owner}/{name}"));
            }
            match (request.endpoint, request.method.as_str()) {
                (Some(Endpoint::CreateCheckRun), _) => counts.check_run_writes += 1,
                (Some(Endpoint::AccessToken), _) => counts.token_requests += 1,
                (_, "GET") => counts.reads += 1,
                _ => counts.other += 1,
            }
            if request.status >= 400 {
                counts.refused += 1;
            }
        }
        counts.repositories = repositories.len();
        counts
    }
}

/// What happens to a pull request in the realistic burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activity {
    Opened,
    /// The summary is reworded; no checkbox changes.
    EditText,
    /// One more checkbox of the body is ticked.
    TickOne,
    Comment,
    Review,
    ReviewComment,
    /// A comment with a checklist of its own (two tasks, one ticked).
    CommentWithTasks,
}

/// After `opened`, pull request `i` gets activities `(i + 2r) % 6` for
/// rounds r = 0, 1, 2: even pull requests only see talk, odd ones an edit,
/// a tick and a comment with tasks, so most events change no checkbox.
const ACTIVITIES: [Activity; 6] = [
    Activity::Comment,
    Activity::EditText,
    Activity::Review,
    Activity::TickOne,
    Activity::ReviewComment,
    Activity::CommentWithTasks,
];
/// Events per pull request: `opened` and three more.
const ROUNDS: usize = 4;
/// Time between two events of the realistic burst: 60 events arrive over
/// 3 s, so most of them land while checks are being read and written.
const EVENT_SPACING: Duration = Duration::from_millis(50);

/// A pull request of the realistic burst, with its history.
struct LivePull {
    pull: BenchPull,
    discussion_tally: Tally,
    history: Vec<Tally>,
}

impl LivePull {
    fn tally(&self) -> Tally {
        self.pull.body_tally.plus(self.discussion_tally)
    }

    /// Changes the fake as GitHub would change, then returns the event
    /// GitHub would send about the change.
    fn apply(&mut self, fake: &FakeGitHub, activity: Activity) -> Webhook {
        let (repo, number) = (self.pull.repo.clone(), self.pull.number);
        let webhook = match activity {
            Activity::Opened => {
                self.pull.upsert_into(fake);
                webhooks::pull_request_opened(fake, &repo, number)
            }
            Activity::EditText | Activity::TickOne => {
                let old_body = self.pull.body();
                let tally = self.pull.body_tally;
                if activity == Activity::TickOne && tally.done < tally.total {
                    self.pull.body_tally = Tally::new(tally.done + 1, tally.total);
                } else {
                    self.pull.revision += 1;
                }
                self.pull.upsert_into(fake);
                webhooks::pull_request_edited(fake, &repo, number, Some(&old_body), None)
            }
            Activity::Comment => {
                let body = "LGTM, thanks! One question about the retry budget, not blocking.";
                let id = fake.add_issue_comment(&repo, number, "reviewer-a", body);
                webhooks::issue_comment_created(fake, &repo, number, id)
            }
            Activity::Review => {
                let body = "Looks good to me. The jitter makes sense.";
                let id = fake.add_review_with_state(
                    &repo,
                    number,
                    "reviewer-b",
                    body,
                    ReviewState::Approved,
                );
                webhooks::pull_request_review_submitted(fake, &repo, number, id)
            }
            Activity::ReviewComment => {
                let body = "nit: `Duration::from_millis(250)` reads better than `250_000_000` ns.";
                let id = fake.add_review_comment(&repo, number, "reviewer-a", body);
                webhooks::pull_request_review_comment_created(fake, &repo, number, id)
            }
            Activity::CommentWithTasks => {
                let body =
                    "Before merging:\n\n- [ ] Update the runbook\n- [x] Announce in #deploys\n";
                self.discussion_tally = self.discussion_tally.plus(Tally::new(1, 2));
                let id = fake.add_issue_comment(&repo, number, "reviewer-c", body);
                webhooks::issue_comment_created(fake, &repo, number, id)
            }
        };
        self.history.push(self.tally());
        webhook
    }
}

/// Figure 3.
#[derive(Debug)]
pub struct RealisticOutcome {
    pub events: usize,
    pub pulls: usize,
    pub writes: usize,
    /// One write per pull request at the full rate.
    pub ideal: Duration,
    /// First send until every pull request's latest check was correct.
    pub settled_in: Option<Duration>,
    pub per_worker: Vec<StatusFigures>,
    pub tokens: BTreeMap<u64, usize>,
    pub github: GitHubRequests,
    pub idle_reached: bool,
    pub verification: Verification,
}

/// `opened`, then edits, comments and reviews, each applied to the fake
/// before its event is sent, one every [`EVENT_SPACING`].
pub async fn realistic(bench: &Bench<'_>, plan: &Plan) -> RealisticOutcome {
    let mut live: Vec<LivePull> = plan
        .pulls
        .iter()
        .map(|pull| LivePull {
            pull: pull.clone(),
            discussion_tally: Tally::default(),
            history: Vec::new(),
        })
        .collect();
    let before = bench.fleet.figures();
    let first_send = Instant::now();
    let mut sends = JoinSet::new();
    let mut events: u32 = 0;
    for round in 0..ROUNDS {
        for (index, pull) in live.iter_mut().enumerate() {
            let activity = match round {
                0 => Activity::Opened,
                r => ACTIVITIES[(index + 2 * (r - 1)) % ACTIVITIES.len()],
            };
            tokio::time::sleep_until((first_send + EVENT_SPACING * events).into()).await;
            let delivery = bench.sign(&pull.apply(bench.fake, activity));
            let address = bench.address();
            sends.spawn(async move { client::deliver(address, &delivery).await });
            events += 1;
        }
    }
    let answers = sends.join_all().await;
    let Acknowledgements {
        accepted,
        mut problems,
        ..
    } = acknowledgements(&answers);
    let ideal = bench.ideal(live.len(), plan.installations.len());
    let expected: Vec<Expected> = live
        .iter()
        .map(|live| Expected::of(&live.pull, live.history.clone()))
        .collect();
    let idle_reached = settle(
        bench,
        &before,
        accepted,
        &expected,
        ideal * 3 + EXTRA_PATIENCE,
    )
    .await;
    let mut verification = verify::latest_correct(bench.fake, &expected);
    verification.problems.append(&mut problems);
    RealisticOutcome {
        events: events as usize,
        pulls: live.len(),
        writes: verify::recorded(bench.fake, &expected).len(),
        ideal,
        settled_in: verify::settled_at(bench.fake, &expected).map(|at| at - first_send),
        per_worker: bench.fleet.figures_since(&before),
        tokens: tokens_per_installation(bench.fake, &plan.installations),
        github: GitHubRequests::since(bench.fake, first_send),
        idle_reached,
        verification,
    }
}

/// Which deliveries the ingest run sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestKind {
    /// `pull_request` / `labeled`: verified, decoded, answered 200 "ignored".
    Ignored,
    /// `pull_request` / `synchronize`: recorded in the pending set (202),
    /// and read and written by the workers meanwhile.
    PullRequest,
}

impl IngestKind {
    pub fn label(self) -> &'static str {
        match self {
            IngestKind::Ignored => "ignored (labeled)",
            IngestKind::PullRequest => "PR events (synchronize)",
        }
    }

    fn webhook(self, fake: &FakeGitHub, pull: &BenchPull) -> Webhook {
        match self {
            IngestKind::Ignored => {
                let label = json!({"label": {
                    "id": 208_045_946, "node_id": "MDU6TGFiZWwyMDgwNDU5NDY=",
                    "url": format!("https://api.github.com/repos/{}/labels/bug", pull.repo),
                    "name": "bug", "description": "Something isn't working",
                    "color": "d73a4a", "default": true,
                }});
                webhooks::pull_request_event(fake, &pull.repo, pull.number, "labeled", label)
            }
            IngestKind::PullRequest => {
                webhooks::pull_request_synchronize(fake, &pull.repo, pull.number, &pull.head_sha)
            }
        }
    }
}

/// The plan's pull requests, created in the fake, and one signed delivery
/// of `kind` for each.
fn signed_pool(bench: &Bench<'_>, plan: &Plan, kind: IngestKind) -> Vec<SignedDelivery> {
    plan.create_pulls(bench.fake);
    plan.pulls
        .iter()
        .map(|pull| bench.sign(&kind.webhook(bench.fake, pull)))
        .collect()
}

/// Figure 5.
#[derive(Debug)]
pub struct IngestOutcome {
    pub kind: IngestKind,
    pub connections: usize,
    pub elapsed: Duration,
    pub answers_by_status: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub latencies: Vec<Duration>,
    /// CPU time of the workers during the run.
    pub worker_cpu: Duration,
    /// CPU time of the benchmark process (load generator and fake GitHub).
    pub bench_cpu: Duration,
    pub per_worker: Vec<StatusFigures>,
    /// During the load only (not the drain after it).
    pub github_during_load: GitHubRequests,
    pub idle_reached: bool,
    /// For PR events: checks written once the queue drained.
    pub verification: Option<Verification>,
}

impl IngestOutcome {
    pub fn accepted(&self) -> u64 {
        self.answers_by_status
            .iter()
            .filter(|(status, _)| (200..300).contains(*status))
            .map(|(_, count)| count)
            .sum()
    }

    pub fn per_second(&self) -> f64 {
        self.accepted() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Figure 5, one at a time: ignored deliveries sent as GitHub sends them,
/// one after another, each on a connection of its own.
#[derive(Debug)]
pub struct OneAtATimeOutcome {
    pub sent: usize,
    pub elapsed: Duration,
    /// Of each 2xx answer, from the connect until the whole answer was read.
    pub latencies: Vec<Duration>,
    /// The run time of the workers' threads, together (exact: wake-ups
    /// too short for `stat`'s clock-tick sampling count in full).
    pub worker_cpu: Duration,
    /// Times the workers' threads went to sleep, together: with every
    /// worker waiting on the shared socket, what each connection wakes.
    pub worker_sleeps: u64,
}

impl OneAtATimeOutcome {
    /// Answers other than 2xx, and deliveries that got no answer.
    pub fn failures(&self) -> usize {
        self.sent - self.latencies.len()
    }
}

/// Sends `count` ignored deliveries one at a time, each on a fresh
/// connection closed after its answer.
pub async fn one_at_a_time(
    bench: &Bench<'_>,
    plan: &Plan,
    count: usize,
) -> anyhow::Result<OneAtATimeOutcome> {
    let pool = signed_pool(bench, plan, IngestKind::Ignored);
    let threads_before = bench.fleet.threads()?;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(count);
    for sequence in 0..count {
        let delivery = &pool[sequence % pool.len()];
        let delivery_id = format!("one-at-a-time-{sequence}");
        let sent = Instant::now();
        let answer = match Connection::open(bench.address()).await {
            Ok(mut connection) => connection.send(delivery, &delivery_id).await,
            Err(error) => Err(error),
        };
        if answer.is_ok_and(|answer| answer.is_success()) {
            latencies.push(sent.elapsed());
        }
    }
    let elapsed = started.elapsed();
    let workers = crate::procfs::threads_since(&threads_before, &bench.fleet.threads()?);
    Ok(OneAtATimeOutcome {
        sent: count,
        elapsed,
        latencies,
        worker_cpu: workers.run,
        worker_sleeps: workers.sleeps,
    })
}

/// What one load-generating connection saw.
#[derive(Default)]
struct ConnectionTally {
    by_status: BTreeMap<u16, u64>,
    transport_errors: u64,
    latencies: Vec<Duration>,
}

/// Signed deliveries as fast as `connections` keep-alive connections carry
/// them, for `duration`, each with a fresh delivery id.
pub async fn ingest(
    bench: &Bench<'_>,
    plan: &Plan,
    kind: IngestKind,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<IngestOutcome> {
    let pool = signed_pool(bench, plan, kind);
    let before = bench.fleet.figures();
    let worker_cpu_before = bench.fleet.cpu_time()?;
    let bench_cpu_before = crate::procfs::own_cpu_time()?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut generators = JoinSet::new();
    for connection in 0..connections {
        let (pool, address) = (pool.clone(), bench.address());
        generators.spawn(generate_load(address, pool, kind, connection, deadline));
    }
    let tallies = generators.join_all().await;
    let elapsed = started.elapsed();
    let github_during_load = GitHubRequests::since(bench.fake, started);
    let worker_cpu = bench.fleet.cpu_time()?.saturating_sub(worker_cpu_before);
    let bench_cpu = crate::procfs::own_cpu_time()?.saturating_sub(bench_cpu_before);

    let mut outcome = IngestOutcome {
        kind,
        connections,
        elapsed,
        answers_by_status: BTreeMap::new(),
        transport_errors: 0,
        latencies: Vec::new(),
        worker_cpu,
        bench_cpu,
        per_worker: Vec::new(),
        github_during_load,
        idle_reached: false,
        verification: None,
    };
    for tally in tallies {
        for (status, count) in tally.by_status {
            *outcome.answers_by_status.entry(status).or_default() += count;
        }
        outcome.transport_errors += tally.transport_errors;
        outcome.latencies.extend(tally.latencies);
    }
    let ideal = bench.ideal(plan.pulls.len(), plan.installations.len());
    let expected = match kind {
        IngestKind::Ignored => Vec::new(),
        IngestKind::PullRequest => plan.expected_unchanged(),
    };
    outcome.idle_reached = settle(
        bench,
        &before,
        outcome.accepted(),
        &expected,
        ideal * 2 + EXTRA_PATIENCE,
    )
    .await;
    if kind == IngestKind::PullRequest {
        outcome.verification = Some(verify::exactly_one_each(bench.fake, &expected));
    }
    outcome.per_worker = bench.fleet.figures_since(&before);
    Ok(outcome)
}

async fn generate_load(
    address: SocketAddr,
    pool: Vec<SignedDelivery>,
    kind: IngestKind,
    connection_number: usize,
    deadline: Instant,
) -> ConnectionTally {
    let mut tally = ConnectionTally::default();
    let mut connection: Option<Connection> = None;
    let mut sequence = 0_usize;
    while Instant::now() < deadline {
        let open = match connection.as_mut() {
            Some(open) => open,
            None => match Connection::open(address).await {
                Ok(open) => connection.insert(open),
                Err(_) => {
                    tally.transport_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let delivery = &pool[(connection_number + sequence) % pool.len()];
        let delivery_id = format!("ingest-{kind:?}-{connection_number}-{sequence}");
        sequence += 1;
        match open.send(delivery, &delivery_id).await {
            Ok(answer) => {
                *tally.by_status.entry(answer.status).or_default() += 1;
                tally.latencies.push(answer.took);
            }
            Err(_) => {
                tally.transport_errors += 1;
                connection = None;
            }
        }
    }
    tally
}
