//! The table: every figure next to the ideal or target it is compared to,
//! in Markdown, so benches/README.md can quote it as printed.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::FleetRun;
use crate::launcher::{Memory, StatusFigures, StopReport};
use crate::scenarios::{
    AckRounds, BurstOutcome, GitHubRequests, IngestKind, IngestOutcome, OneAtATimeOutcome,
};
use crate::verify::Verification;

/// The targets the figures are held to.
const DRAIN_TOLERANCE: f64 = 0.03;
const ACK_P99_TARGET: Duration = Duration::from_millis(10);
const INGEST_TARGET_PER_SECOND: f64 = 10_000.0;
/// Ignored events a single worker takes in a second.
const IGNORED_INGEST_PER_WORKER: f64 = 30_000.0;
const IDLE_RSS_TARGET: u64 = 15_000_000;
const FLEET_RSS_TARGET: u64 = 40_000_000;
const STARTUP_TARGET: Duration = Duration::from_millis(50);
/// The fleet size the throughput and memory targets are stated for.
const TARGET_FLEET: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// A figure without a target.
    Info,
    /// Correctness checks.
    Passed,
    Failed,
    /// The bot misbehaved in a way that wrote no wrong check: reported,
    /// not fatal.
    BotIssue,
}

impl Verdict {
    fn target(met: bool) -> Verdict {
        if met { Verdict::Met } else { Verdict::Missed }
    }

    fn check(passed: bool) -> Verdict {
        if passed {
            Verdict::Passed
        } else {
            Verdict::Failed
        }
    }

    fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::Info => "",
            Verdict::Passed => "ok",
            Verdict::Failed => "**FAILED**",
            Verdict::BotIssue => "**bot issue**",
        }
    }
}

/// One line of the table.
pub struct Row {
    pub figure: String,
    pub workers: usize,
    pub measured: String,
    pub reference: String,
    pub verdict: Verdict,
}

/// Figure 4 with the fleet's PostgreSQL pending set: the same burst, each
/// delivery answered once its transaction committed on a local server.
pub fn postgres_ack_rows(outcome: &Result<PostgresAck, String>) -> Vec<Row> {
    const FIGURE: &str = "4. Ack latency, burst 1, PostgreSQL store";
    match outcome {
        Ok(ack) => {
            let mut rows = ack_row(FIGURE, ack.workers, &ack.latencies);
            if !ack.verification.is_ok() {
                rows.push(Row {
                    figure: "4. PostgreSQL store: checks".to_owned(),
                    workers: ack.workers,
                    measured: ack.verification.problems.join("; "),
                    reference: "one check per pull request".to_owned(),
                    verdict: Verdict::Failed,
                });
            }
            rows
        }
        Err(why) => vec![Row {
            figure: FIGURE.to_owned(),
            workers: 0,
            measured: format!("not run: {why}"),
            reference: format!("p99 < {} ms", ACK_P99_TARGET.as_millis()),
            verdict: Verdict::Failed,
        }],
    }
}

/// What the PostgreSQL fleet measured.
pub struct PostgresAck {
    pub workers: usize,
    pub latencies: AckRounds,
    pub verification: Verification,
}

/// All rows, figure by figure, each fleet size under the other.
pub fn rows(runs: &[FleetRun]) -> Vec<Row> {
    let mut rows = Vec::new();
    let each = |rows: &mut Vec<Row>, make: &dyn Fn(&FleetRun) -> Vec<Row>| {
        for run in runs {
            rows.extend(make(run));
        }
    };
    each(&mut rows, &|run| {
        burst_rows("1. Burst drain, 1 installation", run, &run.burst_one)
    });
    each(&mut rows, &|run| {
        burst_rows("2. Burst drain, 6 installations", run, &run.burst_six)
    });
    each(&mut rows, &realistic_rows);
    each(&mut rows, &baseline_row);
    each(&mut rows, &|run| {
        ack_row(
            "4. Ack latency, burst 1",
            run.workers,
            &run.burst_one.ack_latencies,
        )
    });
    each(&mut rows, &|run| {
        ack_row(
            "4. Ack latency, burst 2",
            run.workers,
            &run.burst_six.ack_latencies,
        )
    });
    each(&mut rows, &ingest_rows);
    each(&mut rows, &memory_rows);
    each(&mut rows, &startup_rows);
    each(&mut rows, &token_rows);
    each(&mut rows, &verification_rows);
    rows
}

