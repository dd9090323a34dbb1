//! Webhook deliveries: signature verification, then payload decoding, then
//! the dry-run check a payload implies.
//!
//! Input layout (the seeds in `tests/fuzz/seeds/webhook/` follow it):
//!
//! - byte 0: which `X-GitHub-Event` (an index into [`EVENTS`]);
//! - byte 1: flags, see [`Flags`];
//! - the rest: the payload, normally JSON.
//!
//! What must hold, whatever the bytes:
//!
//! - nothing panics;
//! - a body signed with the webhook secret verifies, and the payload the
//!   bot decodes is exactly the one that was signed (also form-encoded);
//! - a body whose signature was made with another secret, or was altered
//!   by one bit, or over other bytes, is refused as a bad signature;
//! - whatever decodes to a pull request (changed or closed) gives a check
//!   run request whose output stays within GitHub's limits and serialises
//!   to JSON.

#![no_main]

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use task_list_bot::check::{CHECK_NAME, CheckRunRequest, TaskSources};
use task_list_bot::event::Event;
use task_list_bot::webhook::{Rejection, signature_matches, verify};

const SECRET: &[u8] = b"fuzzing webhook secret";
const OTHER_SECRET: &[u8] = b"some other secret";

/// GitHub refuses a check run whose `output.summary` or `output.text` is
/// longer than 65535 characters (counted here in bytes, which is never
/// fewer).
const GITHUB_MAX_OUTPUT: usize = 65_535;

/// The events the bot handles, then some it ignores.
const EVENTS: [&str; 8] = [
    "pull_request",
    "issue_comment",
    "pull_request_review",
    "pull_request_review_comment",
    "merge_group",
    "ping",
    "push",
    "installation",
];

const IGNORED_BOTS: [&str; 3] = ["linear", "linear[bot]", "coderabbitai[bot]"];

/// Byte 1 of the input.
struct Flags(u8);

impl Flags {
    /// Send the payload form-encoded (`payload=...`), as GitHub does for a
    /// webhook configured with `application/x-www-form-urlencoded`.
    fn form(&self) -> bool {
        self.0 & 1 != 0
    }
    /// Sign with another secret.
    fn wrong_secret(&self) -> bool {
        self.0 & 2 != 0
    }
    /// Flip one bit of the signature (which one: the high bits).
    fn flipped_bit(&self) -> Option<usize> {
        (self.0 & 4 != 0).then_some(usize::from(self.0 >> 3))
    }
    /// Write the content type with odd case and a parameter.
    fn decorated_content_type(&self) -> bool {
        self.0 & 8 != 0
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, flags, payload @ ..] = data else {
        return;
    };
    let event = EVENTS[usize::from(*selector) % EVENTS.len()];
    let flags = Flags(*flags);

    // Arbitrary header text never panics the signature check.
    let header = String::from_utf8_lossy(payload);
    assert!(!signature_matches(SECRET, b"", &header) || header.contains("sha256="));

    let (body, expected_payload) = if flags.form() {
        let text = String::from_utf8_lossy(payload).into_owned();
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &text)
            .finish()
            .into_bytes();
        (body, text.into_bytes())
    } else {
        (payload.to_vec(), payload.to_vec())
    };

    let key = if flags.wrong_secret() {
        OTHER_SECRET
    } else {
        SECRET
    };
    let mut digest = sign(key, &body);
    if let Some(bit) = flags.flipped_bit() {
        let byte = bit / 8 % digest.len();
        digest[byte] ^= 1 << (bit % 8);
    }
    let tampered = flags.wrong_secret() || flags.flipped_bit().is_some();
    let content_type = match (flags.form(), flags.decorated_content_type()) {
        (false, false) => "application/json",
        (false, true) => "Application/JSON; charset=utf-8",
        (true, false) => "application/x-www-form-urlencoded",
        (true, true) => "application/x-www-form-urlencoded ; charset=UTF-8",
    };
    let headers = headers(
        event,
        content_type,
        &format!("sha256={}", hex::encode(digest)),
    );

    // The same signature never covers other bytes.
    if !tampered {
        let mut other = body.clone();
        other.push(b' ');
        assert!(matches!(
            verify(&headers, &Bytes::from(other), SECRET),
            Err(Rejection::BadSignature)
        ));
    }

    let delivery = match verify(&headers, &Bytes::from(body), SECRET) {
        Ok(delivery) => {
            assert!(!tampered, "a tampered signature was accepted");
            delivery
        }
        Err(Rejection::BadSignature) => {
            assert!(tampered, "a correctly signed delivery was refused");
            return;
        }
        Err(other) => panic!("a complete delivery was refused: {other}"),
    };
    assert_eq!(delivery.event, event);
    assert_eq!(
        delivery.payload, expected_payload,
        "the payload is what was signed"
    );

    let decoded = Event::decode(&delivery.event, &delivery.payload);
    // Decoding is a function of its input.
    assert_eq!(
        format!("{decoded:?}"),
        format!("{:?}", Event::decode(&delivery.event, &delivery.payload))
    );
    let Ok(decoded) = decoded else {
        return;
    };
    let ignored: Vec<String> = IGNORED_BOTS.iter().map(|bot| bot.to_string()).collect();
    let now = chrono::Utc::now();
    let request = match decoded {
        Event::Ignored { .. } => return,
        Event::MergeGroupChecksRequested { head_sha, .. } => {
            CheckRunRequest::merge_group(&head_sha, now)
        }
        Event::PullRequestChanged { snapshot, .. } => {
            let sources = TaskSources::from_snapshot(&snapshot);
            let tasks = sources.tasks(&ignored);
            let head_sha = snapshot.head_sha.as_deref().unwrap_or("0");
            CheckRunRequest::for_tasks(head_sha, &tasks, now)
        }
        Event::PullRequestClosed {
            head_sha, merged, ..
        } => {
            let why = if merged {
                "pull request merged"
            } else {
                "pull request closed"
            };
            CheckRunRequest::retired(&head_sha, CHECK_NAME, why, now)
        }
    };
    assert!(request.output.summary.len() <= GITHUB_MAX_OUTPUT);
    assert!(request.output.text.len() <= GITHUB_MAX_OUTPUT);
    serde_json::to_string(&request).expect("a check run request serialises");
});

fn sign(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn headers(event: &str, content_type: &str, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-github-event", event),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("x-hub-signature-256", signature),
        ("content-type", content_type),
    ] {
        headers.insert(name, HeaderValue::from_str(value).expect("a valid header"));
    }
    headers
}
