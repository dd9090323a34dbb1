//! The metrics endpoint, end to end: deliveries into the real handler, the
//! worker writing to the fake GitHub, then a scrape of the worker's own
//! `/metrics`, parsed, compared with the scrape before.
//!
//! The registry is the process's, so the tests of this file take turns
//! (`SERIAL`) and look only at how much each figure moved.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::bot::{Options, PATIENCE, TestBot};
use support::fake_github::{Endpoint, FakeGitHub, Fault, PullRequest};
use support::webhooks;
use task_list_bot::config::MetricsEndpoint;
use task_list_bot::github::{InstallationId, PullNumber, PullRequestRef, RepoName};
use task_list_bot::pending::WorkItem;
use task_list_bot::server::Bot;
use tokio::sync::Mutex;

const REPO: &str = "octo/metrics";
const INSTALLATION: u64 = 7;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// One sample of the exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
    /// Metric family names declared by `# TYPE` lines.
    families: BTreeSet<String>,
}

impl Scrape {
    /// Parses the text format (Prometheus 0.0.4 or OpenMetrics): comment
    /// lines, then `name{label="value",…} value` lines.
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        let mut families = BTreeSet::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(declaration) = line.strip_prefix("# TYPE ") {
                let name = declaration.split(' ').next().expect("a family name");
                families.insert(name.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line));
        }
        Scrape { samples, families }
    }

    /// The sum of the samples called `name` whose labels include `labels`
    /// (`le` compared as a number); 0 when there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |sample| {
            sample.name == name
                && labels.iter().all(|(key, wanted)| {
                    sample.labels.get(*key).is_some_and(|value| {
                        if *key == "le" {
                            value.parse::<f64>().ok() == wanted.parse::<f64>().ok()
                        } else {
                            value == wanted
                        }
                    })
                })
        })
    }

    /// The values label `key` takes in the samples called `name`.
    fn label_values(&self, name: &str, key: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(key).cloned())
            .collect()
    }

    fn series(&self, name: &str) -> usize {
        self.samples.iter().filter(|s| s.name == name).count()
    }
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect("a sample has a value");
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next().expect("labels end with }");
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().expect("a closing quote").1 {
                            '"' => break,
                            '\\' => match chars.next().expect("an escape").1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
    }
    let value = rest
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    Sample {
        name,
        labels,
        value: value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    }
}

