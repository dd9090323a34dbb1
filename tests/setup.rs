//! `task-list-bot setup` against the fake GitHub's manifest flow, driven as
//! a browser would: the page, the form post to GitHub, GitHub's redirect
//! back. Once through the library, once through the command line.

mod support;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use support::bot::{APP_ID, PATIENCE, PRIVATE_KEY, PUBLIC_KEY};
use support::fake_github::FakeGitHub;
use support::fake_github::manifest::validate;
use task_list_bot::config::{Config, CredentialFiles, Settings};
use task_list_bot::setup::{
    AppDescription, CredentialsExist, Destination, GitHubTarget, Options, Registered, SetupServer,
};
use tokio::task::JoinHandle;

const BINARY: &str = env!("CARGO_BIN_EXE_task-list-bot");
const PACKAGED_SETTINGS: &str = include_str!("../packaging/task-list-bot.default");
const WEBHOOK_URL: &str = "https://bot.example.org/hooks";

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "tlb-setup-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An HTTP answer: status, `Location`, body.
struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

/// A plain HTTP client that, like a browser, follows nothing on its own.
struct Browser {
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn get(&self, url: &str) -> Answer {
        self.get_as(url, None).await
    }

    async fn get_as(&self, url: &str, host: Option<&str>) -> Answer {
        let mut request = hyper::Request::get(url);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        self.send(request.body(Full::new(Bytes::new())).unwrap())
            .await
    }

    async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = hyper::Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.send(request).await
    }

    async fn send(&self, request: hyper::Request<Full<Bytes>>) -> Answer {
        let response = tokio::time::timeout(PATIENCE, self.http.request(request))
            .await
            .expect("an answer in time")
            .expect("the server answers");
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            location,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// The form on the setup page: where it posts and the manifest it posts.
struct Form {
    action: String,
    manifest: String,
}

impl Form {
    fn parse(page: &str) -> Form {
        Form {
            action: unescape(attribute(page, "action=\"")),
            manifest: unescape(attribute(
                page,
                "name=\"manifest\" id=\"manifest\" value=\"",
            )),
        }
    }

    fn manifest_json(&self) -> Value {
        serde_json::from_str(&self.manifest).expect("the manifest is JSON")
    }

    /// Posts the form as the browser would; the fake answers with GitHub's
    /// redirect to the setup page.
    async fn submit(&self, browser: &Browser) -> String {
        let answer = browser
            .post_form(&self.action, &[("manifest", &self.manifest)])
            .await;
        assert_eq!(answer.status, 302, "{}", answer.body);
        answer.location.expect("a redirect")
    }
}

fn attribute<'a>(page: &'a str, prefix: &str) -> &'a str {
    let start = page
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} in {page}"))
        + prefix.len();
    let end = start + page[start..].find('"').unwrap();
    &page[start..end]
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

async fn fake() -> FakeGitHub {
    FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await
}

fn system_destination(dir: &TempDir) -> Destination {
    Destination::System {
        settings_file: dir.path().join("default-task-list-bot"),
        credentials_dir: dir.path().join("etc-task-list-bot"),
    }
}

fn options(github: &FakeGitHub, destination: Destination) -> Options {
    Options {
        app: AppDescription {
            name: "task-list-bot".into(),
            webhook_url: WEBHOOK_URL.into(),
            homepage_url: "https://bot.example.org/".into(),
            public: false,
            push_events: false,
        },
        github: GitHubTarget::enterprise(&format!("http://{}", github.host())),
        org: None,
        destination,
        force: false,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        request_timeout: Duration::from_secs(5),
    }
}

/// A setup page serving in the background.
struct Running {
    page_url: String,
    base: String,
    token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<task_list_bot::Result<Option<Registered>>>,
}

impl Running {
    async fn start(options: Options) -> Running {
        let server = SetupServer::bind(options).await.expect("setup binds");
        let page_url = server.page_url();
        let base = format!("http://{}", server.address());
        let token = page_url.rsplit_once("token=").unwrap().1.to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Running {
            page_url,
            base,
            token,
            stop: Some(stop),
            task,
        }
    }

    /// Waits for `run` to return after a registration.
    async fn finished(self) -> Option<Registered> {
        let Running { task, stop, .. } = self;
        let result = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("setup ends after the registration")
            .unwrap()
            .expect("setup succeeds");
        drop(stop);
        result
    }

