//! Where `task-list-bot setup` puts the new App's credentials, and the
//! check that it never overwrites existing ones unasked.
//!
//! Every file is written to a temporary file beside it and renamed into
//! place, so that a reader (or a crash) never sees half a key; secrets are
//! created with mode 0600 from the start.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};

/// The settings file of the Debian package.
pub const SETTINGS_FILE: &str = "/etc/default/task-list-bot";
/// The credentials directory of the Debian package (`LoadCredential=`).
pub const CREDENTIALS_DIR: &str = "/etc/task-list-bot";
pub const PRIVATE_KEY_FILE: &str = "private-key.pem";
pub const WEBHOOK_SECRET_FILE: &str = "webhook-secret";

/// The variables a development `.env` gets, by Probot's names.
const ENV_KEYS: [&str; 5] = [
    "APP_ID",
    "PRIVATE_KEY",
    "WEBHOOK_SECRET",
    "GITHUB_CLIENT_ID",
    "GITHUB_CLIENT_SECRET",
];

/// Where the credentials go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An installed fleet: `APP_ID` in the settings file, the key and the
    /// secret as root-only files in the credentials directory.
    System {
        settings_file: PathBuf,
        credentials_dir: PathBuf,
    },
    /// Development: Probot's variables in a `.env` file.
    Dev { env_file: PathBuf },
}

impl Destination {
    /// The Debian package's paths.
    pub fn system() -> Destination {
        Destination::System {
            settings_file: PathBuf::from(SETTINGS_FILE),
            credentials_dir: PathBuf::from(CREDENTIALS_DIR),
        }
    }
}

/// What the conversion handed back, secrets kept secret.
pub struct AppCredentialsFromGitHub {
    pub app_id: u64,
    pub pem: SecretString,
    pub webhook_secret: SecretString,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
}

/// Credentials are already in place and `--force` was not given.
#[derive(Debug, thiserror::Error)]
#[error(
    "credentials already exist ({}); run again with --force to replace them",
    .0.join(", ")
)]
pub struct CredentialsExist(pub Vec<String>);