/// GETs `http://address/metrics`; the status, content type and body.
async fn get_metrics(address: SocketAddr, accept: Option<&str>) -> (u16, String, String) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::get(format!("http://{address}/metrics"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("the metrics endpoint answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).expect("UTF-8"),
    )
}

/// A bot with metrics on 127.0.0.1, on a port the system picks.
struct MeteredBot {
    bot: TestBot,
    metrics: SocketAddr,
}

impl MeteredBot {
    async fn start(options: Options) -> MeteredBot {
        let github =
            FakeGitHub::start(support::bot::APP_ID, support::bot::PUBLIC_KEY.as_bytes()).await;
        let mut config = TestBot::config_for(&github, &options);
        config.metrics = Some(MetricsEndpoint {
            host: "127.0.0.1".into(),
            port: 0,
        });
        let bot = Bot::new(config).expect("bot builds");
        let metrics = bot.metrics_address().expect("metrics are on");
        MeteredBot {
            bot: TestBot::serve(github, bot).await,
            metrics,
        }
    }

    async fn scrape(&self) -> Scrape {
        let (status, _, body) = get_metrics(self.metrics, None).await;
        assert_eq!(status, 200, "{body}");
        let scrape = Scrape::parse(&body);
        for sample in &scrape.samples {
            assert!(
                sample.name.starts_with("task_list_bot_"),
                "{} lacks the prefix",
                sample.name
            );
            assert!(
                scrape
                    .families
                    .iter()
                    .any(|family| sample.name.starts_with(family.as_str())),
                "{} has no # TYPE",
                sample.name
            );
        }
        scrape
    }
}

fn with_pull(github: &FakeGitHub, repo: &str, number: u64, body: &str) {
    github.add_repo(INSTALLATION, repo);
    github.upsert_pull(repo, PullRequest::new(number).body(body).author("alice"));
}

const WRITTEN: &[(&str, &str)] = &[("result", "written")];
const LAG: &str = "task_list_bot_delivery_to_check_seconds_count";
const LAG_BUCKET: &str = "task_list_bot_delivery_to_check_seconds_bucket";
const REQUESTS: &str = "task_list_bot_github_requests_total";
const DELIVERIES: &str = "task_list_bot_deliveries_total";
const CHECK_RUNS: &str = "task_list_bot_check_runs_total";

#[tokio::test]
async fn a_delivery_and_its_check_move_the_counters_and_histograms() {
    let _serial = SERIAL.lock().await;
    let metered = MeteredBot::start(Options::default()).await;
    let bot = &metered.bot;
    with_pull(&bot.github, REPO, 1, "- [x] one\n- [ ] two");
    let before = metered.scrape().await;

    let answer = bot
        .send(&webhooks::pull_request_opened(&bot.github, REPO, 1))
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    bot.check_runs_arrived(REPO, 1).await;
    bot.processed(1).await;
    let after = metered.scrape().await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };

    let queued = [("event", "pull_request"), ("outcome", "queued")];
    assert_eq!(moved(DELIVERIES, &queued), 1.0);
    assert_eq!(
        moved("task_list_bot_acknowledgement_duration_seconds_count", &[]),
        1.0
    );
    assert_eq!(moved(CHECK_RUNS, WRITTEN), 1.0);
    assert_eq!(
        moved(
            "task_list_bot_check_runs_written_by_installation_total",
            &[("installation", "7")]
        ),
        1.0
    );
    assert_eq!(moved(LAG, &[]), 1.0);
    assert_eq!(
        moved(LAG_BUCKET, &[("le", "+Inf")]),
        1.0,
        "every observation is in the +Inf bucket"
    );
    assert_eq!(
        moved(
            REQUESTS,
            &[
                ("route", "POST /repos/{owner}/{repo}/check-runs"),
                ("status", "201")
            ]
        ),
        1.0
    );
    assert!(
        moved(
            REQUESTS,
            &[
                ("route", "GET /repos/{owner}/{repo}/pulls/{number}"),
                ("status", "200")
            ]
        ) >= 1.0
    );
    assert_eq!(
        after.value(REQUESTS, &[("route", "other")]),
        0.0,
        "every request the bot makes has a template"
    );
    let dashboard = include_str!("../packaging/grafana-dashboard.json");
    let mut shown = 0;
    for (at, _) in dashboard.match_indices("task_list_bot_") {
        let name: String = dashboard[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            after.families.iter().any(|f| name.starts_with(f.as_str())),
            "the dashboard shows {name}, which the bot does not export"
        );
        shown += 1;
    }
    assert!(shown >= 10, "the dashboard shows {shown} metrics");
    assert!(
        after.value(
            "task_list_bot_worker_info",
            &[("worker", "test"), ("version", env!("CARGO_PKG_VERSION"))]
        ) == 1.0
    );
    metered.bot.shutdown().await;
}