    /// Stops the page and returns what `run` returned.
    async fn stop(mut self) -> Option<Registered> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("setup stops")
            .unwrap()
            .expect("setup stops cleanly")
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Settings of a bot reading the files `setup` wrote, as the units do.
fn config_from_system_files(dir: &TempDir) -> Config {
    let settings_text = std::fs::read_to_string(dir.path().join("default-task-list-bot")).unwrap();
    let app_id = settings_text
        .lines()
        .find_map(|l| l.strip_prefix("APP_ID="))
        .expect("APP_ID is set")
        .to_owned();
    let settings = Settings {
        app_id: Some(app_id),
        ..Settings::with_defaults()
    };
    let credentials = TempDir::new("credentials");
    // LoadCredential=private-key:/etc/task-list-bot/private-key.pem
    let etc = dir.path().join("etc-task-list-bot");
    std::fs::copy(
        etc.join("private-key.pem"),
        credentials.path().join("private-key"),
    )
    .unwrap();
    std::fs::copy(
        etc.join("webhook-secret"),
        credentials.path().join("webhook-secret"),
    )
    .unwrap();
    Config::from_settings(
        &settings,
        &CredentialFiles {
            directory: Some(credentials.path().to_owned()),
        },
    )
    .expect("the written credentials are valid settings")
}

/// The whole flow: the page, the form to GitHub, GitHub's redirect back;
/// the key, the secret and APP_ID land where the package expects them.
#[tokio::test]
async fn registering_through_the_page_writes_the_system_files() {
    let github = fake().await;
    let dir = TempDir::new("system");
    let settings_file = dir.path().join("default-task-list-bot");
    std::fs::write(&settings_file, PACKAGED_SETTINGS).unwrap();
    std::fs::set_permissions(&settings_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let running = Running::start(options(&github, system_destination(&dir))).await;
    let browser = Browser::new();

    let page = browser.get(&running.page_url).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Register GitHub App"), "{}", page.body);
    let form = Form::parse(&page.body);
    assert_eq!(
        form.action,
        format!(
            "http://{}/settings/apps/new?state={}",
            github.host(),
            running.token
        )
    );
    let manifest = form.manifest_json();
    assert_eq!(manifest["hook_attributes"]["url"], WEBHOOK_URL);
    assert_eq!(
        manifest["redirect_url"],
        format!("{}/redirect", running.base)
    );
    assert_eq!(manifest["default_permissions"]["checks"], "write");
    assert_eq!(manifest["default_permissions"]["pull_requests"], "read");
    assert_eq!(manifest["default_permissions"]["issues"], "read");
    assert_eq!(manifest["default_permissions"]["metadata"], "read");
    assert_eq!(manifest["default_permissions"]["single_file"], "read");
    assert_eq!(
        manifest["single_file_name"],
        ".github/task-list-completed.yml"
    );
    let mut events: Vec<&str> = manifest["default_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            "issue_comment",
            "merge_group",
            "pull_request",
            "pull_request_review",
            "pull_request_review_comment"
        ]
    );

    let redirect = form.submit(&browser).await;
    assert!(redirect.starts_with(&format!("{}/redirect?code=", running.base)));
    assert!(redirect.ends_with(&format!("&state={}", running.token)));
    let done = browser.get(&redirect).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("task-list-bot is registered"),
        "{}",
        done.body
    );
    let created = github.manifests().created_apps();
    assert_eq!(created.len(), 1);
    let app = &created[0];
    let install_url = format!("{}/installations/new", app.html_url);
    assert!(done.body.contains(&install_url), "{}", done.body);
    assert!(done.body.contains("systemctl enable --now bot.target"));
    assert!(
        !done.body.contains(&app.webhook_secret),
        "no secret on the page"
    );
    assert!(!done.body.contains("PRIVATE KEY"), "no key on the page");

    let registered = running.finished().await.expect("an App is registered");
    assert_eq!(registered.app_id, APP_ID);
    assert_eq!(registered.install_url, install_url);

    let etc = dir.path().join("etc-task-list-bot");
    let key = etc.join("private-key.pem");
    let secret = etc.join("webhook-secret");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), PRIVATE_KEY);
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        format!("{}\n", app.webhook_secret)
    );
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(mode(&etc), 0o700);
    // Only the commented APP_ID line changed; everything else is kept.
    let edited = std::fs::read_to_string(&settings_file).unwrap();
    assert_eq!(
        edited,
        PACKAGED_SETTINGS.replacen("#APP_ID=\n", &format!("APP_ID={APP_ID}\n"), 1)
    );
    assert_eq!(mode(&settings_file), 0o644);
    let config = config_from_system_files(&dir);
    assert_eq!(config.app.as_ref().unwrap().app_id, APP_ID);
}

