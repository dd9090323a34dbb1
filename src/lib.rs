//! task-list-bot keeps a `task-list-completed` check run on every pull request
//! of the repositories where its GitHub App is installed.
//!
//! GitHub calls the bot by webhook; the bot answers at once, remembers which
//! pull requests need a fresh check, and a worker loop spends each
//! installation's write slots on them: it reads the pull request's current
//! state, counts its task-list items and creates a check run when the result
//! differs from the last one.
//!
//! The main components:
//!
//! * [`config`]: the validated settings ([`Config`]), from plain values.
//! * [`webhook`]: the axum handler that verifies and decodes deliveries.
//! * [`event`]: [`Event`], the closed set of things the bot reacts to.
//! * [`tasklist`]: markdown task-list parsing and the check's text; pure.
//! * [`check`]: from a pull request's state to the check run to create; pure.
//! * [`github`]: the only way out to GitHub: authentication, timeouts,
//!   retries, rate-limit answers, pagination.
//! * [`pending`]: the set of pull requests waiting for a check.
//! * [`worker`]: the loop that spends per-installation write slots.
//! * [`server`]: [`server::run`] ties them together until shutdown.
//! * [`redeliver`]: asks GitHub again for deliveries no worker answered.
//! * [`metrics`]: Prometheus metrics, one function per event, and each
//!   worker's own `/metrics` endpoint.
//! * [`setup`]: registers the GitHub App from a manifest and stores its credentials.
//! * [`receive`]: runs one payload from a file through decoding and the write path.
//! * [`status`]: the host's fleet at a glance, read from the shared store.
//! * [`repo_settings`]: per-repository settings files, their inheritance
//!   and their cache.
//!
//! The library never reads systemd's variables: the binary hands it a
//! listener, the settings and a shutdown signal.

pub mod check;
pub mod config;
pub mod event;
pub mod github;
pub mod metrics;
pub mod pending;
pub mod receive;
pub mod redeliver;
pub mod repo_settings;
pub mod server;
pub mod setup;
pub mod status;
pub mod tasklist;
pub mod webhook;
pub mod worker;

pub use config::Config;
pub use event::Event;

/// Errors that end a command; carries its context in the message chain.
pub type Error = anyhow::Error;
/// Result for operations whose errors only get reported, not branched on.
pub type Result<T, E = Error> = std::result::Result<T, E>;
