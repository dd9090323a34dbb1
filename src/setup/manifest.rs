//! The GitHub App manifest `task-list-bot setup` posts to GitHub: what the
//! bot needs and nothing more.

use serde_json::{Value, json};

/// The file a repository may hold to change the bot's behaviour; the App
/// may read this one file and no other (GitHub's single-file permission).
pub const SETTINGS_FILE: &str = ".github/task-list-completed.yml";

/// Repository permissions, as `default_permissions` spells them.
///
/// `merge_queues: read` is there because GitHub delivers `merge_group` only
/// to Apps that hold it.
pub const PERMISSIONS: [(&str, &str); 6] = [
    ("checks", "write"),
    ("pull_requests", "read"),
    ("issues", "read"),
    ("metadata", "read"),
    ("merge_queues", "read"),
    ("single_file", "read"),
];

/// The deliveries the bot reacts to (see `event.rs`).
///
/// `push` is not among them by default: GitHub lets an App subscribe to it
/// only with the Contents permission (every file of the repository), and
/// refuses a manifest that asks for `push` without it. Without `push`, a
/// changed settings file applies once the cached settings are older than
/// the cache's age (`repo_settings::cache::DEFAULT_MAX_AGE`).
/// [`AppDescription::push_events`] adds both.
pub const EVENTS: [&str; 5] = [
    "pull_request",
    "issue_comment",
    "pull_request_review",
    "pull_request_review_comment",
    "merge_group",
];

/// What the person registering the App chose.
#[derive(Debug, Clone)]
pub struct AppDescription {
    pub name: String,
    /// Where GitHub posts deliveries.
    pub webhook_url: String,
    /// The App's homepage (GitHub requires one).
    pub homepage_url: String,
    /// Whether accounts other than the owner may install it.
    pub public: bool,
    /// Also ask for `contents: read` and the `push` event, so that a
    /// changed settings file applies at once.
    pub push_events: bool,
}

/// The manifest, with `redirect_url` pointing back at the setup page.
pub fn manifest(app: &AppDescription, redirect_url: &str) -> Value {
    let mut permissions: serde_json::Map<String, Value> = PERMISSIONS
        .iter()
        .map(|(name, level)| ((*name).to_owned(), Value::from(*level)))
        .collect();
    let mut events: Vec<&str> = EVENTS.to_vec();
    if app.push_events {
        permissions.insert("contents".to_owned(), Value::from("read"));
        events.push("push");
    }
    json!({
        "name": app.name,
        "url": app.homepage_url,
        "description": "Keeps a task-list-completed check on every pull request: in progress while task-list items remain unticked, a success once every required task is ticked.",
        "hook_attributes": { "url": app.webhook_url, "active": true },
        "redirect_url": redirect_url,
        "public": app.public,
        "default_permissions": permissions,
        // The path of the single-file permission, under the name GitHub's
        // registration form gives it.
        "single_file_name": SETTINGS_FILE,
        "default_events": events,
    })
}

/// `scheme://host[:port]/` of an http(s) URL, or `None` when it is not one.
pub fn origin(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    Some(format!("{scheme}://{}/", uri.authority()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_asks_for_the_bots_permissions_and_events() {
        let app = AppDescription {
            name: "task-list-bot".into(),
            webhook_url: "https://bot.example.org/".into(),
            homepage_url: "https://bot.example.org/".into(),
            public: false,
            push_events: false,
        };
        let manifest = manifest(&app, "http://localhost:4000/redirect");
        assert_eq!(manifest["default_permissions"]["checks"], "write");
        assert_eq!(manifest["default_permissions"]["single_file"], "read");
        assert_eq!(manifest["single_file_name"], SETTINGS_FILE);
        assert_eq!(
            manifest["hook_attributes"]["url"],
            "https://bot.example.org/"
        );
        assert_eq!(manifest["redirect_url"], "http://localhost:4000/redirect");
        assert_eq!(manifest["default_events"].as_array().unwrap().len(), 5);
        assert_eq!(manifest["public"], false);
        assert!(manifest["default_permissions"].get("contents").is_none());

        let with_push = super::manifest(
            &AppDescription {
                push_events: true,
                ..app
            },
            "http://localhost:4000/redirect",
        );
        assert_eq!(with_push["default_permissions"]["contents"], "read");
        assert_eq!(with_push["default_events"].as_array().unwrap().len(), 6);
        assert_eq!(with_push["default_events"][5], "push");
    }

    #[test]
    fn origin_keeps_scheme_host_and_port() {
        assert_eq!(
            origin("https://bot.example.org:8443/hooks/github").as_deref(),
            Some("https://bot.example.org:8443/")
        );
        assert_eq!(origin("ftp://example.org/"), None);
        assert_eq!(origin("bot.example.org"), None);
    }
}
