//! The fake GitHub's contents API: `GET /repos/{o}/{r}/contents/{path}`,
//! for per-repository settings files.
//!
//! What it models of GitHub:
//!
//! * files on the default branch, added with [`FakeGitHub::put_file`];
//!   a missing file, or a repository the installation cannot see (an owner
//!   without a `.github` repository), is `404`;
//! * the raw media type (`application/vnd.github.raw+json`): the file's
//!   text as the body; any other `Accept` gets the JSON object with
//!   base64 `content`;
//! * a strong `ETag` per file content, `If-None-Match` answered `304` with
//!   no body, and a `304` not charged against the primary rate limit;
//! * the App's permission ([`ContentsAccess`]): Contents read, Single file
//!   (a list of paths), or none, `403 Resource not accessible by
//!   integration` outside it. The default is Single file on
//!   `.github/task-list-completed.yml`, what the README asks for.
//!
//! A child module of `fake_github.rs` (its handler, state and verbs live
//! here; `fake_github.rs` holds only the wiring: the route, the model
//! field, the rate-limit exemption and the raw body).

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use http::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Call, Caller, FakeGitHub, RecordedRequest, Reply, RepoPath, Route, repo_key};

/// The settings path the default permission covers.
pub const SETTINGS_PATH: &str = ".github/task-list-completed.yml";

const RAW_MEDIA_TYPE: &str = "application/vnd.github.raw";
const DOCS: &str = "https://docs.github.com/rest/repos/contents#get-repository-content";

/// What an installation may read with the contents API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentsAccess {
    /// Repository permission "Contents: read".
    Read,
    /// Repository permission "Single file", on these paths.
    SingleFile(Vec<String>),
    /// Neither.
    None,
}

impl ContentsAccess {
    fn allows(&self, path: &str) -> bool {
        match self {
            ContentsAccess::Read => true,
            ContentsAccess::SingleFile(paths) => paths.iter().any(|p| p == path),
            ContentsAccess::None => false,
        }
    }
}

/// The contents model: files by (repository key, path), and permissions.
#[derive(Default)]
pub(super) struct Contents {
    files: BTreeMap<(String, String), StoredFile>,
    access: HashMap<u64, ContentsAccess>,
}

struct StoredFile {
    text: String,
    etag: String,
}

impl Contents {
    fn access(&self, installation_id: u64) -> ContentsAccess {
        self.access
            .get(&installation_id)
            .cloned()
            .unwrap_or_else(|| ContentsAccess::SingleFile(vec![SETTINGS_PATH.to_owned()]))
    }
}

impl FakeGitHub {
    /// Creates or replaces a file on the default branch of a repository
    /// (added with [`FakeGitHub::add_repo`]); its ETag changes with its text.
    pub fn put_file(&self, full_name: &str, path: &str, text: &str) {
        let digest = hex::encode(Sha256::digest(text.as_bytes()));
        let file = StoredFile {
            text: text.to_owned(),
            etag: format!("\"{}\"", &digest[..40]),
        };
        let mut model = self.shared.model();
        model.contents.files.insert(
            (repo_key(full_name), path.trim_matches('/').to_owned()),
            file,
        );
    }

    pub fn remove_file(&self, full_name: &str, path: &str) {
        let mut model = self.shared.model();
        model
            .contents
            .files
            .remove(&(repo_key(full_name), path.trim_matches('/').to_owned()));
    }

    /// The ETag GitHub would send for a file, if it exists.
    pub fn file_etag(&self, full_name: &str, path: &str) -> Option<String> {
        let model = self.shared.model();
        let key = (repo_key(full_name), path.trim_matches('/').to_owned());
        model.contents.files.get(&key).map(|f| f.etag.clone())
    }

    /// Sets what an installation may read with the contents API.
    pub fn set_contents_access(&self, installation_id: u64, access: ContentsAccess) {
        let mut model = self.shared.model();
        model.contents.access.insert(installation_id, access);
    }

    /// The contents requests received, in order.
    pub fn contents_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains("/contents/"))
            .collect()
    }
}

/// `GET /repos/{o}/{r}/contents/{path...}` as a route.
pub(super) fn route(repo: RepoPath, method: &str, rest: &[&str]) -> Option<Route> {
    match (method, rest) {
        ("GET", ["contents", path @ ..]) if !path.is_empty() => {
            Some(Route::GetContents(repo, path.join("/")))
        }
        _ => None,
    }
}

pub(super) fn docs() -> &'static str {
    DOCS
}

/// The stored ETag matches the request's `If-None-Match`: the answer will
/// be a 304, which GitHub does not count against the rate limit.
pub(super) fn not_modified(call: &Call<'_>, route: &Route) -> bool {
    let Route::GetContents(repo, path) = route else {
        return false;
    };
    let model = call.shared.model();
    let Some(repo) = repo.find(&model) else {
        return false;
    };
    let key = (repo_key(&repo.full_name()), path.clone());
    model
        .contents
        .files
        .get(&key)
        .is_some_and(|file| etag_matches(call, &file.etag))
}

fn etag_matches(call: &Call<'_>, etag: &str) -> bool {
    let Some(header) = call
        .headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    header
        .split(',')
        .any(|tag| tag.trim() == "*" || bare(tag) == bare(etag))
}

/// The handler. Repository visibility was checked by the caller (404).
pub(super) fn get(call: &Call<'_>, repo: &RepoPath, path: &str, caller: &Caller) -> Reply {
    let model = call.shared.model();
    if let Caller::Installation { id, .. } = caller {
        if !model.contents.access(*id).allows(path) {
            return Reply::error(
                StatusCode::FORBIDDEN,
                "Resource not accessible by integration",
                DOCS,
            );
        }
    }
    let Some(repo) = repo.find(&model) else {
        return Reply::not_found(DOCS);
    };
    let full_name = repo.full_name();
    let Some(file) = model
        .contents
        .files
        .get(&(repo_key(&full_name), path.to_owned()))
    else {
        return Reply::not_found(DOCS);
    };
    if etag_matches(call, &file.etag) {
        return Reply::json(StatusCode::NOT_MODIFIED, json!(null)).header("etag", &file.etag);
    }
    let raw = call
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("vnd.github.raw"));
    if raw {
        return Reply::json(StatusCode::OK, json!(file.text))
            .header("etag", &file.etag)
            .header("content-type", format!("{RAW_MEDIA_TYPE}; charset=utf-8"));
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let body = json!({
        "type": "file",
        "encoding": "base64",
        "size": file.text.len(),
        "name": name,
        "path": path,
        "content": base64::engine::general_purpose::STANDARD.encode(&file.text),
        "sha": file.etag.trim_matches('"'),
    });
    Reply::json(StatusCode::OK, body).header("etag", format!("W/{}", file.etag))
}

/// Whether a reply's body is raw text (the JSON string is written as is).
pub(super) fn is_raw(reply: &Reply) -> bool {
    reply.headers.iter().any(|(name, value)| {
        name == http::header::CONTENT_TYPE && value.starts_with(RAW_MEDIA_TYPE)
    })
}
