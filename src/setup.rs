//! `task-list-bot setup`: registers the GitHub App from a manifest, as
//! Probot's setup page does, and stores its credentials.
//!
//! A page served on localhost (its URL carries a one-time token, printed on
//! the terminal) holds a form whose button posts the App's manifest to
//! GitHub. GitHub creates the App and sends the browser back with a
//! temporary code and the token as `state`; the page exchanges the code for
//! the App's id, private key and webhook secret
//! (`POST /app-manifests/{code}/conversions`), writes them (see
//! [`Destination`]) and the command ends. Secrets are never printed, logged
//! or shown on a page.

mod conversion;
mod files;
mod manifest;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{Mutex, watch};

pub use files::{CredentialsExist, Destination};
pub use manifest::{AppDescription, EVENTS, PERMISSIONS, SETTINGS_FILE, manifest};

/// GitHub: every step of the manifest flow must be done within one hour.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

const PAGE: &str = include_str!("setup/page.html");

/// Where GitHub is: its web pages (the registration form) and its API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubTarget {
    /// `https://github.com`, or a GitHub Enterprise Server's address.
    pub web_url: String,
    /// `https://api.github.com`, or `{web_url}/api/v3`.
    pub api_url: String,
}

impl GitHubTarget {
    pub fn github_com() -> GitHubTarget {
        GitHubTarget {
            web_url: "https://github.com".into(),
            api_url: "https://api.github.com".into(),
        }
    }

    /// A server laid out as GitHub Enterprise Server is: pages at `base`,
    /// the API under `{base}/api/v3`.
    pub fn enterprise(base: &str) -> GitHubTarget {
        let base = base.trim_end_matches('/');
        GitHubTarget {
            web_url: base.to_owned(),
            api_url: format!("{base}/api/v3"),
        }
    }

    fn display_name(&self) -> String {
        self.web_url
            .split_once("://")
            .map_or(self.web_url.as_str(), |(_, host)| host)
            .to_owned()
    }
}

/// Everything `setup` needs to know.
#[derive(Debug, Clone)]
pub struct Options {
    pub app: AppDescription,
    pub github: GitHubTarget,
    /// Register the App on this organisation instead of the signed-in user.
    pub org: Option<String>,
    pub destination: Destination,
    /// Replace existing credentials.
    pub force: bool,
    /// Where the page listens; a loopback address.
    pub listen: SocketAddr,
    /// How long the exchange of the code may take.
    pub request_timeout: Duration,
}

/// The App GitHub created, and where its credentials went.
#[derive(Debug, Clone)]
pub struct Registered {
    pub app_id: u64,
    pub name: String,
    pub slug: String,
    pub html_url: String,
    /// Where the owner installs the App on repositories.
    pub install_url: String,
    pub written: Vec<PathBuf>,
}

/// The setup page, bound and ready to serve.
pub struct SetupServer {
    listener: tokio::net::TcpListener,
    page: Arc<Page>,
    registered: watch::Receiver<Option<Registered>>,
}

/// What the page's handlers share.
struct Page {
    options: Options,
    token: String,
    /// Held while a code is exchanged and written, so that two redirects
    /// never write at once; `Some` once an App is registered.
    outcome: Mutex<Option<Registered>>,
    registered: watch::Sender<Option<Registered>>,
}

