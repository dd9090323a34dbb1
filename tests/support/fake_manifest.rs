//! The GitHub App manifest flow of the fake GitHub: the registration form a
//! manifest is posted to, and the endpoint that turns the temporary code
//! into the new App's credentials.
//!
//! | request | what it does |
//! | --- | --- |
//! | `GET /settings/apps/new`, `GET /organizations/{org}/settings/apps/new` | the (blank) registration page |
//! | `POST` to the same paths, form field `manifest`, `state` in the query or the form | validates the manifest as GitHub does; on success `302` to its `redirect_url` with `?code=…&state=…`; on failure `422` naming each problem |
//! | `POST /app-manifests/{code}/conversions` (also under `/api/v3`, no auth) | `201` with the App (`id`, `slug`, `html_url`, `pem`, `webhook_secret`, `client_id`, `client_secret`, `owner`, `permissions`, `events`, …); a code works once and for an hour, then `404` |
//!
//! The App it creates has the fake's own App id and the test key pair
//! (`tests/data/test-app-key.pem`), so credentials obtained through the
//! flow work against the same fake.
//!
//! It is a child module of `fake_github.rs` and is wired into its
//! dispatcher by a single call to [`handle`].

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};

/// GitHub: "You must complete all three steps … within one hour."
pub const CODE_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest App name GitHub accepts.
pub const MAX_NAME_CHARS: usize = 34;
/// The private key of every App the fake creates.
pub const APP_PRIVATE_KEY: &str = include_str!("../data/test-app-key.pem");

const DOCS_CONVERSION: &str =
    "https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest";

/// Repository, organization and account permissions a manifest may ask for,
/// with the access levels each takes.
const PERMISSIONS: &[(&str, &[&str])] = &[
    ("actions", &["read", "write"]),
    ("administration", &["read", "write"]),
    ("checks", &["read", "write"]),
    ("contents", &["read", "write"]),
    ("deployments", &["read", "write"]),
    ("environments", &["read", "write"]),
    ("issues", &["read", "write"]),
    ("merge_queues", &["read", "write"]),
    ("metadata", &["read"]),
    ("packages", &["read", "write"]),
    ("pages", &["read", "write"]),
    ("pull_requests", &["read", "write"]),
    ("repository_hooks", &["read", "write"]),
    ("repository_projects", &["read", "write", "admin"]),
    ("secret_scanning_alerts", &["read", "write"]),
    ("secrets", &["read", "write"]),
    ("security_events", &["read", "write"]),
    ("single_file", &["read", "write"]),
    ("statuses", &["read", "write"]),
    ("vulnerability_alerts", &["read", "write"]),
    ("workflows", &["write"]),
    ("members", &["read", "write"]),
    ("organization_administration", &["read", "write"]),
    ("organization_hooks", &["read", "write"]),
    ("organization_projects", &["read", "write", "admin"]),
    ("email_addresses", &["read", "write"]),
];

/// Webhook events a manifest may subscribe to, each with the permissions
/// of which the App needs at least one (GitHub's webhook reference: "To
/// subscribe to this event, a GitHub App must have at least read-level
/// access for …"); an empty list needs none beyond metadata.
const EVENTS: &[(&str, &[&str])] = &[
    ("check_run", &["checks"]),
    ("check_suite", &["checks"]),
    ("commit_comment", &["contents"]),
    ("create", &["contents"]),
    ("delete", &["contents"]),
    ("deployment", &["deployments"]),
    ("deployment_status", &["deployments"]),
    ("issue_comment", &["issues"]),
    ("issues", &["issues"]),
    ("label", &["metadata"]),
    ("member", &["metadata"]),
    ("merge_group", &["merge_queues"]),
    ("public", &["metadata"]),
    ("pull_request", &["pull_requests"]),
    ("pull_request_review", &["pull_requests"]),
    ("pull_request_review_comment", &["pull_requests"]),
    ("pull_request_review_thread", &["pull_requests"]),
    ("push", &["contents"]),
    ("release", &["contents"]),
    ("repository", &["metadata"]),
    ("star", &["metadata"]),
    ("status", &["statuses"]),
    ("watch", &["metadata"]),
    ("workflow_run", &["actions"]),
];

