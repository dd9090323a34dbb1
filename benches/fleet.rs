//! Fleet benchmark: the release binary run as systemd runs it (N workers
//! sharing one inherited listening socket, `READY=1` and `STATUS=` on a
//! notify socket, one shared state directory), against the project's fake
//! GitHub in this process.
//!
//! ```sh
//! cargo bench --bench fleet                 # the full run, 1 and 4 workers (~5 min)
//! cargo bench --bench fleet -- --quick      # smoke run for CI (or BENCH_QUICK=1)
//! cargo bench --bench fleet -- --workers 4 --bot target/release/task-list-bot
//! ```
//!
//! It prints one Markdown table: burst drain times against the ideal
//! `events / (workers × installations × WRITE_RATE)`, acknowledgement
//! latency (bursts 1 and 2: 60 signed pull-request deliveries, each on its
//! own connection, all written at the same instant by this compiled client,
//! timed from the write to the answer, five such bursts per figure; target
//! p99 ≤ 10 ms), ingest capacity and CPU per webhook (on keep-alive
//! connections, and one delivery at a time on a fresh connection each, as
//! GitHub sends them, with the wake-ups each costs the fleet), memory,
//! start-up time and installation tokens, each with its target, plus a
//! verification of every check run. A missed target is reported, never
//! fatal; the exit status is non-zero only when the benchmark breaks or a
//! check is wrong or missing.

#[path = "../tests/support/fake_github/mod.rs"]
mod fake_github;
#[path = "../tests/support/postgres.rs"]
mod pg;
#[path = "../tests/support/webhooks.rs"]
mod webhooks;

#[path = "fleet/client.rs"]
mod client;
#[path = "fleet/launcher.rs"]
mod launcher;
#[path = "fleet/procfs.rs"]
mod procfs;
#[path = "fleet/prs.rs"]
mod prs;
#[path = "fleet/report.rs"]
mod report;
#[path = "fleet/scenarios.rs"]
mod scenarios;
#[path = "fleet/verify.rs"]
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use fake_github::FakeGitHub;
use launcher::{Fleet, FleetSettings, Memory, StopReport};
use scenarios::{
    BaselineOutcome, Bench, BurstOutcome, IngestKind, IngestOutcome, OneAtATimeOutcome, Plan,
    RealisticOutcome,
};

/// A progress line on stderr, with the time since the benchmark started.
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[{:>6.1} s] {}", started().elapsed().as_secs_f64(), format!($($arg)*))
    };
}