impl SetupServer {
    /// Checks that no credentials would be overwritten (unless
    /// `options.force`) and binds the page's listener.
    pub async fn bind(options: Options) -> crate::Result<SetupServer> {
        if !options.listen.ip().is_loopback() {
            anyhow::bail!(
                "the setup page listens on loopback only, not {}",
                options.listen
            );
        }
        if let Some(org) = &options.org {
            if org.is_empty() || !org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                anyhow::bail!("{org:?} is not an organisation name");
            }
        }
        manifest::origin(&options.app.webhook_url).with_context(|| {
            format!(
                "the webhook URL {:?} is not a full http(s) URL",
                options.app.webhook_url
            )
        })?;
        files::check_not_configured(&options.destination, options.force)?;
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("listening on {}", options.listen))?;
        let (registered_tx, registered) = watch::channel(None);
        Ok(SetupServer {
            listener,
            page: Arc::new(Page {
                options,
                token: one_time_token()?,
                outcome: Mutex::new(None),
                registered: registered_tx,
            }),
            registered,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The page's address with its one-time token: for the terminal only.
    pub fn page_url(&self) -> String {
        format!("http://{}/?token={}", self.address(), self.page.token)
    }

    /// Serves the page until an App is registered (`Some`) or `stop`
    /// completes (`None`).
    pub async fn run(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> crate::Result<Option<Registered>> {
        let router = Router::new()
            .route("/", get(show_page))
            .route("/redirect", get(redirected))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
            .with_state(Arc::clone(&self.page));
        let mut registered = self.registered.clone();
        let finished = async move {
            tokio::select! {
                _ = registered.wait_for(Option::is_some) => {}
                _ = stop => {}
            }
        };
        axum::serve(self.listener, router)
            .with_graceful_shutdown(finished)
            .await
            .context("serving the setup page")?;
        Ok(self.registered.borrow().clone())
    }
}

#[derive(serde::Deserialize)]
struct PageQuery {
    token: Option<String>,
}

#[derive(serde::Deserialize)]
struct RedirectQuery {
    code: Option<String>,
    state: Option<String>,
}

/// `GET /?token=…`: the page with the Register button.
async fn show_page(
    State(page): State<Arc<Page>>,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Response {
    let Some(host) = local_host(&headers) else {
        return misdirected();
    };
    if !page.token_matches(query.token.as_deref()) {
        return refuse_token();
    }
    if let Some(registered) = page.outcome.lock().await.as_ref() {
        return html(StatusCode::OK, &page.success_body(registered));
    }
    let options = &page.options;
    let redirect_url = format!("http://{host}/redirect");
    let manifest = manifest::manifest(&options.app, &redirect_url);
    let owner_path = match &options.org {
        Some(org) => format!("/organizations/{org}/settings/apps/new"),
        None => "/settings/apps/new".to_owned(),
    };
    let action = format!(
        "{}{owner_path}?state={}",
        options.github.web_url, page.token
    );
    let owner = match &options.org {
        Some(org) => format!("the organisation <b>{}</b>", escape(org)),
        None => "your account".to_owned(),
    };
    let permissions: String = PERMISSIONS
        .iter()
        .map(|(name, level)| format!("<code>{name}: {level}</code> "))
        .collect();
    let events: String = EVENTS
        .iter()
        .map(|event| format!("<code>{event}</code> "))
        .collect();
    let body = format!(
        r#"<h1>Register {name}</h1>
      <p>This registers a new GitHub App on {owner} at {github}:</p>
      <ul>
        <li>webhook URL <code>{webhook}</code></li>
        <li>permissions {permissions}(the single file: <code>{single_file}</code>)</li>
        <li>events {events}</li>
      </ul>
      <form action="{action}" method="post">
        <input type="hidden" name="manifest" id="manifest" value="{manifest}">
        <button type="submit" id="register">Register GitHub App</button>
      </form>
      <p class="muted">GitHub asks you to confirm, then sends you back to this page,
      which stores the App's credentials in {destination}.</p>"#,
        name = escape(&options.app.name),
        github = escape(&options.github.display_name()),
        webhook = escape(&options.app.webhook_url),
        single_file = SETTINGS_FILE,
        action = escape(&action),
        manifest = escape(&manifest.to_string()),
        destination = escape(&destination_text(&options.destination)),
    );
    html(StatusCode::OK, &body)
}

/// `GET /redirect?code=…&state=…`: GitHub sends the browser back here.
async fn redirected(
    State(page): State<Arc<Page>>,
    headers: HeaderMap,
    Query(query): Query<RedirectQuery>,
) -> Response {
    if local_host(&headers).is_none() {
        return misdirected();
    }
    if !page.token_matches(query.state.as_deref()) {
        return refuse_token();
    }
    let Some(code) = query.code.filter(|c| !c.is_empty()) else {
        return page.error_page(StatusCode::BAD_REQUEST, "GitHub sent no code back.");
    };
    let mut outcome = page.outcome.lock().await;
    if let Some(registered) = outcome.as_ref() {
        return html(StatusCode::OK, &page.success_body(registered));
    }
    match page.register(&code).await {
        Ok(registered) => {
            let body = page.success_body(&registered);
            *outcome = Some(registered.clone());
            page.registered.send_replace(Some(registered));
            html(StatusCode::OK, &body)
        }
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "app registration failed");
            page.error_page(StatusCode::BAD_GATEWAY, &format!("{error:#}"))
        }
    }
}

impl Page {
    fn token_matches(&self, given: Option<&str>) -> bool {
        let Some(given) = given else { return false };
        let (given, expected) = (given.as_bytes(), self.token.as_bytes());
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }

    async fn register(&self, code: &str) -> crate::Result<Registered> {
        let options = &self.options;
        // Credentials may have appeared since the page was served.
        files::check_not_configured(&options.destination, options.force)?;
        let app =
            conversion::exchange(&options.github.api_url, code, options.request_timeout).await?;
        let written = files::write(&options.destination, &app.credentials)?;
        let install_url = format!("{}/installations/new", app.html_url.trim_end_matches('/'));
        tracing::info!(app_id = app.credentials.app_id, slug = %app.slug, "app registered");
        Ok(Registered {
            app_id: app.credentials.app_id,
            name: app.name,
            slug: app.slug,
            html_url: app.html_url,
            install_url,
            written,
        })
    }

    fn success_body(&self, registered: &Registered) -> String {
        let written: String = registered
            .written
            .iter()
            .map(|p| format!("<li><code>{}</code></li>", escape(&p.display().to_string())))
            .collect();
        format!(
            r#"<h1 id="registered">{name} is registered</h1>
      <p>App ID <b id="app-id">{id}</b>. Its credentials are stored in:</p>
      <ul>{written}</ul>
      <p><a id="install" href="{install}">Install it on your repositories</a>, then {next}.</p>
      <p class="muted">You can close this page; <code>task-list-bot setup</code> has finished.</p>"#,
            name = escape(&registered.name),
            id = registered.app_id,
            install = escape(&registered.install_url),
            next = next_step_html(&self.options.destination),
        )
    }

    fn error_page(&self, status: StatusCode, message: &str) -> Response {
        let body = format!(
            r#"<h1>The App is not registered yet</h1>
      <p id="error">{}</p>
      <p><a href="/?token={}">Start again</a></p>"#,
            escape(message),
            self.token
        );
        html(status, &body)
    }
}

/// The `Host` the browser used, when it names this machine's loopback:
/// a page reached under another name (DNS rebinding) is refused.
fn local_host(headers: &HeaderMap) -> Option<String> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(name, "localhost" | "127.0.0.1" | "[::1]").then(|| host.to_owned())
}