fn burst_rows(figure: &str, run: &FleetRun, burst: &BurstOutcome) -> Vec<Row> {
    let ideal = burst.ideal.as_secs_f64();
    let (measured, verdict) = match burst.drained_in {
        Some(took) => {
            let deviation = took.as_secs_f64() / ideal - 1.0;
            let verdict = if figure.starts_with("1.") && run.workers == TARGET_FLEET {
                Verdict::target(deviation <= DRAIN_TOLERANCE)
            } else {
                Verdict::Info
            };
            (
                format!(
                    "{:.2} s ({:+.1}% vs ideal)",
                    took.as_secs_f64(),
                    deviation * 100.0
                ),
                verdict,
            )
        }
        None => ("not drained (checks missing)".to_owned(), Verdict::Missed),
    };
    let mut reference = format!(
        "ideal {} events / ({} × {} inst. × 1/s) = {ideal:.2} s",
        burst.events, run.workers, burst.installations
    );
    if verdict != Verdict::Info {
        reference.push_str(&format!(
            "; target ≤ {:.2} s (+3%)",
            ideal * (1.0 + DRAIN_TOLERANCE)
        ));
    }
    vec![
        Row {
            figure: format!(
                "{figure} ({} events, payload {} KB)",
                burst.events,
                burst.payload_bytes / 1000
            ),
            workers: run.workers,
            measured,
            reference,
            verdict,
        },
        Row {
            figure: "   per worker: deliveries / writes".to_owned(),
            workers: run.workers,
            measured: per_worker(&burst.per_worker),
            reference: format!("even: {} writes each", burst.events.div_ceil(run.workers)),
            verdict: Verdict::Info,
        },
        github_row(run.workers, &burst.github),
        settings_row(run.workers, &burst.github),
    ]
}