/// When the benchmark started, for progress lines.
fn started() -> Instant {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

const APP_ID: u64 = 1;
const WEBHOOK_SECRET: &str = "fleet benchmark webhook secret";
/// Load-generating keep-alive connections in the ingest run.
const INGEST_CONNECTIONS: usize = 32;
/// Time between a worker's READY=1 and its idle memory reading, so that
/// lazily started parts (the worker loop, the status task) are counted.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Parser)]
#[command(about = "Benchmarks a fleet of task-list-bot workers against the fake GitHub")]
struct Args {
    /// A short smoke run (12 events per burst, 2 s of ingest).
    #[arg(long, env = "BENCH_QUICK", value_parser = clap::builder::BoolishValueParser::new())]
    quick: bool,
    /// The bot binary; default: the release build cargo made for this bench.
    #[arg(long)]
    bot: Option<PathBuf>,
    /// Fleet sizes to run, one after the other.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4])]
    workers: Vec<usize>,
    /// The workers' LOG_LEVEL; above `warn` logging costs show in the figures.
    #[arg(long, default_value = "warn")]
    log_level: String,
    /// Keep the run directories (worker logs, state) even when all is well.
    #[arg(long)]
    keep: bool,
    /// Leave out the fleet with a PostgreSQL pending set (which needs
    /// Debian's `postgresql` package: the bench starts its own server).
    #[arg(long)]
    no_postgres: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// How big the scenarios are.
struct Sizes {
    burst_events: usize,
    /// Bursts sent for each acknowledgement figure (figure 4).
    ack_rounds: usize,
    realistic_pulls: usize,
    ingest_duration: Duration,
    /// Deliveries sent one at a time, each on a fresh connection.
    one_at_a_time: usize,
}

impl Sizes {
    fn for_args(args: &Args) -> Sizes {
        if args.quick {
            Sizes {
                burst_events: 12,
                ack_rounds: 2,
                realistic_pulls: 3,
                ingest_duration: Duration::from_secs(2),
                one_at_a_time: 500,
            }
        } else {
            Sizes {
                burst_events: 60,
                ack_rounds: 5,
                realistic_pulls: 15,
                ingest_duration: Duration::from_secs(10),
                one_at_a_time: 5000,
            }
        }
    }
}

/// Everything measured on one fleet.
pub struct FleetRun {
    pub workers: usize,
    /// Exec to READY=1 with an empty state directory.
    pub startup_first: Vec<Option<Duration>>,
    /// Exec to READY=1 with the state directory of the first start.
    pub startup_restart: Vec<Option<Duration>>,
    pub memory_idle: Memory,
    pub memory_after_burst_one: Memory,
    pub memory_after_bursts: Memory,
    pub memory_after_ingest: Memory,
    pub baseline: BaselineOutcome,
    pub burst_one: BurstOutcome,
    pub burst_six: BurstOutcome,
    pub realistic: RealisticOutcome,
    pub ingest: Vec<IngestOutcome>,
    pub one_at_a_time: OneAtATimeOutcome,
    /// SIGTERM right after every worker of the first start said READY=1.
    pub stops_after_ready: Vec<StopReport>,
    /// SIGTERM after the scenarios.
    pub stops_at_end: Vec<StopReport>,
    /// WARN and ERROR lines of each worker's log.
    pub logged_problems: Vec<(usize, Vec<String>)>,
    pub noise: Noise,
    pub run_dir: PathBuf,
}

impl FleetRun {
    /// Every scenario ended with an empty pending set and nothing in the
    /// workers' logs worth a look.
    fn ended_quiet(&self) -> bool {
        self.burst_one.idle_reached
            && self.burst_six.idle_reached
            && self.realistic.idle_reached
            && self.ingest.iter().all(|ingest| ingest.idle_reached)
            && self
                .logged_problems
                .iter()
                .all(|(_, lines)| lines.is_empty())
    }
}

/// The scenarios' pull requests, seeded before the fleet starts.
struct Plans {
    burst_one: Plan,
    burst_six: Plan,
    realistic: Plan,
    ingest: Plan,
}

impl Plans {
    /// Distinct installations per scenario, so that every scenario starts
    /// without cached tokens and its token count is its own.
    fn seed(fake: &FakeGitHub, sizes: &Sizes) -> Plans {
        Plans {
            burst_one: Plan::seed(fake, "burst-one", 11, 1, sizes.burst_events),
            burst_six: Plan::seed(fake, "burst-six", 21, 6, sizes.burst_events),
            realistic: Plan::seed(fake, "realistic", 31, 1, sizes.realistic_pulls),
            ingest: Plan::seed(fake, "ingest", 41, 6, sizes.burst_events),
        }
    }
}

fn main() -> ExitCode {
    started();
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fleet bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("fleet bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every fleet size and prints the table; false when a check failed.
async fn run(args: &Args) -> anyhow::Result<bool> {
    anyhow::ensure!(
        !args.workers.is_empty() && !args.workers.contains(&0),
        "--workers takes fleet sizes of at least 1"
    );
    let built = bot_binary(args)?;
    let bin_dir = std::env::temp_dir().join(format!("tlb-fleet-{}-bin", std::process::id()));
    let bot = snapshot_binary(&built, &bin_dir)?;
    let sizes = Sizes::for_args(args);
    eprintln!(
        "fleet bench: bot {} (copied from {}), fleets {:?}, {} events per burst{}",
        bot.display(),
        built.display(),
        args.workers,
        sizes.burst_events,
        if args.quick { " (quick)" } else { "" }
    );
    let mut runs = Vec::new();
    for &workers in &args.workers {
        let run = run_fleet(args, &bot, &sizes, workers).await;
        if run.is_err() {
            let _ = std::fs::remove_dir_all(&bin_dir);
        }
        runs.push(run?);
    }
    let postgres = if args.no_postgres {
        None
    } else {
        Some(run_postgres_ack(args, &bot, &sizes, args.workers[0]).await)
    };
    let _ = std::fs::remove_dir_all(&bin_dir);
    let mut rows = report::rows(&runs);
    if let Some(postgres) = &postgres {
        rows.extend(report::postgres_ack_rows(postgres));
    }
    println!("\n{}\n", procfs::machine_line());
    println!("{}", report::markdown(&rows));
    println!("{}", report::target_summary(&rows));
    print_details(&runs);
    let failed = report::any_failed(&rows);
    for run in &runs {
        if failed || args.keep || !run.ended_quiet() {
            println!("worker logs and state kept in {}", run.run_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&run.run_dir);
        }
    }
    Ok(!failed)
}

fn bot_binary(args: &Args) -> anyhow::Result<PathBuf> {
    let bot = args
        .bot
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_task-list-bot")));
    let bot = std::path::absolute(&bot).with_context(|| format!("resolving {}", bot.display()))?;
    anyhow::ensure!(bot.is_file(), "no bot binary at {}", bot.display());
    Ok(bot)
}

/// Copies the bot binary so that every fleet of the run executes the same
/// build, even when a `cargo build` replaces the original meanwhile.
fn snapshot_binary(bot: &Path, directory: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let copy = directory.join("task-list-bot");
    std::fs::copy(bot, &copy)
        .with_context(|| format!("copying {} to {}", bot.display(), copy.display()))?;
    Ok(copy)
}

fn project_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// What a fleet runs against: the fake GitHub with every scenario's pull
/// requests seeded, and the settings its workers start with. Both kinds of
/// fleet (state directory, PostgreSQL) are staged here.
struct Stage {
    fake: FakeGitHub,
    plans: Plans,
    settings: FleetSettings,
}

impl Stage {
    /// `name` tells this fleet's run directory from the others'.
    async fn new(
        args: &Args,
        bot: &Path,
        sizes: &Sizes,
        workers: usize,
        name: &str,
        database_url: Option<String>,
    ) -> anyhow::Result<Stage> {
        let public_key_path = project_file("tests/data/test-app-key.pub.pem");
        let public_key = std::fs::read(&public_key_path)
            .with_context(|| format!("reading {}", public_key_path.display()))?;
        let fake = FakeGitHub::start(APP_ID, &public_key).await;
        // The benchmark drains bursts of thousands of check runs as fast as
        // the fleet can write them: it measures throughput, not pacing, so
        // it goes past GitHub's content-creation limit on purpose.
        fake.set_content_creation_limits(false);
        let plans = Plans::seed(&fake, sizes);
        let run_dir = std::env::temp_dir().join(format!("tlb-fleet-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run_dir);
        let settings = FleetSettings {
            bot: bot.to_owned(),
            workers,
            github_host: fake.host(),
            webhook_secret: WEBHOOK_SECRET.to_owned(),
            private_key_path: project_file("tests/data/test-app-key.pem"),
            run_dir,
            log_level: args.log_level.clone(),
            database_url,
        };
        Ok(Stage {
            fake,
            plans,
            settings,
        })
    }

    /// Starts the fleet and waits [`SETTLE`] after every worker is ready.
    async fn start_fleet(&self) -> anyhow::Result<Fleet> {
        let fleet = Fleet::start(&self.settings).await?;
        tokio::time::sleep(SETTLE).await;
        Ok(fleet)
    }

    fn bench<'a>(&'a self, fleet: &'a Fleet) -> Bench<'a> {
        Bench {
            fake: &self.fake,
            fleet,
            secret: WEBHOOK_SECRET,
            workers: self.settings.workers,
        }
    }
}

/// Starts a fleet of `workers`, runs every scenario on it in order, stops it.
async fn run_fleet(
    args: &Args,
    bot: &Path,
    sizes: &Sizes,
    workers: usize,
) -> anyhow::Result<FleetRun> {
    let stage = Stage::new(args, bot, sizes, workers, &format!("{workers}w"), None).await?;
    progress!("[{workers} workers] starting the fleet");
    // The first start creates the state directory's database; systemd
    // restarts find it in place. Both are measured.
    let first = Fleet::start(&stage.settings).await?;
    let startup_first = first.startup_times();
    let stops_after_ready = first.stop().await;
    let noise_meter = NoiseMeter::start()?;
    let fleet = stage.start_fleet().await?;
    let startup_restart = fleet.startup_times();
    let memory_idle = fleet.memory()?;
    let measured = run_scenarios(&stage.bench(&fleet), &stage.plans, sizes).await;
    let noise = noise_meter.read(&fleet);
    let stops_at_end = fleet.stop().await;
    let measured = measured?;
    let run_dir = stage.settings.run_dir;
    let logged_problems = (1..=workers)
        .map(|number| {
            let log = run_dir.join(format!("worker-{number}.log"));
            (number, launcher::logged_problems(&log))
        })
        .collect();
    Ok(FleetRun {
        workers,
        startup_first,
        startup_restart,
        memory_idle,
        memory_after_burst_one: measured.memory_after_burst_one,
        memory_after_bursts: measured.memory_after_bursts,
        memory_after_ingest: measured.memory_after_ingest,
        baseline: measured.baseline,
        burst_one: measured.burst_one,
        burst_six: measured.burst_six,
        realistic: measured.realistic,
        ingest: measured.ingest,
        one_at_a_time: measured.one_at_a_time,
        stops_after_ready,
        stops_at_end,
        logged_problems,
        noise: noise?,
        run_dir,
    })
}

/// Figure 4 with a PostgreSQL pending set: a fleet of `workers` on a
/// database of a server this process starts (Unix socket, on this
/// machine), one burst, each delivery's acknowledgement timed.
async fn run_postgres_ack(
    args: &Args,
    bot: &Path,
    sizes: &Sizes,
    workers: usize,
) -> Result<report::PostgresAck, String> {
    use secrecy::ExposeSecret as _;
    let url = std::panic::catch_unwind(pg::fresh_database)
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "the PostgreSQL server did not start".to_owned())
        })?
        .expose_secret()
        .to_owned();
    let stage = Stage::new(
        args,
        bot,
        sizes,
        workers,
        &format!("{workers}w-pg"),
        Some(url),
    )
    .await
    .map_err(|e| format!("{e:#}"))?;
    progress!("[{workers} workers, PostgreSQL] starting the fleet");
    let fleet = stage
        .start_fleet()
        .await
        .map_err(|e| format!("starting the fleet: {e:#}"))?;
    progress!(
        "[{workers} workers, PostgreSQL] burst 1: {} opened events, then {} more bursts for their answers, 1 installation",
        sizes.burst_events,
        sizes.ack_rounds - 1
    );
    let burst = scenarios::burst(
        &stage.bench(&fleet),
        &stage.plans.burst_one,
        sizes.ack_rounds,
    )
    .await;
    let _ = fleet.stop().await;
    let run_dir = &stage.settings.run_dir;
    if burst.verification.is_ok() && !args.keep {
        let _ = std::fs::remove_dir_all(run_dir);
    } else {
        println!("PostgreSQL fleet's logs kept in {}", run_dir.display());
    }
    Ok(report::PostgresAck {
        workers,
        latencies: burst.ack_latencies,
        verification: burst.verification,
    })
}

/// CPU the rest of the machine used while a fleet ran: the machine's busy
/// time minus the benchmark's and the workers'. Other builds and tests on
/// a 2-core machine show up in every figure; this says how much there was.
struct NoiseMeter {
    started: Instant,
    machine: procfs::MachineCpu,
    bench_cpu: Duration,
}

/// What [`NoiseMeter`] measured.
#[derive(Clone, Copy, Debug)]
pub struct Noise {
    pub wall: Duration,
    pub others_cpu: Duration,
    /// Time the machine's cores were runnable but the hypervisor ran
    /// something else.
    pub stolen: Duration,
    pub cores: usize,
}

impl NoiseMeter {
    fn start() -> anyhow::Result<NoiseMeter> {
        Ok(NoiseMeter {
            started: Instant::now(),
            machine: procfs::machine_cpu_times()?,
            bench_cpu: procfs::own_cpu_time()?,
        })
    }

    /// Call before the workers stop: their CPU time dies with them.
    fn read(&self, fleet: &Fleet) -> anyhow::Result<Noise> {
        let now = procfs::machine_cpu_times()?;
        let machine = now.processes.saturating_sub(self.machine.processes);
        let ours = procfs::own_cpu_time()?.saturating_sub(self.bench_cpu) + fleet.cpu_time()?;
        Ok(Noise {
            wall: self.started.elapsed(),
            others_cpu: machine.saturating_sub(ours),
            stolen: now.stolen.saturating_sub(self.machine.stolen),
            cores: procfs::usable_cpus(),
        })
    }
}

/// What the scenarios of one fleet measured.
struct Measured {
    baseline: BaselineOutcome,
    burst_one: BurstOutcome,
    memory_after_burst_one: Memory,
    burst_six: BurstOutcome,
    realistic: RealisticOutcome,
    memory_after_bursts: Memory,
    ingest: Vec<IngestOutcome>,
    one_at_a_time: OneAtATimeOutcome,
    memory_after_ingest: Memory,
}

async fn run_scenarios(
    bench: &Bench<'_>,
    plans: &Plans,
    sizes: &Sizes,
) -> anyhow::Result<Measured> {
    let workers = bench.workers;
    progress!(
        "[{workers} workers] baseline: {} bursts of {} ignored events at once",
        sizes.ack_rounds,
        sizes.burst_events
    );
    let baseline = scenarios::ignored_burst(bench, &plans.ingest, sizes.ack_rounds).await;
    progress!(
        "[{workers} workers] burst 1: {} opened events, then {} more bursts for their answers, 1 installation",
        sizes.burst_events,
        sizes.ack_rounds - 1
    );
    let burst_one = scenarios::burst(bench, &plans.burst_one, sizes.ack_rounds).await;
    let memory_after_burst_one = bench.fleet.memory()?;
    progress!(
        "[{workers} workers] burst 2: {} opened events, then {} more bursts for their answers, 6 installations",
        sizes.burst_events,
        sizes.ack_rounds - 1
    );
    let burst_six = scenarios::burst(bench, &plans.burst_six, sizes.ack_rounds).await;
    progress!(
        "[{workers} workers] burst 3: realistic activity on {} PRs",
        sizes.realistic_pulls
    );
    let realistic = scenarios::realistic(bench, &plans.realistic).await;
    let memory_after_bursts = bench.fleet.memory()?;
    let mut ingest = Vec::new();
    for kind in [IngestKind::Ignored, IngestKind::PullRequest] {
        progress!(
            "[{workers} workers] ingest: {} for {:?}",
            kind.label(),
            sizes.ingest_duration
        );
        ingest.push(
            scenarios::ingest(
                bench,
                &plans.ingest,
                kind,
                INGEST_CONNECTIONS,
                sizes.ingest_duration,
            )
            .await?,
        );
    }
    progress!(
        "[{workers} workers] ingest: {} ignored events one at a time, each on a fresh connection",
        sizes.one_at_a_time
    );
    let one_at_a_time = scenarios::one_at_a_time(bench, &plans.ingest, sizes.one_at_a_time).await?;
    let memory_after_ingest = bench.fleet.memory()?;
    Ok(Measured {
        baseline,
        burst_one,
        memory_after_burst_one,
        burst_six,
        realistic,
        memory_after_bursts,
        ingest,
        one_at_a_time,
        memory_after_ingest,
    })
}

/// What the table leaves out: full verification problems, worker log
/// warnings, scenarios that never went idle.
fn print_details(runs: &[FleetRun]) {
    for run in runs {
        let workers = run.workers;
        let bursts = [
            (
                "burst 1",
                run.burst_one.idle_reached,
                &run.burst_one.verification,
            ),
            (
                "burst 2",
                run.burst_six.idle_reached,
                &run.burst_six.verification,
            ),
            (
                "burst 3",
                run.realistic.idle_reached,
                &run.realistic.verification,
            ),
        ];
        for problem in &run.baseline.problems {
            println!("[{workers} workers] baseline: {problem}");
        }
        for (name, idle, verification) in bursts {
            if !idle {
                println!("[{workers} workers] {name}: the fleet did not report idle in time");
            }
            for problem in &verification.problems {
                println!("[{workers} workers] {name}: {problem}");
            }
        }
        for ingest in &run.ingest {
            if !ingest.idle_reached {
                println!(
                    "[{workers} workers] ingest {}: the fleet did not report idle in time",
                    ingest.kind.label()
                );
            }
            for problem in ingest.verification.iter().flat_map(|v| &v.problems) {
                println!(
                    "[{workers} workers] ingest {}: {problem}",
                    ingest.kind.label()
                );
            }
        }
        for (number, lines) in &run.logged_problems {
            if lines.is_empty() {
                continue;
            }
            println!(
                "[{workers} workers] worker {number} logged {} WARN/ERROR lines, first ones:",
                lines.len()
            );
            for line in lines.iter().take(5) {
                println!("    {line}");
            }
        }
    }
}