/// State of the manifest flow: codes handed out and Apps created.
#[derive(Default)]
pub struct ManifestFlow {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Codes not yet exchanged.
    codes: HashMap<String, PendingApp>,
    /// Apps created by a conversion, in order.
    created: Vec<CreatedApp>,
    /// Names taken by a registration (GitHub refuses a second App of the
    /// same name).
    names: Vec<String>,
    /// Form posts received, accepted or not.
    form_posts: u64,
}

struct PendingApp {
    manifest: Value,
    owner: Owner,
    expires_at: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    User(String),
    Organization(String),
}

impl Owner {
    fn json(&self, host: &str) -> Value {
        let (login, kind) = match self {
            Owner::User(login) => (login, "User"),
            Owner::Organization(login) => (login, "Organization"),
        };
        json!({
            "login": login,
            "id": 1,
            "type": kind,
            "html_url": format!("http://{host}/{login}"),
            "site_admin": false,
        })
    }
}

/// An App the conversion endpoint created: what a test may check.
#[derive(Clone, Debug)]
pub struct CreatedApp {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub owner: Owner,
    pub manifest: Value,
    pub webhook_secret: String,
    pub client_secret: String,
    pub html_url: String,
}

impl ManifestFlow {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Apps created so far.
    pub fn created_apps(&self) -> Vec<CreatedApp> {
        self.lock().created.clone()
    }

    /// Codes handed out and not yet exchanged (expired ones included).
    pub fn outstanding_codes(&self) -> usize {
        self.lock().codes.len()
    }

    /// Form posts received so far, accepted or refused.
    pub fn form_posts(&self) -> u64 {
        self.lock().form_posts
    }

    /// Makes every outstanding code expire now, as an hour passing would.
    pub fn expire_codes(&self) {
        let now = Instant::now();
        for pending in self.lock().codes.values_mut() {
            pending.expires_at = now;
        }
    }
}

/// Serves the requests of the manifest flow; `None` for any other request,
/// which the caller then serves. `app_id` is the id the new App gets.
pub fn handle(
    flow: &ManifestFlow,
    app_id: u64,
    parts: &http::request::Parts,
    body: &[u8],
) -> Option<Response> {
    let (method, path, query) = (parts.method.as_str(), parts.uri.path(), parts.uri.query());
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    if let Some(owner) = registration_page_owner(path) {
        return Some(match method {
            "GET" => html(StatusCode::OK, &blank_form_page(&owner)),
            "POST" => register(flow, owner, query, body),
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        });
    }
    let api_path = path.strip_prefix("/api/v3").unwrap_or(path);
    let code = api_path
        .strip_prefix("/app-manifests/")?
        .strip_suffix("/conversions")?;
    if method != "POST" || code.is_empty() || code.contains('/') {
        return None;
    }
    Some(convert(flow, app_id, code, host))
}

fn registration_page_owner(path: &str) -> Option<Owner> {
    if path == "/settings/apps/new" {
        return Some(Owner::User("octocat".into()));
    }
    let org = path
        .strip_prefix("/organizations/")?
        .strip_suffix("/settings/apps/new")?;
    (!org.is_empty() && !org.contains('/')).then(|| Owner::Organization(org.to_owned()))
}