/// Settings reads per repository: each worker reads a repository's file
/// once and then keeps it for the cache period (5 minutes), so a burst
/// shorter than that costs at most one request per repository per worker.
fn settings_row(workers: usize, github: &GitHubRequests) -> Row {
    let repositories = github.repositories.max(1);
    let per_repository = github.contents as f64 / repositories as f64;
    let bound = workers as f64;
    Row {
        figure: "   settings reads (contents API)".to_owned(),
        workers,
        measured: format!(
            "{} for {} repositories: {per_repository:.2} per repository ({} answered 304)",
            github.contents, github.repositories, github.contents_not_modified
        ),
        reference: format!("≤ 1 per repository per worker per cache period: ≤ {bound:.0}"),
        verdict: if per_repository <= bound {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    }
}

fn github_row(workers: usize, github: &GitHubRequests) -> Row {
    Row {
        figure: "   GitHub requests".to_owned(),
        workers,
        measured: github_summary(github),
        reference: String::new(),
        verdict: Verdict::Info,
    }
}

fn github_summary(github: &GitHubRequests) -> String {
    format!(
        "{} ({} reads, {} check-run writes, {} token, {} other; {} refused)",
        github.total(),
        github.reads,
        github.check_run_writes,
        github.token_requests,
        github.other,
        github.refused
    )
}

fn per_worker(figures: &[StatusFigures]) -> String {
    figures
        .iter()
        .enumerate()
        .map(|(index, f)| format!("w{}: {}/{}", index + 1, f.deliveries, f.writes))
        .collect::<Vec<_>>()
        .join(", ")
}

fn realistic_rows(run: &FleetRun) -> Vec<Row> {
    let realistic = &run.realistic;
    let settled = match realistic.settled_in {
        Some(took) => format!("{:.2} s", took.as_secs_f64()),
        None => "never (see verification)".to_owned(),
    };
    vec![
        Row {
            figure: format!(
                "3. Realistic burst ({} events on {} PRs, 1 installation)",
                realistic.events, realistic.pulls
            ),
            workers: run.workers,
            measured: format!(
                "{} writes for {} events; all latest checks correct after {settled}",
                realistic.writes, realistic.events
            ),
            reference: format!(
                "≥ {} writes (1 per PR); ideal {:.2} s at 1 write per PR",
                realistic.pulls,
                realistic.ideal.as_secs_f64()
            ),
            verdict: Verdict::Info,
        },
        Row {
            figure: "   per worker: deliveries / writes".to_owned(),
            workers: run.workers,
            measured: per_worker(&realistic.per_worker),
            reference: String::new(),
            verdict: Verdict::Info,
        },
        github_row(run.workers, &realistic.github),
        settings_row(run.workers, &realistic.github),
    ]
}

pub fn ack_row(figure: &str, workers: usize, rounds: &AckRounds) -> Vec<Row> {
    let all = rounds.all();
    let p99 = percentile(&all, 0.99);
    vec![Row {
        figure: figure.to_owned(),
        workers,
        measured: rounds_summary(rounds),
        reference: format!("p99 < {} ms", ACK_P99_TARGET.as_millis()),
        verdict: Verdict::target(p99.is_some_and(|p99| p99 < ACK_P99_TARGET)),
    }]
}

fn baseline_row(run: &FleetRun) -> Vec<Row> {
    let baseline = &run.baseline;
    let all_answered = baseline.problems.is_empty();
    vec![Row {
        figure: "4. Ack latency, baseline: as many ignored events at once".to_owned(),
        workers: run.workers,
        measured: if all_answered {
            rounds_summary(&baseline.ack_latencies)
        } else {
            format!(
                "{}; {} not answered 2xx",
                rounds_summary(&baseline.ack_latencies),
                baseline.problems.len()
            )
        },
        reference: "no target: HTTP, signature and decoding only".to_owned(),
        verdict: if all_answered {
            Verdict::Info
        } else {
            Verdict::Failed
        },
    }]
}

/// The latencies of every burst together, then each burst's slowest.
fn rounds_summary(rounds: &AckRounds) -> String {
    let slowest: Vec<String> = rounds
        .bursts
        .iter()
        .map(|burst| {
            burst.iter().max().map_or_else(
                || "-".to_owned(),
                |max| format!("{:.1}", max.as_secs_f64() * 1e3),
            )
        })
        .collect();
    let summary = format!(
        "{}; {} bursts of {}, slowest of each: {} ms",
        latency_summary(&rounds.all()),
        rounds.bursts.len(),
        rounds.bursts.first().map_or(0, Vec::len),
        slowest.join(" / ")
    );
    match worker_cpu_summary(&rounds.worker_cpu) {
        Some(cpu) => format!("{summary}; {cpu}"),
        None => summary,
    }
}

/// The median and range of the workers' CPU per burst.
fn worker_cpu_summary(per_burst: &[Duration]) -> Option<String> {
    let ms = |p: f64| percentile(per_burst, p).map(|d| d.as_secs_f64() * 1e3);
    Some(format!(
        "workers' CPU per burst: median {:.1} ms ({:.1}–{:.1})",
        ms(0.5)?,
        ms(0.0)?,
        ms(1.0)?
    ))
}

fn latency_summary(latencies: &[Duration]) -> String {
    let ms = |p: f64| percentile(latencies, p).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n = {})",
        ms(0.5),
        ms(0.99),
        ms(1.0),
        latencies.len()
    )
}