#[tokio::test]
async fn unchanged_duplicate_ignored_and_rejected_deliveries_count_by_outcome() {
    let _serial = SERIAL.lock().await;
    let metered = MeteredBot::start(Options::default()).await;
    let bot = &metered.bot;
    with_pull(&bot.github, REPO, 2, "- [ ] one");
    bot.send(&webhooks::pull_request_opened(&bot.github, REPO, 2))
        .await;
    bot.processed(1).await;
    let before = metered.scrape().await;

    // The same state again: the check already says so.
    let reopened = webhooks::pull_request_reopened(&bot.github, REPO, 2);
    assert_eq!(bot.send(&reopened).await.status, 202);
    bot.processed(2).await;
    // The same delivery id again ("Redeliver"): recorded again and
    // recomputed, since the pull request is no longer pending.
    assert_eq!(bot.send(&reopened).await.status, 202);
    bot.processed(3).await;
    // An event the bot does not act on.
    let star = bot
        .deliver("star", &serde_json::json!({"action": "created"}))
        .await;
    assert_eq!(star.status, 200, "{}", star.body);
    // A forged signature.
    let forged = bot
        .post(
            &[
                ("content-type", "application/json"),
                ("x-github-event", "pull_request"),
                ("x-github-delivery", "forged-1"),
                ("x-hub-signature-256", "sha256=00"),
            ],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(forged.status, 401);

    let after = metered.scrape().await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(moved(CHECK_RUNS, &[("result", "unchanged")]), 2.0);
    assert_eq!(moved(CHECK_RUNS, WRITTEN), 0.0);
    assert_eq!(moved(LAG, &[]), 0.0, "no write, no lag");
    assert_eq!(
        moved(
            DELIVERIES,
            &[("event", "pull_request"), ("outcome", "queued")]
        ),
        2.0
    );
    assert_eq!(
        moved(
            DELIVERIES,
            &[("event", "pull_request"), ("outcome", "duplicate")]
        ),
        0.0
    );
    assert_eq!(
        moved(DELIVERIES, &[("event", "other"), ("outcome", "ignored")]),
        1.0,
        "star is no event of the bot's"
    );
    assert_eq!(
        moved(
            DELIVERIES,
            &[
                ("event", "pull_request"),
                ("outcome", "rejected"),
                ("reason", "bad_signature")
            ]
        ),
        1.0
    );
    assert_eq!(
        moved("task_list_bot_acknowledgement_duration_seconds_count", &[]),
        4.0
    );
    metered.bot.shutdown().await;
}

#[tokio::test]
async fn a_rate_limit_answer_counts_a_pause_a_retry_and_the_longer_lag() {
    let _serial = SERIAL.lock().await;
    let metered = MeteredBot::start(Options::default()).await;
    let bot = &metered.bot;
    with_pull(&bot.github, REPO, 3, "- [ ] one");
    bot.github.inject(
        Endpoint::CreateCheckRun,
        Fault::SecondaryRateLimit {
            retry_after_secs: 1,
        },
        1,
    );
    let before = metered.scrape().await;

    bot.send(&webhooks::pull_request_opened(&bot.github, REPO, 3))
        .await;
    bot.check_runs_arrived(REPO, 1).await;
    bot.processed(2).await;
    let after = metered.scrape().await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };

    assert_eq!(moved("task_list_bot_rate_limit_pauses_total", &[]), 1.0);
    assert_eq!(
        moved("task_list_bot_rate_limit_paused_seconds_total", &[]),
        1.0
    );
    assert_eq!(
        moved(
            CHECK_RUNS,
            &[("result", "retried"), ("cause", "rate_limited")]
        ),
        1.0
    );
    assert_eq!(moved(CHECK_RUNS, WRITTEN), 1.0);
    assert_eq!(
        moved(
            REQUESTS,
            &[
                ("route", "POST /repos/{owner}/{repo}/check-runs"),
                ("status", "403")
            ]
        ),
        1.0
    );
    assert_eq!(moved(LAG, &[]), 1.0);
    assert_eq!(
        moved(LAG_BUCKET, &[("le", "1.0")]),
        0.0,
        "the check waited out the pause: over a second after the delivery"
    );
    assert_eq!(moved(LAG_BUCKET, &[("le", "10.0")]), 1.0);
    metered.bot.shutdown().await;
}

