//! The fake GitHub REST API as a standalone server, for shell-driven
//! end-to-end tests and benchmarks: the example `fake_github` of
//! `Cargo.toml` (built by `cargo build --examples`).
//!
//! ```text
//! cargo run --example fake_github -- --listen 127.0.0.1:0 --app-id 1 \
//!     --public-key tests/data/test-app-key.pub.pem [--addr-file PATH] [--token-ttl-secs N] \
//!     [--lenient-headers] [--content-creation-limits]
//! ```
//!
//! The first line on stdout is the API base URL (`http://127.0.0.1:PORT/api/v3`);
//! with `--addr-file` the same line is written to that file (atomically, so a
//! script polling for the file never reads half of it). Seed state, inject
//! faults and read what arrived through the `/_fake/...` admin endpoints
//! documented in `tests/support/fake_github/mod.rs`. Stops on SIGINT or SIGTERM.

// This file sits beside the fake's own modules; it is not one of them.
#[path = "mod.rs"]
mod fake_github;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Command line of the fake.
#[derive(Parser, Debug)]
#[command(about = "Fake GitHub REST API for task-list-bot tests")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The GitHub App id that JWTs must name in `iss`.
    #[arg(long)]
    app_id: u64,
    /// The app's RSA public key (PEM, SPKI or PKCS#1) to verify JWTs with.
    #[arg(long)]
    public_key: PathBuf,
    /// Also write the base URL to this file.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// Lifetime of installation tokens (default: one hour, as GitHub).
    #[arg(long)]
    token_ttl_secs: Option<u64>,
    /// Accept requests that repeat a singleton header (User-Agent,
    /// Authorization, Content-Type, Host), which GitHub refuses with 400.
    #[arg(long)]
    lenient_headers: bool,
    /// Enforce GitHub's content-creation limit (80 check runs a minute, 500
    /// an hour per installation). Off by default: the chaos driver delivers
    /// hundreds of events to a few installations within a minute, past the
    /// limit on purpose, to test crash recovery rather than pacing.
    #[arg(long)]
    content_creation_limits: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fake_github: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let key = std::fs::read(&args.public_key)
        .map_err(|err| format!("cannot read {}: {err}", args.public_key.display()))?;
    let fake = fake_github::FakeGitHub::start_on(args.listen, args.app_id, &key)
        .await
        .map_err(|err| format!("cannot start on {}: {err}", args.listen))?;
    fake.set_strict_headers(!args.lenient_headers);
    fake.set_content_creation_limits(args.content_creation_limits);
    if let Some(secs) = args.token_ttl_secs {
        fake.set_token_ttl(Duration::from_secs(secs));
    }

    let base_url = fake.base_url();
    if let Some(path) = &args.addr_file {
        write_atomically(path, &format!("{base_url}\n"))
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    }
    // Scripts read this line to learn the port; flush so they need not wait.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{base_url}")
        .and_then(|()| stdout.flush())
        .map_err(|err| format!("cannot write to stdout: {err}"))?;

    wait_for_shutdown().await;
    Ok(())
}

/// Writes next to the target and renames, so readers see all or nothing.
fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

async fn wait_for_shutdown() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sigterm = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = sigterm => {}
    }
}