/// `--org` registers the App on the organisation's form.
#[tokio::test]
async fn an_organisation_gets_its_own_registration_form() {
    let github = fake().await;
    let dir = TempDir::new("org");
    let mut options = options(&github, system_destination(&dir));
    options.org = Some("acme".into());
    let running = Running::start(options).await;
    let browser = Browser::new();
    let form = Form::parse(&browser.get(&running.page_url).await.body);
    assert!(
        form.action.starts_with(&format!(
            "http://{}/organizations/acme/settings/apps/new?state=",
            github.host()
        )),
        "{}",
        form.action
    );
    let redirect = form.submit(&browser).await;
    assert_eq!(browser.get(&redirect).await.status, 200);
    running.finished().await.expect("registered");
    assert_eq!(
        github.manifests().created_apps()[0].owner,
        support::fake_github::manifest::Owner::Organization("acme".into())
    );
}

/// Without the token, with another one, or under a name other than
/// localhost, the page shows nothing and GitHub's redirect is not honoured.
#[tokio::test]
async fn a_missing_or_wrong_token_is_refused() {
    let github = fake().await;
    let dir = TempDir::new("token");
    let running = Running::start(options(&github, system_destination(&dir))).await;
    let browser = Browser::new();

    for url in [
        format!("{}/", running.base),
        format!("{}/?token=", running.base),
        format!("{}/?token={}", running.base, "0".repeat(64)),
        format!("{}/?token={}x", running.base, running.token),
    ] {
        let answer = browser.get(&url).await;
        assert_eq!(answer.status, 403, "{url}");
        assert!(!answer.body.contains("manifest"), "{url}: {}", answer.body);
    }
    let rebound = browser
        .get_as(&running.page_url, Some("attacker.example:80"))
        .await;
    assert_eq!(rebound.status, 421);

    let form = Form::parse(&browser.get(&running.page_url).await.body);
    let redirect = form.submit(&browser).await;
    let code = redirect
        .split_once("code=")
        .unwrap()
        .1
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    for url in [
        format!("{}/redirect?code={code}", running.base),
        format!("{}/redirect?code={code}&state=wrong", running.base),
    ] {
        assert_eq!(browser.get(&url).await.status, 403, "{url}");
    }
    // The code was not spent, and nothing was written.
    assert_eq!(github.manifests().outstanding_codes(), 1);
    assert!(!dir.path().join("etc-task-list-bot").exists());
    assert!(!dir.path().join("default-task-list-bot").exists());
    assert!(running.stop().await.is_none());
}

/// A code works once and for an hour: a spent or expired one gets an
/// error page, nothing is written, and the page can start again.
#[tokio::test]
async fn a_used_or_expired_code_is_refused_and_the_page_can_start_again() {
    let github = fake().await;
    let dir = TempDir::new("code");
    let mut options = options(&github, system_destination(&dir));
    let browser = Browser::new();
    options.app.name = "first".into();
    let running = Running::start(options).await;

    // Someone else exchanged this code first.
    let form = Form::parse(&browser.get(&running.page_url).await.body);
    let redirect = form.submit(&browser).await;
    let code = redirect
        .split_once("code=")
        .unwrap()
        .1
        .split('&')
        .next()
        .unwrap();
    let stolen = browser
        .post_form(
            &format!("{}/app-manifests/{code}/conversions", github.base_url()),
            &[],
        )
        .await;
    assert_eq!(stolen.status, 201);
    let refused = browser.get(&redirect).await;
    assert_eq!(refused.status, 502);
    assert!(refused.body.contains("used already"), "{}", refused.body);
    assert!(refused.body.contains("Start again"), "{}", refused.body);
    assert!(!dir.path().join("etc-task-list-bot").exists());

    // An hour passes between GitHub's redirect and the exchange.
    let mut manifest = form.manifest_json();
    manifest["name"] = "second".into();
    let second = Form {
        action: form.action.clone(),
        manifest: manifest.to_string(),
    };
    let redirect = second.submit(&browser).await;
    github.manifests().expire_codes();
    let refused = browser.get(&redirect).await;
    assert_eq!(refused.status, 502);
    assert!(!dir.path().join("etc-task-list-bot").exists());

    // A fresh registration still goes through.
    manifest["name"] = "third".into();
    let third = Form {
        action: form.action.clone(),
        manifest: manifest.to_string(),
    };
    let redirect = third.submit(&browser).await;
    assert_eq!(browser.get(&redirect).await.status, 200);
    let registered = running.finished().await.expect("registered");
    assert_eq!(registered.name, "third");
    assert!(
        dir.path()
            .join("etc-task-list-bot/private-key.pem")
            .exists()
    );
}

