//! Realistic GitHub webhook deliveries built from the fake's model, so that a
//! test can change state in [`FakeGitHub`] and then deliver the event GitHub
//! would send about that change, with the same ids, SHAs and URLs the REST
//! API of the fake answers with.
//!
//! Webhook payloads embed the same representations as the REST API (a
//! `pull_request` event carries the REST pull request object, an
//! `issue_comment` event the REST issue and comment), so the builders take
//! them from [`FakeGitHub::resource_json`] rather than re-inventing them.
//!
//! # Layout
//!
//! This file must be a sibling module, named `webhooks`, of the fake's module
//! named `fake_github`, e.g.:
//!
//! ```ignore
//! #[path = "support/fake_github/mod.rs"]
//! mod fake_github;
//! #[path = "support/webhooks.rs"]
//! mod webhooks;
//! ```
//!
//! # Panics
//!
//! The builders panic when the repository, issue, pull request or comment
//! they are asked about does not exist in the fake: that is a bug in the
//! test's setup, better reported at once than as a confusing payload.

// Each includer uses a different subset of these helpers.
#![allow(dead_code)]

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::fake_github::{FakeGitHub, Resource};

/// The hook id GitHub would put in `X-GitHub-Hook-ID` for the app's webhook.
pub const HOOK_ID: u64 = 424_242;

/// One webhook delivery: which event, its delivery GUID and its payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Webhook {
    /// `X-GitHub-Event`, e.g. `pull_request`.
    pub event: &'static str,
    /// `X-GitHub-Delivery`, a fresh GUID per built webhook.
    pub delivery_id: String,
    /// The JSON payload; edit it freely before calling [`Webhook::body`].
    pub payload: Value,
    /// The app id for `X-GitHub-Hook-Installation-Target-ID`.
    pub app_id: u64,
}