/// Refuses when credentials already exist at `destination`, unless `force`.
pub fn check_not_configured(destination: &Destination, force: bool) -> crate::Result<()> {
    if force {
        return Ok(());
    }
    let mut found = Vec::new();
    match destination {
        Destination::System {
            settings_file,
            credentials_dir,
        } => {
            for name in [PRIVATE_KEY_FILE, WEBHOOK_SECRET_FILE] {
                let path = credentials_dir.join(name);
                if path.exists() {
                    found.push(path.display().to_string());
                }
            }
            let text = read_if_present(settings_file)?;
            if assigned(&text, "APP_ID") {
                found.push(format!("APP_ID in {}", settings_file.display()));
            }
        }
        Destination::Dev { env_file } => {
            let text = read_if_present(env_file)?;
            for key in ["APP_ID", "PRIVATE_KEY", "WEBHOOK_SECRET"] {
                if assigned(&text, key) {
                    found.push(format!("{key} in {}", env_file.display()));
                }
            }
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(CredentialsExist(found).into())
    }
}

/// Writes the credentials; returns the paths written, in order.
pub fn write(
    destination: &Destination,
    credentials: &AppCredentialsFromGitHub,
) -> crate::Result<Vec<PathBuf>> {
    match destination {
        Destination::System {
            settings_file,
            credentials_dir,
        } => write_system(settings_file, credentials_dir, credentials),
        Destination::Dev { env_file } => write_env(env_file, credentials),
    }
}

fn write_system(
    settings_file: &Path,
    credentials_dir: &Path,
    credentials: &AppCredentialsFromGitHub,
) -> crate::Result<Vec<PathBuf>> {
    if !credentials_dir.exists() {
        fs::create_dir_all(credentials_dir)
            .with_context(|| format!("creating {}", credentials_dir.display()))?;
        fs::set_permissions(credentials_dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} root-only", credentials_dir.display()))?;
    }
    let key_path = credentials_dir.join(PRIVATE_KEY_FILE);
    let mut pem = credentials.pem.expose_secret().to_owned();
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    replace_file(&key_path, pem.as_bytes(), 0o600)?;
    let secret_path = credentials_dir.join(WEBHOOK_SECRET_FILE);
    let secret = format!("{}\n", credentials.webhook_secret.expose_secret());
    replace_file(&secret_path, secret.as_bytes(), 0o600)?;
    // APP_ID last: with it the package considers the fleet configured.
    let text = read_if_present(settings_file)?;
    let edited = set_app_id(&text, credentials.app_id);
    let mode = fs::metadata(settings_file)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    replace_file(settings_file, edited.as_bytes(), mode)?;
    Ok(vec![key_path, secret_path, settings_file.to_path_buf()])
}

/// The settings file with `APP_ID=id`: the existing assignment replaced,
/// or else the commented `#APP_ID=` line, or else a line appended.
pub fn set_app_id(text: &str, app_id: u64) -> String {
    let line = format!("APP_ID={app_id}");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let target = lines
        .iter()
        .position(|l| key_of(l) == Some("APP_ID"))
        .or_else(|| {
            lines.iter().position(|l| {
                l.trim_start()
                    .strip_prefix('#')
                    .is_some_and(|rest| key_of(rest) == Some("APP_ID"))
            })
        });
    match target {
        Some(index) => lines[index] = line,
        None => lines.push(line),
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn write_env(
    env_file: &Path,
    credentials: &AppCredentialsFromGitHub,
) -> crate::Result<Vec<PathBuf>> {
    let text = read_if_present(env_file)?;
    let values = [
        credentials.app_id.to_string(),
        // One line, double-quoted with `\n` escapes: dotenv turns them back
        // into newlines, and so does the bot's own PRIVATE_KEY decoding.
        format!(
            "\"{}\"",
            credentials
                .pem
                .expose_secret()
                .trim_end()
                .replace('\n', "\\n")
        ),
        credentials.webhook_secret.expose_secret().to_owned(),
        credentials.client_id.clone().unwrap_or_default(),
        credentials
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned())
            .unwrap_or_default(),
    ];
    let edited = set_env_values(&text, &ENV_KEYS, &values);
    replace_file(env_file, edited.as_bytes(), 0o600)?;
    Ok(vec![env_file.to_path_buf()])
}

/// `text` with each `keys[i]` set to `values[i]`: an existing assignment
/// is replaced in place (a double-quoted value spanning lines included),
/// the others appended. Every other line is kept.
pub fn set_env_values(text: &str, keys: &[&str], values: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut done = vec![false; keys.len()];
    let mut skipping_multiline = false;
    for line in text.lines() {
        if skipping_multiline {
            if line.contains('"') {
                skipping_multiline = false;
            }
            continue;
        }
        let found = key_of(line).and_then(|key| keys.iter().position(|k| *k == key));
        match found {
            Some(index) => {
                if !done[index] {
                    out.push(format!("{}={}", keys[index], values[index]));
                    done[index] = true;
                }
                let value = line.split_once('=').map_or("", |(_, v)| v.trim_start());
                if let Some(rest) = value.strip_prefix('"') {
                    skipping_multiline = !rest.contains('"');
                }
            }
            None => out.push(line.to_owned()),
        }
    }
    for (index, key) in keys.iter().enumerate() {
        if !done[index] {
            out.push(format!("{key}={}", values[index]));
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// The variable a `KEY=value` line (optionally `export KEY=value`) assigns.
fn key_of(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (key, _) = line.split_once('=')?;
    let key = key.trim_end();
    let valid = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(key)
}

/// Whether `text` assigns `key` a non-empty value (comments do not count).
fn assigned(text: &str, key: &str) -> bool {
    text.lines().any(|line| {
        key_of(line) == Some(key)
            && line
                .split_once('=')
                .is_some_and(|(_, value)| !value.trim().trim_matches(['"', '\'']).is_empty())
    })
}

fn read_if_present(path: &Path) -> crate::Result<String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

/// Writes `contents` to a new file beside `path` with `mode`, then renames
/// it over `path`.
fn replace_file(path: &Path, contents: &[u8], mode: u32) -> crate::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let result = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)?;
        // The umask may have narrowed the mode; widen it back for files
        // that others read (the settings file), never the secrets.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if let Err(error) = result {
        let _ = fs::remove_file(&temporary);
        return Err(anyhow::Error::new(error).context(format!("writing {}", path.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_id_replaces_the_commented_line_and_keeps_the_rest() {
        let text = "# The App\n#APP_ID=\nWEB_CONCURRENCY=4\n";
        assert_eq!(
            set_app_id(text, 42),
            "# The App\nAPP_ID=42\nWEB_CONCURRENCY=4\n"
        );
        assert_eq!(
            set_app_id("APP_ID=7\n#APP_ID=\n", 42),
            "APP_ID=42\n#APP_ID=\n"
        );
        assert_eq!(set_app_id("PORT=3000", 42), "PORT=3000\nAPP_ID=42\n");
        assert_eq!(set_app_id("", 42), "APP_ID=42\n");
    }

    #[test]
    fn env_values_replace_assignments_multiline_ones_included() {
        let text = "LOG_LEVEL=debug\nPRIVATE_KEY=\"-----BEGIN\nabc\n-----END\"\nAPP_ID=1\n";
        let edited = set_env_values(
            text,
            &["APP_ID", "PRIVATE_KEY", "WEBHOOK_SECRET"],
            &["2".into(), "\"k\"".into(), "s".into()],
        );
        assert_eq!(
            edited,
            "LOG_LEVEL=debug\nPRIVATE_KEY=\"k\"\nAPP_ID=2\nWEBHOOK_SECRET=s\n"
        );
    }

    #[test]
    fn only_non_empty_assignments_count_as_configured() {
        assert!(assigned("APP_ID=5\n", "APP_ID"));
        assert!(assigned("export APP_ID = 5\n", "APP_ID"));
        assert!(!assigned("#APP_ID=5\n", "APP_ID"));
        assert!(!assigned("APP_ID=\n", "APP_ID"));
        assert!(!assigned("APP_ID=\"\"\n", "APP_ID"));
        assert!(!assigned("MY_APP_ID=5\n", "APP_ID"));
    }
}
