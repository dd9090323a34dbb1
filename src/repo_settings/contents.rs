//! [`SettingsSource`] over GitHub's contents API:
//! `GET /repos/{owner}/{repo}/contents/{path}` with the installation's
//! token, on the default branch (no `ref`), as Probot reads config files.
//!
//! The raw media type (`application/vnd.github.raw+json`) is asked for, as
//! `@probot/octokit-plugin-config` does: the answer is the file itself (no
//! base64 to decode) and its `ETag` follows the file's content. The JSON
//! object form would carry `download_url`, which for a private repository
//! holds a short-lived token, so its ETag would change while the file does
//! not and conditional requests would rarely get their `304`. A directory or
//! submodule at the path still comes back as JSON, which is how it is told
//! apart from a file.

use http::{HeaderMap, HeaderValue, StatusCode};

use super::resolve::{Fetched, SettingsSource};
use crate::github::{GitHubError, InstallationClient, RepoName, Requester};

/// The media type for a file's raw content.
pub const RAW_MEDIA_TYPE: &str = "application/vnd.github.raw+json";

/// Settings files more than this are refused: the contents API serves up to
/// 1 MB raw, and no settings file needs more than a few hundred bytes.
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;

/// Reads settings files through one installation.
#[derive(Clone)]
pub struct ContentsSource {
    http: Requester,
}

impl ContentsSource {
    pub fn new(http: Requester) -> ContentsSource {
        ContentsSource { http }
    }

    /// Through the installation of `client`.
    pub fn for_installation(client: &InstallationClient) -> ContentsSource {
        ContentsSource::new(client.requester().clone())
    }
}

impl SettingsSource for ContentsSource {
    async fn fetch(&self, repo: &RepoName, path: &str, etag: Option<&str>) -> Fetched {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static(RAW_MEDIA_TYPE),
        );
        if let Some(etag) = etag.and_then(|etag| HeaderValue::from_str(etag).ok()) {
            headers.insert(http::header::IF_NONE_MATCH, etag);
        }
        let url = format!("/repos/{}/contents/{}", repo.0, encode_path(path));
        let answer = match self.http.get_conditional(&url, &headers).await {
            Ok(answer) => answer,
            // Without a token nothing is known of the file.
            Err(error) if error.refused_the_token() => return Fetched::Unavailable(error),
            Err(GitHubError::Status { status: 404, .. }) => return Fetched::Missing,
            Err(GitHubError::Status { status: 403, .. }) => return Fetched::Forbidden,
            Err(error) => return Fetched::Unavailable(error),
        };
        if answer.status == StatusCode::NOT_MODIFIED {
            return Fetched::NotModified;
        }
        let json = answer
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if json {
            return Fetched::NotAFile("is a directory or a submodule, not a file".into());
        }
        if answer.body.len() > MAX_SETTINGS_BYTES {
            return Fetched::NotAFile(format!(
                "is {} bytes; a settings file may have at most {MAX_SETTINGS_BYTES}",
                answer.body.len()
            ));
        }
        let etag = answer
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match String::from_utf8(answer.body) {
            Ok(text) => Fetched::Found { text, etag },
            Err(_) => Fetched::NotAFile("is not UTF-8 text".into()),
        }
    }
}

/// Percent-encodes each segment of a path (separators kept). `_extends`
/// paths are already restricted to letters, digits, `-`, `_`, `.` and `/`,
/// so this only guards against what a future caller might pass.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            form_urlencoded::byte_serialize(segment.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_their_separators() {
        assert_eq!(
            encode_path(".github/task-list-completed.yml"),
            ".github/task-list-completed.yml"
        );
        assert_eq!(encode_path("a b/c?d"), "a%20b/c%3Fd");
    }
}