/// Existing credentials are never replaced unasked; `--force` replaces them.
#[tokio::test]
async fn existing_credentials_are_refused_without_force() {
    let github = fake().await;
    let dir = TempDir::new("existing");
    let etc = dir.path().join("etc-task-list-bot");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("private-key.pem"), "old key\n").unwrap();

    let error = SetupServer::bind(options(&github, system_destination(&dir)))
        .await
        .err()
        .expect("refused");
    let exists = error.downcast_ref::<CredentialsExist>().expect("named");
    assert!(exists.0[0].ends_with("private-key.pem"), "{exists:?}");
    assert!(error.to_string().contains("--force"));
    assert_eq!(
        std::fs::read_to_string(etc.join("private-key.pem")).unwrap(),
        "old key\n"
    );

    std::fs::remove_file(etc.join("private-key.pem")).unwrap();
    std::fs::write(
        dir.path().join("default-task-list-bot"),
        "# settings\nAPP_ID=99\n",
    )
    .unwrap();
    let error = SetupServer::bind(options(&github, system_destination(&dir)))
        .await
        .err()
        .expect("refused: APP_ID is set");
    assert!(error.to_string().contains("APP_ID in"), "{error}");

    let env_file = dir.path().join(".env");
    std::fs::write(&env_file, "WEBHOOK_SECRET=old\n").unwrap();
    let error = SetupServer::bind(options(
        &github,
        Destination::Dev {
            env_file: env_file.clone(),
        },
    ))
    .await
    .err()
    .expect("refused: .env has a secret");
    assert!(error.to_string().contains("WEBHOOK_SECRET in"), "{error}");

    let mut forced = options(&github, system_destination(&dir));
    forced.force = true;
    let running = Running::start(forced).await;
    let browser = Browser::new();
    let form = Form::parse(&browser.get(&running.page_url).await.body);
    let redirect = form.submit(&browser).await;
    assert_eq!(browser.get(&redirect).await.status, 200);
    running.finished().await.expect("registered");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("default-task-list-bot")).unwrap(),
        format!("# settings\nAPP_ID={APP_ID}\n")
    );
    assert_eq!(
        std::fs::read_to_string(etc.join("private-key.pem")).unwrap(),
        PRIVATE_KEY
    );
}

/// The fake refuses what GitHub refuses, so a wrong manifest fails here first.
#[tokio::test]
async fn the_registration_form_refuses_an_invalid_manifest() {
    let github = fake().await;
    let browser = Browser::new();
    let form = format!("http://{}/settings/apps/new?state=s", github.host());
    let cases = [
        ("not json", "not valid JSON"),
        (
            r#"{"name":"x","redirect_url":"http://localhost/r"}"#,
            "url is required",
        ),
        (
            r#"{"name":"x","url":"https://e.org","redirect_url":"http://localhost/r","default_events":["pull_request"]}"#,
            "requires the pull_requests permission",
        ),
        (
            r#"{"name":"x","url":"https://e.org","redirect_url":"http://localhost/r","default_permissions":{"single_file":"read"}}"#,
            "single_file_name",
        ),
        (
            r#"{"name":"x","url":"https://e.org","redirect_url":"http://localhost/r","default_permissions":{"checks":"admin"}}"#,
            "cannot be",
        ),
    ];
    for (manifest, expected) in cases {
        let answer = browser.post_form(&form, &[("manifest", manifest)]).await;
        assert_eq!(answer.status, 422, "{manifest}");
        assert!(
            answer.body.contains(expected),
            "{manifest}: {}",
            answer.body
        );
    }
    assert_eq!(github.manifests().outstanding_codes(), 0);
}