fn misdirected() -> Response {
    (
        StatusCode::MISDIRECTED_REQUEST,
        "open the setup page as localhost or 127.0.0.1\n",
    )
        .into_response()
}

fn refuse_token() -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(
            PAGE.replace(
                "{{BODY}}",
                "<h1>Wrong or missing token</h1>\
             <p>Open the link <code>task-list-bot setup</code> printed, token included.</p>",
            )
            .replace("{{NAME}}", "the GitHub App"),
        ),
    )
        .into_response()
}

fn html(status: StatusCode, body: &str) -> Response {
    let page = PAGE
        .replace("{{NAME}}", "the GitHub App")
        .replace("{{BODY}}", body);
    (
        status,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Html(page),
    )
        .into_response()
}

fn destination_text(destination: &Destination) -> String {
    match destination {
        Destination::System {
            settings_file,
            credentials_dir,
        } => format!(
            "{} (private key, webhook secret) and {} (APP_ID)",
            credentials_dir.display(),
            settings_file.display()
        ),
        Destination::Dev { env_file } => format!("{}", env_file.display()),
    }
}

fn next_step_html(destination: &Destination) -> &'static str {
    match destination {
        Destination::System { .. } => {
            "start the fleet: <code>systemctl enable --now bot.target</code>"
        }
        Destination::Dev { .. } => {
            "start the bot from the same directory: <code>task-list-bot serve</code>"
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// 32 random bytes, hex: the token that ties GitHub's redirect to this run.
fn one_time_token() -> crate::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the page's token")?;
    Ok(hex::encode(bytes))
}

/// `task-list-bot setup`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SetupArgs {
    /// The URL GitHub will post deliveries to (the bot's public address and WEBHOOK_PATH).
    #[arg(long)]
    pub webhook_url: String,
    /// The App's name on GitHub (at most 34 characters, unique on GitHub).
    #[arg(long, default_value = "task-list-bot")]
    pub name: String,
    /// The App's homepage; the webhook URL's origin by default.
    #[arg(long)]
    pub homepage_url: Option<String>,
    /// Let other accounts install the App too (it is private to its owner by default).
    #[arg(long)]
    pub public: bool,
    /// Also ask for Contents: read and the push event, so that a changed settings file applies at once rather than within 5 minutes (GitHub sends push only with Contents).
    #[arg(long)]
    pub push_events: bool,
    /// Register the App on this organisation rather than on your account.
    #[arg(long)]
    pub org: Option<String>,
    /// GitHub Enterprise Server host (`host[:port]`).
    #[arg(long, env = "GHE_HOST")]
    pub ghe_host: Option<String>,
    /// Protocol for --ghe-host: https or http.
    #[arg(long, env = "GHE_PROTOCOL", default_value = "https")]
    pub ghe_protocol: String,
    /// A GitHub laid out as GitHub Enterprise Server is, by URL (tests).
    #[arg(long, hide = true)]
    pub github_url: Option<String>,
    /// Write APP_ID, PRIVATE_KEY, WEBHOOK_SECRET and the rest to ./.env instead of the system files.
    #[arg(long)]
    pub dev: bool,
    /// Replace existing credentials.
    #[arg(long)]
    pub force: bool,
    /// Port of the setup page on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The settings file that gets APP_ID.
    #[arg(long, default_value = files::SETTINGS_FILE)]
    pub settings_file: PathBuf,
    /// The directory that gets private-key.pem and webhook-secret.
    #[arg(long, default_value = files::CREDENTIALS_DIR)]
    pub credentials_dir: PathBuf,
    /// Seconds to wait for the registration before giving up.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT.as_secs())]
    pub timeout: u64,
}