impl Webhook {
    /// The request body as GitHub sends it (compact JSON). Serialisation is
    /// deterministic, so the signature from [`Webhook::headers`] matches.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.payload).unwrap_or_default()
    }

    /// The headers of GitHub's delivery request. With `secret`, the body is
    /// signed in `X-Hub-Signature-256` as GitHub does for an app with a
    /// webhook secret; without it the header is absent.
    pub fn headers(&self, secret: Option<&[u8]>) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("user-agent", "GitHub-Hookshot/5f4e3d2".to_owned()),
            ("x-github-delivery", self.delivery_id.clone()),
            ("x-github-event", self.event.to_owned()),
            ("x-github-hook-id", HOOK_ID.to_string()),
            (
                "x-github-hook-installation-target-type",
                "integration".to_owned(),
            ),
            (
                "x-github-hook-installation-target-id",
                self.app_id.to_string(),
            ),
        ];
        if let Some(secret) = secret {
            headers.push(("x-hub-signature-256", sign(secret, &self.body())));
        }
        headers
    }

    /// The `action` of the payload, if any.
    pub fn action(&self) -> Option<&str> {
        self.payload.get("action").and_then(Value::as_str)
    }
}

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`, the value of
/// `X-Hub-Signature-256`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

// ---------------------------------------------------------------------------
// pull_request
// ---------------------------------------------------------------------------

/// `pull_request` / `opened` for the pull request as it is now in the fake.
pub fn pull_request_opened(fake: &FakeGitHub, full_name: &str, number: u64) -> Webhook {
    pull_request_event(fake, full_name, number, "opened", json!({}))
}

/// `pull_request` / `edited`. Pass the body (and title) the pull request had
/// *before* the edit; the fake must already hold the new ones. GitHub lists
/// only what changed under `changes`.
pub fn pull_request_edited(
    fake: &FakeGitHub,
    full_name: &str,
    number: u64,
    old_body: Option<&str>,
    old_title: Option<&str>,
) -> Webhook {
    let mut changes = serde_json::Map::new();
    if let Some(body) = old_body {
        changes.insert("body".to_owned(), json!({ "from": body }));
    }
    if let Some(title) = old_title {
        changes.insert("title".to_owned(), json!({ "from": title }));
    }
    let extra = json!({ "changes": changes });
    pull_request_event(fake, full_name, number, "edited", extra)
}

/// `pull_request` / `synchronize` (a push to the head branch): `before` is
/// the previous head SHA, `after` the one the fake now holds.
pub fn pull_request_synchronize(
    fake: &FakeGitHub,
    full_name: &str,
    number: u64,
    before: &str,
) -> Webhook {
    let after = pull(fake, full_name, number)["head"]["sha"].clone();
    let extra = json!({ "before": before, "after": after });
    pull_request_event(fake, full_name, number, "synchronize", extra)
}

/// `pull_request` / `reopened`.
pub fn pull_request_reopened(fake: &FakeGitHub, full_name: &str, number: u64) -> Webhook {
    pull_request_event(fake, full_name, number, "reopened", json!({}))
}

/// `pull_request` / `closed` (`pull_request.merged` tells merged from not).
pub fn pull_request_closed(fake: &FakeGitHub, full_name: &str, number: u64) -> Webhook {
    pull_request_event(fake, full_name, number, "closed", json!({}))
}

/// Any `pull_request` action; the keys of `extra` are added at the top level.
pub fn pull_request_event(
    fake: &FakeGitHub,
    full_name: &str,
    number: u64,
    action: &str,
    extra: Value,
) -> Webhook {
    let pull_request = pull(fake, full_name, number);
    let sender = pull_request["user"].clone();
    let mut payload = json!({
        "action": action,
        "number": number,
        "pull_request": pull_request,
    });
    merge(&mut payload, extra);
    envelope(fake, full_name, "pull_request", payload, sender)
}

// ---------------------------------------------------------------------------
// Comments and reviews
// ---------------------------------------------------------------------------

/// `issue_comment` / `created` for a comment already added with
/// [`FakeGitHub::add_issue_comment`]. On a pull request, `issue` has a
/// `pull_request` key; on a plain issue it has none (that is how receivers
/// tell them apart).
pub fn issue_comment_created(
    fake: &FakeGitHub,
    full_name: &str,
    number: u64,
    comment_id: u64,
) -> Webhook {
    let issue = resource(fake, full_name, Resource::Issue(number), "issue");
    let comment = resource(
        fake,
        full_name,
        Resource::IssueComment(comment_id),
        "issue comment",
    );
    let sender = comment["user"].clone();
    let payload = json!({
        "action": "created",
        "issue": issue,
        "comment": comment,
    });
    envelope(fake, full_name, "issue_comment", payload, sender)
}

/// `pull_request_review` / `submitted` for a review already added with
/// [`FakeGitHub::add_review`].
pub fn pull_request_review_submitted(
    fake: &FakeGitHub,
    full_name: &str,
    number: u64,
    review_id: u64,
) -> Webhook {
    let review = resource(fake, full_name, Resource::Review(review_id), "review");
    let sender = review["user"].clone();
    let payload = json!({
        "action": "submitted",
        "review": review,
        "pull_request": pull(fake, full_name, number),
    });
    envelope(fake, full_name, "pull_request_review", payload, sender)
}

/// `pull_request_review_comment` / `created` for a comment already added with
/// [`FakeGitHub::add_review_comment`].
pub fn pull_request_review_comment_created(
    fake: &FakeGitHub,
    full_name: &str,
    number: u64,
    comment_id: u64,
) -> Webhook {
    let comment = resource(
        fake,
        full_name,
        Resource::ReviewComment(comment_id),
        "review comment",
    );
    let sender = comment["user"].clone();
    let payload = json!({
        "action": "created",
        "comment": comment,
        "pull_request": pull(fake, full_name, number),
    });
    envelope(
        fake,
        full_name,
        "pull_request_review_comment",
        payload,
        sender,
    )
}

// ---------------------------------------------------------------------------
// merge_group
// ---------------------------------------------------------------------------

/// `merge_group` / `checks_requested` for the merge-queue entry of pull
/// request `number` onto `base_ref` (e.g. `main`). GitHub has created the
/// merge-group commit by the time it sends this, so `head_sha` is made a
/// known commit of the repository in the fake (check runs can be created
/// on it).
pub fn merge_group_checks_requested(
    fake: &FakeGitHub,
    full_name: &str,
    number: u64,
    head_sha: &str,
    base_ref: &str,
) -> Webhook {
    fake.add_commit(full_name, head_sha);
    let base_sha = pull(fake, full_name, number)["base"]["sha"].clone();
    let sender = repository(fake, full_name)["owner"].clone();
    let login = sender["login"].as_str().unwrap_or("octocat").to_owned();
    let payload = json!({
        "action": "checks_requested",
        "merge_group": {
            "head_sha": head_sha,
            "head_ref": format!("refs/heads/gh-readonly-queue/{base_ref}/pr-{number}-{head_sha}"),
            "base_sha": base_sha,
            "base_ref": format!("refs/heads/{base_ref}"),
            "head_commit": {
                "id": head_sha,
                "tree_id": tree_id(head_sha),
                "message": format!("Merge pull request #{number}"),
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "author": {"name": login, "email": format!("{login}@users.noreply.example")},
                "committer": {"name": "GitHub", "email": "noreply@github.com"},
            },
        },
    });
    envelope(fake, full_name, "merge_group", payload, sender)
}

// ---------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------

/// The account GitHub shows for deleted users where it must show one.
pub const GHOST: &str = "ghost";

/// Adds `repository`, `sender` and `installation`, as on every app delivery.
fn envelope(
    fake: &FakeGitHub,
    full_name: &str,
    event: &'static str,
    mut payload: Value,
    sender: Value,
) -> Webhook {
    let repository = repository(fake, full_name);
    let installation = resource(fake, full_name, Resource::Installation, "installation");
    // The author of what the event is about may be a deleted account
    // (`"user": null`); the sender is then GitHub's placeholder account.
    let sender = if sender.is_null() {
        fake.user_json(GHOST)
    } else {
        sender
    };
    merge(
        &mut payload,
        json!({
            "repository": repository,
            "sender": sender,
            "installation": {
                "id": installation["id"],
                "node_id": installation["node_id"],
            },
        }),
    );
    Webhook {
        event,
        delivery_id: guid(),
        payload,
        app_id: fake.app_id(),
    }
}

fn repository(fake: &FakeGitHub, full_name: &str) -> Value {
    resource(fake, full_name, Resource::Repository, "repository")
}

fn pull(fake: &FakeGitHub, full_name: &str, number: u64) -> Value {
    resource(fake, full_name, Resource::Pull(number), "pull request")
}

fn resource(fake: &FakeGitHub, full_name: &str, resource: Resource, what: &str) -> Value {
    match fake.resource_json(full_name, resource) {
        Some(value) => value,
        None => panic!("webhooks: no {what} {resource:?} in {full_name}; add it to the fake first"),
    }
}

fn merge(payload: &mut Value, extra: Value) {
    if let (Some(object), Value::Object(extra)) = (payload.as_object_mut(), extra) {
        object.extend(extra);
    }
}

/// A stable, distinct tree SHA for a commit SHA.
fn tree_id(commit: &str) -> String {
    let digest = <Sha256 as sha2::Digest>::digest(format!("tree:{commit}").as_bytes());
    hex::encode(digest)[..40].to_owned()
}

/// A fresh version-4-looking GUID, like `X-GitHub-Delivery`.
fn guid() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = || {
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.finish()
    };
    let (a, b) = (random(), random());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}