/// `task-list-bot setup --dev` in a directory: the flow through the
/// command line, ending with Probot's variables in `.env` (0600) and the
/// install link on the terminal, and no secret printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_writes_a_dev_env_file() {
    let github = fake().await;
    let dir = TempDir::new("cli");
    std::fs::write(dir.path().join(".env"), "LOG_LEVEL=debug\n").unwrap();
    let mut child = Command::new(BINARY)
        .args([
            "setup",
            "--dev",
            "--webhook-url",
            WEBHOOK_URL,
            "--github-url",
            &format!("http://{}", github.host()),
        ])
        .current_dir(dir.path())
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    let page_url = loop {
        let line = tokio::time::timeout(PATIENCE, lines.recv())
            .await
            .expect("setup prints its page")
            .expect("setup prints before it ends");
        printed.push(line.clone());
        if let Some(url) = line.trim().strip_prefix("http://") {
            break format!("http://{url}");
        }
    };
    let browser = Browser::new();
    let form = Form::parse(&browser.get(&page_url).await.body);
    let redirect = form.submit(&browser).await;
    assert_eq!(browser.get(&redirect).await.status, 200);

    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    while let Ok(line) = lines.try_recv() {
        printed.push(line);
    }
    // The reader thread may still be handing over the last lines.
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(2), lines.recv()).await {
        printed.push(line);
    }
    let printed = printed.join("\n");
    let stderr = String::from_utf8_lossy(&status.stderr).into_owned();
    assert!(status.status.success(), "{printed}\n{stderr}");
    let app = &github.manifests().created_apps()[0];
    assert!(
        printed.contains(&format!(
            "Install it on your repositories: {}/installations/new",
            app.html_url
        )),
        "{printed}"
    );
    assert!(printed.contains("task-list-bot serve"), "{printed}");
    for secret in [&app.webhook_secret, &app.client_secret] {
        assert!(!printed.contains(secret.as_str()) && !stderr.contains(secret.as_str()));
    }
    assert!(!printed.contains("PRIVATE KEY") && !stderr.contains("PRIVATE KEY"));

    let env_file = dir.path().join(".env");
    assert_eq!(mode(&env_file), 0o600);
    let vars: Vec<(String, String)> = dotenvy::from_path_iter(&env_file)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let var = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} in .env"))
    };
    assert_eq!(var("LOG_LEVEL"), "debug", "other lines are kept");
    assert_eq!(var("APP_ID"), APP_ID.to_string());
    assert_eq!(var("WEBHOOK_SECRET"), app.webhook_secret);
    assert_eq!(var("GITHUB_CLIENT_SECRET"), app.client_secret);
    assert!(var("GITHUB_CLIENT_ID").starts_with("Iv1."));
    assert_eq!(var("PRIVATE_KEY").trim_end(), PRIVATE_KEY.trim_end());
    let settings = Settings {
        app_id: Some(var("APP_ID")),
        private_key: Some(var("PRIVATE_KEY").into()),
        webhook_secret: Some(var("WEBHOOK_SECRET").into()),
        ..Settings::with_defaults()
    };
    Config::from_settings(&settings, &CredentialFiles::default())
        .expect("the bot starts with this .env");
}

/// The command line refuses to replace a development `.env`'s credentials.
#[test]
fn the_command_line_refuses_existing_credentials() {
    let dir = TempDir::new("cli-existing");
    std::fs::write(dir.path().join(".env"), "APP_ID=12\n").unwrap();
    let output = Command::new(BINARY)
        .args(["setup", "--dev", "--webhook-url", WEBHOOK_URL])
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("APP_ID in") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".env")).unwrap(),
        "APP_ID=12\n"
    );
}

/// The man page, generated from the command line, lists both commands.
#[test]
fn the_man_page_lists_setup_and_receive() {
    let output = Command::new(BINARY).arg("man").output().unwrap();
    assert!(output.status.success());
    let page = String::from_utf8_lossy(&output.stdout);
    assert!(page.contains(".SS setup"), "{page}");
    assert!(page.contains(".SS receive"), "{page}");
}

/// GitHub refuses a manifest that asks for `push` without Contents: the
/// default manifest asks for neither, `--push-events` for both.
#[test]
fn push_events_come_with_the_contents_permission() {
    let mut app = AppDescription {
        name: "task-list-bot".into(),
        webhook_url: WEBHOOK_URL.into(),
        homepage_url: "https://bot.example.org/".into(),
        public: false,
        push_events: false,
    };
    let redirect = "http://localhost:4000/redirect";
    let plain = task_list_bot::setup::manifest(&app, redirect);
    assert_eq!(validate(&plain), Vec::<String>::new());
    app.push_events = true;
    let with_push = task_list_bot::setup::manifest(&app, redirect);
    assert_eq!(validate(&with_push), Vec::<String>::new());
    assert_eq!(with_push["default_permissions"]["single_file"], "read");

    let mut push_alone = plain.clone();
    push_alone["default_events"]
        .as_array_mut()
        .unwrap()
        .push("push".into());
    assert!(
        validate(&push_alone)
            .iter()
            .any(|problem| problem.contains("push requires the contents permission")),
        "{:?}",
        validate(&push_alone)
    );
}