/// Nearest-rank percentile.
pub fn percentile(samples: &[Duration], fraction: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

fn ingest_rows(run: &FleetRun) -> Vec<Row> {
    let mut rows = vec![one_at_a_time_row(run.workers, &run.one_at_a_time)];
    for ingest in &run.ingest {
        rows.push(ingest_row(run.workers, ingest));
        let github = &ingest.github_during_load;
        if github.total() > 0 {
            rows.push(Row {
                figure: "   GitHub requests during the load".to_owned(),
                workers: run.workers,
                measured: format!(
                    "{} = {:.0}/s",
                    github_summary(github),
                    github.total() as f64 / ingest.elapsed.as_secs_f64()
                ),
                reference: "GitHub allows 5000/h per installation".to_owned(),
                // Refusals here are the installations' hourly budgets, spent.
                verdict: if github.refused > 0 {
                    Verdict::BotIssue
                } else {
                    Verdict::Info
                },
            });
        }
    }
    rows
}

/// What a connection costs the fleet when deliveries come one at a time,
/// as GitHub sends them: every idle worker waits on the shared socket.
fn one_at_a_time_row(workers: usize, run: &OneAtATimeOutcome) -> Row {
    let answered = run.latencies.len().max(1) as f64;
    Row {
        figure: "5. Ingest, ignored, one at a time (a fresh connection each)".to_owned(),
        workers,
        measured: format!(
            "{:.0}/s ({} in {:.1} s); workers' CPU {:.0} µs/webhook, {:.1} wake-ups/webhook; {}",
            run.latencies.len() as f64 / run.elapsed.as_secs_f64(),
            run.latencies.len(),
            run.elapsed.as_secs_f64(),
            run.worker_cpu.as_secs_f64() * 1e6 / answered,
            run.worker_sleeps as f64 / answered,
            latency_summary(&run.latencies),
        ),
        reference: "no target: what waiting on one socket costs".to_owned(),
        verdict: Verdict::Info,
    }
}

fn ingest_row(workers: usize, ingest: &IngestOutcome) -> Row {
    let accepted = ingest.accepted().max(1) as f64;
    let per_webhook = |cpu: Duration| cpu.as_secs_f64() * 1e6 / accepted;
    let refused: u64 = ingest.answers_by_status.values().sum::<u64>() - ingest.accepted();
    // Ignored events cost a worker only HTTP, the signature and the
    // action: one worker alone takes them at a rate of its own.
    let alone = workers == 1 && ingest.kind == IngestKind::Ignored;
    let verdict = if workers == TARGET_FLEET {
        Verdict::target(ingest.per_second() >= INGEST_TARGET_PER_SECOND)
    } else if alone {
        Verdict::target(ingest.per_second() >= IGNORED_INGEST_PER_WORKER)
    } else {
        Verdict::Info
    };
    Row {
        figure: format!(
            "5. Ingest, {} ({} connections)",
            ingest.kind.label(),
            ingest.connections
        ),
        workers,
        measured: format!(
            "{:.0}/s ({} in {:.1} s; non-2xx {refused}, transport errors {}); workers' CPU {:.0} µs/webhook, bench process {:.0} µs/webhook; {}; per worker deliveries {}",
            ingest.per_second(),
            ingest.accepted(),
            ingest.elapsed.as_secs_f64(),
            ingest.transport_errors,
            per_webhook(ingest.worker_cpu),
            per_webhook(ingest.bench_cpu),
            latency_summary(&ingest.latencies),
            ingest
                .per_worker
                .iter()
                .map(|f| f.deliveries.to_string())
                .collect::<Vec<_>>()
                .join("/"),
        ),
        reference: if workers == TARGET_FLEET {
            format!("≥ {INGEST_TARGET_PER_SECOND:.0}/s with {TARGET_FLEET} workers")
        } else if alone {
            format!("≥ {IGNORED_INGEST_PER_WORKER:.0}/s per worker")
        } else {
            String::new()
        },
        verdict,
    }
}

fn memory_rows(run: &FleetRun) -> Vec<Row> {
    let idle_met = run
        .memory_idle
        .resident
        .iter()
        .all(|&rss| rss < IDLE_RSS_TARGET);
    let after_bursts: u64 = run.memory_after_bursts.resident.iter().sum();
    let fleet_verdict = if run.workers == TARGET_FLEET {
        Verdict::target(after_bursts < FLEET_RSS_TARGET)
    } else {
        Verdict::Info
    };
    let row = |figure: &str, memory: &Memory, reference: String, verdict| Row {
        figure: figure.to_owned(),
        workers: run.workers,
        measured: memory_summary(memory),
        reference,
        verdict,
    };
    vec![
        row(
            "6. RSS idle (after READY=1 + 1 s)",
            &run.memory_idle,
            format!("< {} MB per worker", IDLE_RSS_TARGET / 1_000_000),
            Verdict::target(idle_met),
        ),
        row(
            "6. RSS after burst 1",
            &run.memory_after_burst_one,
            String::new(),
            Verdict::Info,
        ),
        row(
            "6. RSS after bursts 1–3",
            &run.memory_after_bursts,
            if run.workers == TARGET_FLEET {
                format!(
                    "< {} MB RSS for the fleet of {TARGET_FLEET}",
                    FLEET_RSS_TARGET / 1_000_000
                )
            } else {
                String::new()
            },
            fleet_verdict,
        ),
        row(
            "6. RSS after ingest",
            &run.memory_after_ingest,
            String::new(),
            Verdict::Info,
        ),
    ]
}

/// RSS per worker and summed, and the PSS sum, which counts pages the
/// workers share (the binary's text, libc) once instead of once per worker.
fn memory_summary(memory: &Memory) -> String {
    let mb = |bytes: u64| format!("{:.1}", bytes as f64 / 1e6);
    format!(
        "RSS {} MB (fleet {} MB; fleet PSS {} MB)",
        memory
            .resident
            .iter()
            .map(|&b| mb(b))
            .collect::<Vec<_>>()
            .join(" / "),
        mb(memory.resident.iter().sum()),
        mb(memory.proportional.iter().sum()),
    )
}

fn startup_rows(run: &FleetRun) -> Vec<Row> {
    vec![
        startup_row(
            "7. Start-up, exec → READY=1, first start (empty state dir)",
            run.workers,
            &run.startup_first,
        ),
        stop_row(
            "   stop right after READY=1",
            run.workers,
            &run.stops_after_ready,
        ),
        startup_row(
            "7. Start-up, exec → READY=1, restart (state dir exists)",
            run.workers,
            &run.startup_restart,
        ),
        stop_row(
            "   stop after the scenarios",
            run.workers,
            &run.stops_at_end,
        ),
    ]
}

/// A worker that dies of SIGTERM without `STOPPING=1` skipped the shutdown
/// sequence (no drain). That is the bot's misbehaviour, reported but not
/// fatal: no check run is wrong because of it.
fn stop_row(figure: &str, workers: usize, stops: &[StopReport]) -> Row {
    let slowest = stops.iter().map(|s| s.took).max().unwrap_or_default();
    let all_clean = stops.iter().all(|s| s.clean && s.said_stopping);
    let outcomes = if all_clean {
        "all said STOPPING=1 and exited 0".to_owned()
    } else {
        stops
            .iter()
            .map(|s| {
                format!(
                    "w{}: {} (STOPPING=1 {})",
                    s.number,
                    s.exit,
                    if s.said_stopping { "sent" } else { "not sent" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    Row {
        figure: figure.to_owned(),
        workers,
        measured: format!(
            "SIGTERM → exit max {:.0} ms; {outcomes}",
            slowest.as_secs_f64() * 1e3
        ),
        reference: "STOPPING=1, then exit 0".to_owned(),
        verdict: if all_clean {
            Verdict::Passed
        } else {
            Verdict::BotIssue
        },
    }
}

fn startup_row(figure: &str, workers: usize, startup: &[Option<Duration>]) -> Row {
    let mut times: Vec<Duration> = startup.iter().flatten().copied().collect();
    times.sort_unstable();
    let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let max = times.last().copied();
    Row {
        figure: figure.to_owned(),
        workers,
        measured: format!(
            "min {:.1} / median {:.1} / max {:.1} ms",
            ms(times.first()),
            ms(times.get(times.len() / 2)),
            ms(max.as_ref())
        ),
        reference: format!("< {} ms", STARTUP_TARGET.as_millis()),
        verdict: Verdict::target(
            times.len() == workers && max.is_some_and(|max| max < STARTUP_TARGET),
        ),
    }
}

fn token_rows(run: &FleetRun) -> Vec<Row> {
    let describe = |name: &str, tokens: &BTreeMap<u64, usize>| {
        let total: usize = tokens.values().sum();
        let max = tokens.values().max().copied().unwrap_or(0);
        (
            format!(
                "{name}: {total} for {} inst. (max {max} per inst.)",
                tokens.len()
            ),
            max,
        )
    };
    let (one, max_one) = describe("burst 1", &run.burst_one.tokens);
    let (six, max_six) = describe("burst 2", &run.burst_six.tokens);
    let (real, max_real) = describe("burst 3", &run.realistic.tokens);
    let worst = max_one.max(max_six).max(max_real);
    vec![Row {
        figure: "8. Installation tokens requested".to_owned(),
        workers: run.workers,
        measured: format!("{one}; {six}; {real}"),
        reference: format!("≤ 1 per installation per worker (≤ {})", run.workers),
        verdict: Verdict::target(worst <= run.workers),
    }]
}

fn verification_rows(run: &FleetRun) -> Vec<Row> {
    let mut checks: Vec<(&str, &Verification)> = vec![
        ("burst 1", &run.burst_one.verification),
        ("burst 2", &run.burst_six.verification),
        ("burst 3", &run.realistic.verification),
    ];
    for ingest in &run.ingest {
        if let Some(verification) = &ingest.verification {
            checks.push(("ingest PR events", verification));
        }
    }
    let mut rows: Vec<Row> = checks
        .into_iter()
        .map(|(name, verification)| Row {
            figure: format!("Check runs, {name}"),
            workers: run.workers,
            measured: verification.summary(),
            reference: "name, head_sha, title, status; none missing or repeated".to_owned(),
            verdict: Verdict::check(verification.is_ok()),
        })
        .collect();
    for ingest in &run.ingest {
        rows.push(ingest_answers_row(run.workers, ingest));
    }
    rows.push(one_at_a_time_answers_row(run.workers, &run.one_at_a_time));
    let problems: usize = run
        .logged_problems
        .iter()
        .map(|(_, lines)| lines.len())
        .sum();
    let noise = &run.noise;
    let capacity = noise.wall.as_secs_f64() * noise.cores as f64;
    rows.push(Row {
        figure: "Noise: CPU used by other processes; stolen by the hypervisor".to_owned(),
        workers: run.workers,
        measured: format!(
            "{:.1} CPU-s over {:.0} s = {:.1}% of {} cores; stolen {:.2} CPU-s = {:.1}%",
            noise.others_cpu.as_secs_f64(),
            noise.wall.as_secs_f64(),
            100.0 * noise.others_cpu.as_secs_f64() / capacity,
            noise.cores,
            noise.stolen.as_secs_f64(),
            100.0 * noise.stolen.as_secs_f64() / capacity,
        ),
        reference: "0 on a quiet machine".to_owned(),
        verdict: Verdict::Info,
    });
    rows.push(Row {
        figure: "Worker log: WARN/ERROR lines".to_owned(),
        workers: run.workers,
        measured: problems.to_string(),
        reference: "0 expected".to_owned(),
        verdict: Verdict::Info,
    });
    rows
}

/// Every delivery sent one at a time must get its 200.
fn one_at_a_time_answers_row(workers: usize, run: &OneAtATimeOutcome) -> Row {
    Row {
        figure: "Ingest answers, one at a time".to_owned(),
        workers,
        measured: format!("{} of {} answered 2xx", run.latencies.len(), run.sent),
        reference: "200 \"ignored\"".to_owned(),
        verdict: Verdict::check(run.failures() == 0),
    }
}

/// Every ingest delivery must get the answer its kind calls for, with no
/// connection dropped.
fn ingest_answers_row(workers: usize, ingest: &IngestOutcome) -> Row {
    let (wanted, expected): (&[u16], &str) = match ingest.kind {
        IngestKind::Ignored => (&[200], "200 \"ignored\""),
        IngestKind::PullRequest => (&[202], "202 \"queued\""),
    };
    let all_as_expected = ingest
        .answers_by_status
        .keys()
        .all(|status| wanted.contains(status))
        && ingest.transport_errors == 0;
    Row {
        figure: format!("Ingest answers, {}", ingest.kind.label()),
        workers,
        measured: format!(
            "by status {:?}; transport errors {}",
            ingest.answers_by_status, ingest.transport_errors
        ),
        reference: expected.to_owned(),
        verdict: Verdict::check(all_as_expected),
    }
}

/// The table in Markdown.
pub fn markdown(rows: &[Row]) -> String {
    let mut table = String::from(
        "| Figure | Workers | Measured | Ideal / target | Verdict |\n|---|---:|---|---|---|\n",
    );
    for row in rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            row.figure,
            row.workers,
            row.measured.replace('|', "\\|"),
            row.reference,
            row.verdict.text()
        ));
    }
    table
}

/// Targets met and missed, one line each.
pub fn target_summary(rows: &[Row]) -> String {
    let list = |verdict| {
        rows.iter()
            .filter(|row| row.verdict == verdict)
            .map(|row| format!("{} ({} workers)", row.figure.trim(), row.workers))
            .collect::<Vec<_>>()
    };
    let (met, missed, failed, issues) = (
        list(Verdict::Met),
        list(Verdict::Missed),
        list(Verdict::Failed),
        list(Verdict::BotIssue),
    );
    let mut summary = format!("Targets met ({}): {}\n", met.len(), met.join("; "));
    summary.push_str(&format!(
        "Targets missed ({}): {}\n",
        missed.len(),
        missed.join("; ")
    ));
    if !issues.is_empty() {
        summary.push_str(&format!(
            "Bot issues (reported, not fatal): {}\n",
            issues.join("; ")
        ));
    }
    if failed.is_empty() {
        summary.push_str("Correctness checks: all passed\n");
    } else {
        summary.push_str(&format!(
            "Correctness checks FAILED: {}\n",
            failed.join("; ")
        ));
    }
    summary
}

pub fn any_failed(rows: &[Row]) -> bool {
    rows.iter().any(|row| row.verdict == Verdict::Failed)
}
