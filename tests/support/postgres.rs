//! A real PostgreSQL server for tests and the benchmark: `initdb` and
//! `pg_ctl` from Debian's `postgresql` package (`/usr/lib/postgresql/*/bin`,
//! or `PG_BIN_DIR`), in a temporary directory, listening on a Unix socket
//! only, with trust authentication for one role.
//!
//! One server per test binary, started by the first test that asks and
//! shared by the rest; each test gets a database of its own
//! ([`fresh_database`]). The server stops and its directory goes when the
//! binary exits (an `atexit` hook: the test harness returns from `main`).
//!
//! PostgreSQL refuses to run as root: as root, the server runs as the
//! `postgres` system user (or `nobody`), in a directory that user owns.
//! Without the binaries every test that asks fails with a message that says
//! what to install: CI installs them, so a missing server is never a pass.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use secrecy::SecretString;

/// The role every test connects as.
const ROLE: &str = "tlb";

pub struct PgServer {
    bin: PathBuf,
    /// Holds the data directory, the log and the socket.
    dir: PathBuf,
    /// Whom the server runs as, when this process is root.
    run_as: Option<String>,
}

static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();

/// The shared server, started on first use. Panics, saying why, when it
/// cannot start.
pub fn server() -> &'static PgServer {
    match SERVER.get_or_init(|| {
        let server = PgServer::start()?;
        // SAFETY: registers a plain function; it runs once, at exit.
        unsafe { libc::atexit(stop_at_exit) };
        Ok(server)
    }) {
        Ok(server) => server,
        Err(why) => panic!("{why}"),
    }
}

extern "C" fn stop_at_exit() {
    if let Some(Ok(server)) = SERVER.get() {
        server.stop();
    }
}

/// A URL to a new, empty database on the shared server.
pub fn fresh_database() -> SecretString {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let server = server();
    let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
    server.create_database(&name);
    SecretString::from(server.url(&name))
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "PostgreSQL's server binaries are missing: these tests start a real PostgreSQL. \
         Install Debian's `postgresql` package (apt-get install postgresql), which puts \
         initdb and pg_ctl in /usr/lib/postgresql/<version>/bin, or set PG_BIN_DIR."
            .to_owned()
    })
}

impl PgServer {
    fn start() -> Result<PgServer, String> {
        let bin = bin_dir()?;
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let run_as = root.then(|| {
            if user_ids("postgres").is_some() {
                "postgres".to_owned()
            } else {
                "nobody".to_owned()
            }
        });
        // Short: a Unix socket path has about 100 bytes. The server's own
        // user must reach it: TMPDIR may be a directory only root can
        // enter, /tmp never is.
        let base = if run_as.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("tlb-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if let Some(user) = &run_as {
            let (uid, gid) = user_ids(user).ok_or_else(|| format!("no user {user}"))?;
            let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid C string; ids of an existing user.
            if unsafe { libc::chown(path.as_ptr(), uid, gid) } != 0 {
                return Err(format!(
                    "chown {}: {}",
                    dir.display(),
                    std::io::Error::last_os_error()
                ));
            }
        }
        let server = PgServer { bin, dir, run_as };
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                ROLE.as_ref(),
                "--auth=trust".as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
        )?;
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            server.dir.display()
        );
        let log = server.dir.join("log");
        server
            .run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-o".as_ref(),
                    options.as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "60".as_ref(),
                    "start".as_ref(),
                ],
            )
            .map_err(|e| {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                format!("{e}\nserver log:\n{log}")
            })?;
        Ok(server)
    }

    /// Runs one of the server's programs, as the server's user when root.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        // The server's user may not be able to enter the caller's directory.
        command.current_dir(&self.dir).args(args);
        let output = command
            .output()
            .map_err(|e| format!("running {}: {e}", path.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn create_database(&self, name: &str) {
        let output = Command::new(self.bin.join("createdb"))
            .args(["-h"])
            .arg(&self.dir)
            .args(["-U", ROLE, name])
            .output()
            .expect("running createdb");
        assert!(
            output.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs SQL on database `name` through psql, for what tests do to the
    /// server behind the store's back.
    pub fn psql(&self, name: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h"])
            .arg(&self.dir)
            .args([
                "-U",
                ROLE,
                "-d",
                name,
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("running psql");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The URL of database `name`, over the Unix socket.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgresql:///{name}?host={}&user={ROLE}",
            self.dir.display()
        )
    }

    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    fn stop(&self) {
        let data = self.dir.join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The uid and gid of `user`, if it exists.
fn user_ids(user: &str) -> Option<(libc::uid_t, libc::gid_t)> {
    let name = std::ffi::CString::new(user).ok()?;
    // SAFETY: getpwnam returns null or a pointer to a static record, read
    // at once.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return None;
    }
    // SAFETY: checked non-null above.
    let entry = unsafe { &*entry };
    Some((entry.pw_uid, entry.pw_gid))
}
