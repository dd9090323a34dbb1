//! A running bot, wired to a [`FakeGitHub`], for scenario tests: it signs and
//! delivers webhooks over real HTTP and waits on the worker's progress
//! rather than sleeping.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use task_list_bot::config::{Config, CredentialFiles, Settings};
use task_list_bot::pending::PendingSet;
use task_list_bot::server::{self, Bot};
use task_list_bot::worker::Stats;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::fake_github::FakeGitHub;
use super::webhooks::{Webhook, sign};

pub const APP_ID: u64 = 1;
pub const SECRET: &str = "test webhook secret";
pub const PRIVATE_KEY: &str = include_str!("../data/test-app-key.pem");
pub const PUBLIC_KEY: &str = include_str!("../data/test-app-key.pub.pem");

/// How long any single wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Settings a test may change before the bot starts.
#[derive(Clone)]
pub struct Options {
    pub write_rate: f64,
    pub request_timeout: Duration,
    pub drain_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // Fast writes unless a test is about pacing.
            write_rate: 50.0,
            request_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// A bot serving on 127.0.0.1 and the fake GitHub it talks to.
pub struct TestBot {
    pub github: FakeGitHub,
    pub address: SocketAddr,
    pub stats: Arc<Stats>,
    pub pending: Arc<dyn PendingSet>,
    http: Client<HttpConnector, Full<Bytes>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<task_list_bot::Result<()>>>,
    next_delivery: std::sync::atomic::AtomicU64,
}

/// An answer to a delivery.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub took: Duration,
}

impl TestBot {
    pub async fn start() -> TestBot {
        TestBot::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> TestBot {
        let github = FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await;
        TestBot::start_against(github, options).await
    }

    pub fn config_for(github: &FakeGitHub, options: &Options) -> Config {
        let settings = Settings {
            app_id: Some(APP_ID.to_string()),
            private_key: Some(PRIVATE_KEY.into()),
            webhook_secret: Some(SECRET.into()),
            ghe_host: Some(github.host()),
            ghe_protocol: "http".into(),
            write_rate: options.write_rate.to_string(),
            request_timeout: options.request_timeout.as_secs_f64().to_string(),
            drain_timeout: options.drain_timeout.as_secs_f64().to_string(),
            worker: Some("test".into()),
            ..Settings::with_defaults()
        };
        Config::from_settings(&settings, &CredentialFiles::default())
            .expect("test settings are valid")
    }

    pub async fn start_against(github: FakeGitHub, options: Options) -> TestBot {
        let bot = Bot::new(TestBot::config_for(&github, &options)).expect("bot builds");
        TestBot::serve(github, bot).await
    }

    pub async fn serve(github: FakeGitHub, bot: Bot) -> TestBot {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stats = bot.stats();
        let pending = bot.pending_set();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server::run(listener, bot, async {
            let _ = stopped.await;
        }));
        TestBot {
            github,
            address,
            stats,
            pending,
            http: Client::builder(TokioExecutor::new()).build_http(),
            stop: Some(stop),
            server: Some(server),
            next_delivery: 1.into(),
        }
    }

    /// Delivers `payload` as GitHub would: signed, with its headers.
    pub async fn deliver(&self, event: &str, payload: &serde_json::Value) -> Answer {
        let body = serde_json::to_vec(payload).unwrap();
        let id = self
            .next_delivery
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let signature = sign(SECRET.as_bytes(), &body);
        self.post(
            &[
                ("content-type", "application/json"),
                ("x-github-event", event),
                ("x-github-delivery", &format!("delivery-{id}")),
                ("x-hub-signature-256", &signature),
            ],
            body,
        )
        .await
    }

    /// Delivers a webhook built from the fake's model, signed.
    pub async fn send(&self, webhook: &Webhook) -> Answer {
        let headers = webhook.headers(Some(SECRET.as_bytes()));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.post(&headers, webhook.body()).await
    }

    /// Posts raw bytes with exactly these headers to the webhook path.
    pub async fn post(&self, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
        let mut request = hyper::Request::post(format!("http://{}/", self.address));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let started = Instant::now();
        let response = self.http.request(request).await.expect("the bot answers");
        let took = started.elapsed();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            took,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Option<String>, String) {
        let request = hyper::Request::get(format!("http://{}{path}", self.address))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = self.http.request(request).await.expect("the bot answers");
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            location,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    pub fn pending_is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Waits until the worker has finished `count` claims in all.
    pub async fn processed(&self, count: u64) {
        tokio::time::timeout(PATIENCE, self.stats.finished_claims(count))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {count} claims finished in time",
                    self.stats.finished_claims_now()
                )
            });
    }

    /// Waits until the fake holds `count` check runs for `repo`.
    pub async fn check_runs_arrived(&self, repo: &str, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.github.check_runs(repo).len() < count {
            assert!(
                Instant::now() < deadline,
                "{} of {count} check runs arrived",
                self.github.check_runs(repo).len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Signals the bot to stop, as SIGTERM would, without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the bot as SIGTERM would and waits for it to finish draining.
    pub async fn shutdown(mut self) {
        self.begin_shutdown();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }
}

impl Drop for TestBot {
    fn drop(&mut self) {
        if let (Some(server), Some(_)) = (&self.server, &self.stop) {
            assert!(
                !server.is_finished() || std::thread::panicking(),
                "the bot stopped by itself during the test"
            );
        }
    }
}