fn register(flow: &ManifestFlow, owner: Owner, query: Option<&str>, body: &[u8]) -> Response {
    flow.lock().form_posts += 1;
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let query: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| {
        query
            .iter()
            .chain(form.iter())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let Some(manifest_text) = field("manifest") else {
        // Without a manifest GitHub shows the blank registration form.
        return html(StatusCode::OK, &blank_form_page(&owner));
    };
    let state = field("state");
    let manifest: Value = match serde_json::from_str(&manifest_text) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => return refused(&["the manifest must be a JSON object".into()]),
        Err(error) => return refused(&[format!("the manifest is not valid JSON: {error}")]),
    };
    let mut problems = validate(&manifest);
    let name = manifest["name"].as_str().unwrap_or("").trim().to_owned();
    let mut inner = flow.lock();
    if inner
        .names
        .iter()
        .any(|taken| taken.eq_ignore_ascii_case(&name))
    {
        problems.push(format!("Name {name:?} is already taken"));
    }
    if !problems.is_empty() {
        drop(inner);
        return refused(&problems);
    }
    let redirect_url = manifest["redirect_url"].as_str().unwrap_or("").to_owned();
    let code = random_hex(20);
    inner.names.push(name);
    inner.codes.insert(
        code.clone(),
        PendingApp {
            manifest,
            owner,
            expires_at: Instant::now() + CODE_LIFETIME,
        },
    );
    drop(inner);
    let mut target = redirect_url;
    target.push(if target.contains('?') { '&' } else { '?' });
    let mut params = form_urlencoded::Serializer::new(String::new());
    params.append_pair("code", &code);
    if let Some(state) = state {
        params.append_pair("state", &state);
    }
    target.push_str(&params.finish());
    let mut response = html(
        StatusCode::FOUND,
        "<html><body>You are being redirected.</body></html>",
    );
    if let Ok(location) = HeaderValue::from_str(&target) {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    response
}

/// What GitHub checks before it creates an App from a manifest.
pub fn validate(manifest: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    match manifest.get("name") {
        Some(Value::String(name)) if name.trim().is_empty() => {
            problems.push("name can't be blank".into())
        }
        Some(Value::String(name)) if name.chars().count() > MAX_NAME_CHARS => problems.push(
            format!("name is too long (maximum is {MAX_NAME_CHARS} characters)"),
        ),
        Some(Value::String(_)) => {}
        // Without a name the person names the App on the form; the fake
        // has no one to ask.
        _ => problems.push("name can't be blank".into()),
    }
    match manifest.get("url") {
        Some(Value::String(url)) if is_web_url(url) => {}
        Some(_) => problems.push("url must be a full http(s) URL".into()),
        None => problems.push("url is required".into()),
    }
    if let Some(hook) = manifest.get("hook_attributes") {
        match hook.get("url") {
            Some(Value::String(url)) if is_web_url(url) => {}
            Some(_) => problems.push("hook_attributes.url must be a full http(s) URL".into()),
            None => problems.push("hook_attributes.url is required".into()),
        }
        if hook.get("active").is_some_and(|a| !a.is_boolean()) {
            problems.push("hook_attributes.active must be a boolean".into());
        }
    }
    for key in ["redirect_url", "setup_url"] {
        match manifest.get(key) {
            None => {}
            Some(Value::String(url)) if is_web_url(url) => {}
            Some(_) => problems.push(format!("{key} must be a full http(s) URL")),
        }
    }
    if manifest.get("redirect_url").is_none() {
        problems.push("redirect_url is required to hand the code back".into());
    }
    if let Some(urls) = manifest.get("callback_urls") {
        match urls.as_array() {
            Some(urls) if urls.len() <= 10 => {
                if !urls.iter().all(|u| u.as_str().is_some_and(is_web_url)) {
                    problems.push("callback_urls must be full http(s) URLs".into());
                }
            }
            _ => problems.push("callback_urls must be a list of at most 10 URLs".into()),
        }
    }
    for key in ["public", "request_oauth_on_install", "setup_on_update"] {
        if manifest.get(key).is_some_and(|v| !v.is_boolean()) {
            problems.push(format!("{key} must be a boolean"));
        }
    }
    let permissions = permissions(manifest, &mut problems);
    if permissions.contains_key("single_file") {
        let paths: Vec<String> = match (
            manifest.get("single_file_name"),
            manifest.get("single_file_paths"),
        ) {
            (Some(Value::String(path)), _) => vec![path.clone()],
            (_, Some(Value::Array(paths))) => paths
                .iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if paths.is_empty() || paths.len() > 10 {
            problems.push(
                "single_file permission needs single_file_name (or 1 to 10 single_file_paths)"
                    .into(),
            );
        }
        for path in &paths {
            if path.is_empty() || path.starts_with('/') || path.split('/').any(|p| p == "..") {
                problems.push(format!(
                    "single file path {path:?} is not a repository path"
                ));
            }
        }
    }
    match manifest.get("default_events") {
        None => {}
        Some(Value::Array(events)) => {
            for event in events {
                let Some(event) = event.as_str() else {
                    problems.push("default_events must be a list of event names".into());
                    continue;
                };
                match EVENTS.iter().find(|(name, _)| *name == event) {
                    None => problems.push(format!("Default events unsupported: {event}")),
                    Some((_, needs)) => {
                        let satisfied = needs
                            .iter()
                            .any(|need| *need == "metadata" || permissions.contains_key(*need));
                        if !satisfied {
                            problems.push(format!(
                                "Default events {event} requires the {} permission",
                                needs.join(" or ")
                            ));
                        }
                    }
                }
            }
        }
        Some(_) => problems.push("default_events must be a list".into()),
    }
    problems
}

fn permissions(manifest: &Value, problems: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut granted = BTreeMap::new();
    match manifest.get("default_permissions") {
        None => {}
        Some(Value::Object(map)) => {
            for (name, level) in map {
                let Some(level) = level.as_str() else {
                    problems.push(format!("permission {name} must be a string"));
                    continue;
                };
                match PERMISSIONS.iter().find(|(known, _)| known == name) {
                    None => problems.push(format!("Default permission unsupported: {name}")),
                    Some((_, levels)) if !levels.contains(&level) => problems.push(format!(
                        "Default permission {name} cannot be {level:?} (one of {})",
                        levels.join(", ")
                    )),
                    Some(_) => {
                        granted.insert(name.clone(), level.to_owned());
                    }
                }
            }
        }
        Some(_) => problems.push("default_permissions must be an object".into()),
    }
    granted
}

fn is_web_url(text: &str) -> bool {
    let Some(rest) = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !text.chars().any(char::is_whitespace)
}

fn convert(flow: &ManifestFlow, app_id: u64, code: &str, host: &str) -> Response {
    let mut inner = flow.lock();
    let Some(pending) = inner.codes.remove(code) else {
        return not_found();
    };
    if Instant::now() >= pending.expires_at {
        return not_found();
    }
    let manifest = pending.manifest;
    let name = manifest["name"].as_str().unwrap_or("").trim().to_owned();
    let slug = slug(&name);
    let html_url = format!("http://{host}/apps/{slug}");
    let app = CreatedApp {
        id: app_id,
        slug: slug.clone(),
        name: name.clone(),
        owner: pending.owner,
        webhook_secret: random_hex(20),
        client_secret: random_hex(20),
        html_url: html_url.clone(),
        manifest: manifest.clone(),
    };
    inner.created.push(app.clone());
    drop(inner);
    let mut events: Vec<Value> = manifest["default_events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    events.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    let mut permissions = manifest["default_permissions"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    permissions
        .entry("metadata")
        .or_insert_with(|| Value::from("read"));
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = json!({
        "id": app.id,
        "slug": slug,
        "node_id": format!("A_fake{}", app.id),
        "client_id": format!("Iv1.{}", &random_hex(8)),
        "owner": app.owner.json(host),
        "name": name,
        "description": manifest["description"].as_str().unwrap_or(""),
        "external_url": manifest["url"],
        "html_url": html_url,
        "created_at": now,
        "updated_at": now,
        "permissions": permissions,
        "events": events,
        "installations_count": 0,
        "client_secret": app.client_secret,
        "webhook_secret": app.webhook_secret,
        "pem": APP_PRIVATE_KEY,
    });
    json_response(StatusCode::CREATED, &body)
}

fn slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_owned()
}

fn refused(problems: &[String]) -> Response {
    let items: String = problems
        .iter()
        .map(|p| format!("<li>{}</li>", escape(p)))
        .collect();
    html(
        StatusCode::UNPROCESSABLE_ENTITY,
        &format!(
            "<html><body><h1>Invalid GitHub App configuration</h1><ul>{items}</ul></body></html>"
        ),
    )
}

fn blank_form_page(owner: &Owner) -> String {
    let who = match owner {
        Owner::User(login) | Owner::Organization(login) => login,
    };
    format!(
        "<html><body><h1>Register new GitHub App</h1><p>Owner: {}</p>\
         <form method=\"post\"><input name=\"name\"><button>Create GitHub App</button></form>\
         </body></html>",
        escape(who)
    )
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"message": "Not Found", "documentation_url": DOCS_CONVERSION, "status": "404"}),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    respond(status, "application/json; charset=utf-8", body.to_string())
}

fn html(status: StatusCode, body: &str) -> Response {
    respond(status, "text/html; charset=utf-8", body.to_owned())
}

fn text(status: StatusCode, body: &str) -> Response {
    respond(status, "text/plain; charset=utf-8", body.to_owned())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Hex digits from std's randomly seeded hasher (no `rand` dependency).
fn random_hex(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(out.len());
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out.truncate(bytes * 2);
    out
}