impl SetupArgs {
    /// The options these arguments ask for.
    pub fn options(&self) -> crate::Result<Options> {
        let github = match (&self.github_url, &self.ghe_host) {
            (Some(url), _) => {
                manifest::origin(url)
                    .with_context(|| format!("--github-url {url:?} is not an http(s) URL"))?;
                GitHubTarget::enterprise(url)
            }
            (None, Some(host)) if !host.trim().is_empty() => {
                let protocol = self.ghe_protocol.trim();
                if protocol != "https" && protocol != "http" {
                    anyhow::bail!("GHE_PROTOCOL {protocol:?} must be https or http");
                }
                GitHubTarget::enterprise(&format!("{protocol}://{}", host.trim()))
            }
            _ => GitHubTarget::github_com(),
        };
        let homepage_url = match &self.homepage_url {
            Some(url) => url.clone(),
            None => manifest::origin(&self.webhook_url).with_context(|| {
                format!(
                    "--webhook-url {:?} is not a full http(s) URL",
                    self.webhook_url
                )
            })?,
        };
        let destination = if self.dev {
            let directory = std::env::current_dir().context("finding the working directory")?;
            Destination::Dev {
                env_file: directory.join(".env"),
            }
        } else {
            Destination::System {
                settings_file: self.settings_file.clone(),
                credentials_dir: self.credentials_dir.clone(),
            }
        };
        Ok(Options {
            app: AppDescription {
                name: self.name.clone(),
                webhook_url: self.webhook_url.clone(),
                homepage_url,
                public: self.public,
                push_events: self.push_events,
            },
            github,
            org: self.org.clone(),
            destination,
            force: self.force,
            listen: SocketAddr::from(([127, 0, 0, 1], self.port)),
            request_timeout: Duration::from_secs(30),
        })
    }
}

/// Runs `task-list-bot setup` to its end: the exit code to return.
pub fn command(args: SetupArgs) -> ExitCode {
    let options = match args.options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("task-list-bot setup: {error:#}");
            return ExitCode::from(2);
        }
    };
    if options.destination == Destination::system() && unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "task-list-bot setup: writing {} and {} needs root: run it with sudo (or use --dev for a development .env)",
            files::CREDENTIALS_DIR,
            files::SETTINGS_FILE
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("task-list-bot setup: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(command_async(options, Duration::from_secs(args.timeout)))
}

async fn command_async(options: Options, timeout: Duration) -> ExitCode {
    let destination = options.destination.clone();
    let github = options.github.display_name();
    let owner = options.org.as_ref().map_or_else(
        || "your account".to_owned(),
        |org| format!("the organisation {org}"),
    );
    let name = options.app.name.clone();
    let webhook_url = options.app.webhook_url.clone();
    let server = match SetupServer::bind(options).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("task-list-bot setup: {error:#}");
            return ExitCode::from(2);
        }
    };
    let port = server.address().port();
    println!(
        "Open this page in a browser on this machine (from elsewhere: ssh -L {port}:127.0.0.1:{port} to it):"
    );
    println!();
    println!("    {}", server.page_url());
    println!();
    println!(
        "It registers the GitHub App \"{name}\" on {owner} at {github}, webhook URL {webhook_url}."
    );
    println!(
        "Waiting for GitHub (Ctrl-C to stop; gives up after {} minutes).",
        timeout.as_secs().div_ceil(60)
    );
    let (why_tx, why_rx) = tokio::sync::oneshot::channel();
    let stop = async move {
        let why = tokio::select! {
            _ = tokio::signal::ctrl_c() => "stopped",
            _ = tokio::time::sleep(timeout) => "timed out",
        };
        let _ = why_tx.send(why);
    };
    match server.run(stop).await {
        Ok(Some(registered)) => {
            print_registered(&registered, &destination);
            ExitCode::SUCCESS
        }
        Ok(None) => {
            let why = why_rx.await.unwrap_or("stopped");
            eprintln!("task-list-bot setup: {why}: no App was registered");
            if why == "stopped" {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("task-list-bot setup: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_registered(registered: &Registered, destination: &Destination) {
    println!();
    println!(
        "Registered the GitHub App \"{}\" (App ID {}).",
        registered.name, registered.app_id
    );
    for path in &registered.written {
        println!("Wrote {}", path.display());
    }
    println!();
    println!(
        "Install it on your repositories: {}",
        registered.install_url
    );
    match destination {
        Destination::System { .. } => {
            println!("Then start the fleet:            systemctl enable --now bot.target")
        }
        Destination::Dev { .. } => {
            println!("Then run the bot from this directory: task-list-bot serve")
        }
    }
}
