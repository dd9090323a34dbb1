//! The contents API: `GET /repos/{o}/{r}/contents/{path}`, for
//! per-repository settings files.
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
//!   no body, and a `304` not charged against the primary rate limit (as
//!   GitHub documents for conditional requests);
//! * the App's permission: `contents` (any file), or `single_file` on the
//!   paths set with [`FakeGitHub::set_contents_access`] (by default
//!   `.github/task-list-completed.yml`), or neither: `403 Resource not
//!   accessible by integration`.

use super::*;

use base64::Engine as _;

/// The settings path the single-file permission covers unless a test says
/// otherwise.
pub const SETTINGS_PATH: &str = ".github/task-list-completed.yml";

const RAW_MEDIA_TYPE: &str = "application/vnd.github.raw";
pub(super) const DOCS_CONTENTS: &str =
    "https://docs.github.com/rest/repos/contents#get-repository-content";

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

/// The contents model: files by (repository key, path), and the paths of
/// each installation's single-file permission.
#[derive(Default)]
pub(super) struct Contents {
    files: BTreeMap<(String, String), StoredFile>,
    single_file_paths: HashMap<u64, Vec<String>>,
}

struct StoredFile {
    text: String,
    etag: String,
}

impl Model {
    /// Whether an installation may read `path` with the contents API.
    fn may_read_contents(&self, installation_id: u64, path: &str) -> bool {
        let granted = self.installation_permissions(installation_id);
        let holds = |name: &str| {
            granted
                .get(name)
                .is_some_and(|level| matches!(level.as_str(), "read" | "write" | "admin"))
        };
        if holds("contents") {
            return true;
        }
        holds("single_file")
            && self
                .contents
                .single_file_paths
                .get(&installation_id)
                .map_or(path == SETTINGS_PATH, |paths| {
                    paths.iter().any(|p| p == path)
                })
    }

    fn stored_file(&self, repo: &RepoPath, path: &str) -> Option<&StoredFile> {
        let repo = repo.find(self)?;
        let key = (repo_key(&repo.full_name()), path.to_owned());
        self.contents.files.get(&key)
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
        self.shared.model().contents.files.insert(
            (repo_key(full_name), path.trim_matches('/').to_owned()),
            file,
        );
    }

    pub fn remove_file(&self, full_name: &str, path: &str) {
        self.shared
            .model()
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

    /// Sets what an installation may read with the contents API (by
    /// default: `contents: read`, as [`FakeGitHub::grant_permission`]
    /// shows).
    pub fn set_contents_access(&self, installation_id: u64, access: ContentsAccess) {
        let mut model = self.shared.model();
        let permissions = model.installation_permissions_mut(installation_id);
        permissions.remove("contents");
        permissions.remove("single_file");
        match &access {
            ContentsAccess::Read => {
                permissions.insert("contents".into(), "read".into());
            }
            ContentsAccess::SingleFile(_) => {
                permissions.insert("single_file".into(), "read".into());
            }
            ContentsAccess::None => {}
        }
        if let ContentsAccess::SingleFile(paths) = access {
            model
                .contents
                .single_file_paths
                .insert(installation_id, paths);
        }
    }

    /// The contents requests received, in order.
    pub fn contents_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains("/contents/"))
            .collect()
    }
}

/// The stored ETag matches the request's `If-None-Match`: the answer will
/// be a 304, which GitHub does not count against the rate limit.
pub(super) fn not_modified(call: &Call<'_>, route: &Route) -> bool {
    let Route::GetContents(repo, path) = route else {
        return false;
    };
    let model = call.shared.model();
    model
        .stored_file(repo, path)
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

/// The handler. Repository visibility was checked by the route (404).
pub(super) fn get_contents(call: &Call<'_>, repo: &RepoPath, path: &str, caller: &Caller) -> Reply {
    let model = call.shared.model();
    if let Caller::Installation { id, .. } = caller {
        if !model.may_read_contents(*id, path) {
            return Reply::error(
                StatusCode::FORBIDDEN,
                MSG_NOT_ACCESSIBLE_BY_INTEGRATION,
                DOCS_CONTENTS,
            );
        }
    }
    let Some(found) = repo.find(&model) else {
        return Reply::not_found(DOCS_CONTENTS);
    };
    let full_name = found.full_name();
    let Some(file) = model.stored_file(repo, path) else {
        return Reply::not_found(DOCS_CONTENTS);
    };
    if etag_matches(call, &file.etag) {
        return Reply::json(StatusCode::NOT_MODIFIED, Value::Null).header("etag", &file.etag);
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
    let sha = file.etag.trim_matches('"');
    let api = format!("{}/repos/{full_name}/contents/{path}", call.urls.api);
    let git = format!("{}/repos/{full_name}/git/blobs/{sha}", call.urls.api);
    let html = format!("{}/{full_name}/blob/main/{path}", call.urls.web);
    let download = format!("{}/{full_name}/raw/main/{path}", call.urls.web);
    let body = json!({
        "type": "file",
        "encoding": "base64",
        "size": file.text.len(),
        "name": name,
        "path": path,
        "content": base64::engine::general_purpose::STANDARD.encode(&file.text),
        "sha": sha,
        "url": api,
        "git_url": git,
        "html_url": html,
        "download_url": download,
        "_links": { "self": api, "git": git, "html": html },
    });
    Reply::json(StatusCode::OK, body).header("etag", format!("W/{}", file.etag))
}

/// Whether a reply's body is raw text (the JSON string is written as is).
pub(super) fn is_raw(reply: &Reply) -> bool {
    reply.headers.iter().any(|(name, value)| {
        name == http::header::CONTENT_TYPE && value.starts_with(RAW_MEDIA_TYPE)
    })
}