#[tokio::test]
async fn pending_items_and_the_oldest_age_come_from_the_store() {
    let _serial = SERIAL.lock().await;
    let metered = MeteredBot::start(Options {
        drain_timeout: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    let bot = &metered.bot;
    // Held back by a pause, so that the items stay pending.
    let installation = InstallationId(INSTALLATION);
    bot.pending
        .pause(installation, SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    for number in [10, 11] {
        let item = WorkItem::PullRequest(PullRequestRef {
            installation,
            repo: RepoName(REPO.into()),
            number: PullNumber(number),
        });
        bot.pending.add(item, &format!("held-{number}")).unwrap();
    }
    let first = metered.scrape().await;
    assert_eq!(first.value("task_list_bot_pending_items", &[]), 2.0);

    let deadline = Instant::now() + PATIENCE;
    let first_age = first.value("task_list_bot_oldest_pending_age_seconds", &[]);
    loop {
        let age = metered
            .scrape()
            .await
            .value("task_list_bot_oldest_pending_age_seconds", &[]);
        if age >= first_age + 0.05 {
            break;
        }
        assert!(Instant::now() < deadline, "the age stays at {age}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    metered.bot.shutdown().await;
}

#[tokio::test]
async fn arbitrary_event_names_and_repositories_do_not_grow_the_series() {
    let _serial = SERIAL.lock().await;
    let metered = MeteredBot::start(Options::default()).await;
    let bot = &metered.bot;
    let counter = AtomicU64::new(0);
    let before = metered.scrape().await;

    for i in 0..30 {
        let event = format!("made-up-event-{i}-{}", "x".repeat(i));
        bot.deliver(&event, &serde_json::json!({"action": "created"}))
            .await;
        let id = format!("junk-{}", counter.fetch_add(1, Ordering::Relaxed));
        bot.post(
            &[
                ("content-type", "application/json"),
                ("x-github-event", &event),
                ("x-github-delivery", &id),
                ("x-hub-signature-256", "sha256=00"),
            ],
            b"{}".to_vec(),
        )
        .await;
    }
    for i in 0..10 {
        // Paths a sender made up: the router answers 404 and counts nothing.
        let (status, _, _) = bot.get(&format!("/made-up/path-{i}")).await;
        assert_eq!(status, 404);
    }
    let repos: Vec<String> = (0..5).map(|i| format!("someone/repo-{i}")).collect();
    for (i, repo) in repos.iter().enumerate() {
        let number = 100 + i as u64;
        with_pull(&bot.github, repo, number, "- [ ] task");
        bot.send(&webhooks::pull_request_opened(&bot.github, repo, number))
            .await;
    }
    bot.processed(repos.len() as u64).await;
    let after = metered.scrape().await;

    let events = after.label_values(DELIVERIES, "event");
    for event in &events {
        assert!(
            !event.starts_with("made-up"),
            "a sender's event name became a label: {event}"
        );
    }
    assert!(events.contains("other"));
    for sample in &after.samples {
        for value in sample.labels.values() {
            assert!(
                !value.contains("made-up") && !value.contains("someone/"),
                "a sender's text became a label value: {sample:?}"
            );
        }
    }
    assert!(
        after.series(DELIVERIES) <= before.series(DELIVERIES) + 3,
        "{} delivery series after 60 odd deliveries (from {})",
        after.series(DELIVERIES),
        before.series(DELIVERIES)
    );
    for route in after.label_values(REQUESTS, "route") {
        assert!(
            repos.iter().all(|repo| !route.contains(repo.as_str()))
                && !route.chars().any(|c| c.is_ascii_digit()),
            "a raw path became a label: {route}"
        );
    }
    assert!(after.label_values(REQUESTS, "route").len() <= 14);
    metered.bot.shutdown().await;
}

#[tokio::test]
async fn metrics_are_served_only_where_configured() {
    let _serial = SERIAL.lock().await;
    // Off unless asked for, and never on the webhook port.
    let plain = TestBot::start().await;
    let (status, _, _) = plain.get("/metrics").await;
    assert_eq!(status, 404, "the webhook port serves no metrics");
    plain.shutdown().await;
    let off = Bot::new(TestBot::config_for(
        &FakeGitHub::start(support::bot::APP_ID, support::bot::PUBLIC_KEY.as_bytes()).await,
        &Options::default(),
    ))
    .unwrap();
    assert_eq!(off.metrics_address(), None);

    // On: loopback, in both formats.
    let metered = MeteredBot::start(Options::default()).await;
    assert!(metered.metrics.ip().is_loopback(), "{}", metered.metrics);
    let (status, content_type, body) = get_metrics(
        metered.metrics,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let (_, content_type, body) = get_metrics(metered.metrics, None).await;
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    assert!(!body.contains("# EOF"));

    // A port already taken stops start-up with a clear error.
    let github = FakeGitHub::start(support::bot::APP_ID, support::bot::PUBLIC_KEY.as_bytes()).await;
    let mut config = TestBot::config_for(&github, &Options::default());
    config.metrics = Some(MetricsEndpoint {
        host: "127.0.0.1".into(),
        port: metered.metrics.port(),
    });
    let error = Bot::new(config).err().expect("the port is taken");
    assert!(format!("{error:#}").contains("METRICS_PORT"), "{error:#}");
    metered.bot.shutdown().await;
}
