//! Per-repository settings: `.github/task-list-completed.yml`.
//!
//! A repository (or its owner, for all of its repositories) tunes how the
//! check behaves with a YAML file read the way Probot's
//! `context.config('task-list-completed.yml')` reads it:
//!
//! 1. `.github/task-list-completed.yml` in the repository (default branch);
//! 2. if it does not exist, the same path in the owner's `.github`
//!    repository;
//! 3. then, as long as the last file read has an `_extends` key, the file it
//!    names (`repo`, `owner/repo` or `owner/repo:path`).
//!
//! Files are merged as Probot merges them (see [`mod@resolve`]); keys no file
//! sets keep their default, which is today's behaviour.
//!
//! The pieces, each testable alone:
//!
//! * [`parse`]: one file's text → a [`parse::Layer`] and every error in it,
//!   with file, line, column and key; no I/O.
//! * [`mod@resolve`]: the lookup order over a [`SettingsSource`], the merge, and
//!   the result [`Effective`]: the settings and what went wrong.
//! * [`cache`]: per-repository results in process, revalidated with ETags.
//! * [`contents`]: the [`SettingsSource`] over GitHub's contents API.

pub mod cache;
pub mod contents;
pub mod parse;
pub mod resolve;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::check::{CHECK_NAME, Source};
use crate::config::DEFAULT_IGNORED_BOTS;
use crate::tasklist::Markers;

pub use cache::SettingsCache;
pub use contents::ContentsSource;
pub use resolve::{Fetched, FileRef, SettingsSource, resolve};

/// Where settings live, in a repository and in the owner's `.github`
/// repository.
pub const SETTINGS_PATH: &str = ".github/task-list-completed.yml";

/// The repository that holds an owner's shared settings.
pub const OWNER_SETTINGS_REPO: &str = ".github";

/// The schema, for `task-list-bot config --help` (and the README).
pub const SCHEMA_HELP: &str = "\
Per-repository settings: .github/task-list-completed.yml on the default branch.

Lookup (as Probot's context.config): the repository's file; if it has none,
the same file in the owner's .github repository; then, while the last file
read has _extends, the file it names. Nearer files win; lists are joined
(the base's items first). Every key is optional; the defaults are the
bot's behaviour without a file. A file with any error applies none of its
settings: the check uses the defaults and lists the errors.

  when_incomplete: in_progress   # in_progress | failure | action_required | neutral:
                                 # what the check says while tasks remain
  markers:
    skip: [\"POST-MERGE\", \"N/A\"]  # items containing these are not counted
    optional: [\"OPTIONAL\"]       # items containing these never block
    case_sensitive: true
  sources: [body, comments, reviews, review_comments]   # where tasks are counted
  ignored_bots: [\"linear\", \"linear[bot]\", \"coderabbitai[bot]\"]
                                 # default: the server's IGNORED_BOTS
  count_renovate_body: false     # count the body of Renovate's pull requests
  first_check_delay: 0s          # wait after a pull request opens before its
                                 # first check: 30s, 2m, 1m30s; at most 1h
  check_name: task-list-completed   # non-empty, one line, at most 255 bytes
  _extends: .github              # repo, owner/repo or owner/repo:path/file.yml

A broken file: the check uses the defaults and its text lists each error
(file:line:column: key: what is wrong).

The App needs read access to the file (Single file: .github/task-list-completed.yml,
or Contents: read); without it every repository gets the defaults. Settings
are kept 5 minutes per worker, then revalidated with the file's ETag (a 304
costs no rate limit).

The push event refreshes them at once; GitHub sends it only to Apps with
Contents: read (task-list-bot setup --push-events).";

/// The longest `first_check_delay` a repository may ask for: the pull
/// request has no check at all meanwhile.
pub const MAX_FIRST_CHECK_DELAY: Duration = Duration::from_secs(60 * 60);

/// The longest `check_name`, in bytes. GitHub documents no limit for a
/// check run's name; this one keeps names readable in branch protection
/// and in the checks list, where they are shown in full.
pub const MAX_CHECK_NAME_BYTES: usize = 255;

/// What a check says while required tasks remain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenIncomplete {
    /// Today's behaviour: the check stays in progress until every task is
    /// ticked.
    #[default]
    InProgress,
    /// The check completes as a failure.
    Failure,
    /// The check completes and asks for action.
    ActionRequired,
    /// The check completes as neutral: visible, but not blocking.
    Neutral,
}

impl WhenIncomplete {
    pub const ALL: [WhenIncomplete; 4] = [
        WhenIncomplete::InProgress,
        WhenIncomplete::Failure,
        WhenIncomplete::ActionRequired,
        WhenIncomplete::Neutral,
    ];

    /// A check run's `status` and `conclusion` while required tasks remain.
    pub fn status_and_conclusion(self) -> (&'static str, Option<&'static str>) {
        match self {
            WhenIncomplete::InProgress => ("in_progress", None),
            other => ("completed", Some(other.name())),
        }
    }

    /// The name settings files use (also the check run's status or
    /// conclusion).
    pub fn name(self) -> &'static str {
        match self {
            WhenIncomplete::InProgress => "in_progress",
            WhenIncomplete::Failure => "failure",
            WhenIncomplete::ActionRequired => "action_required",
            WhenIncomplete::Neutral => "neutral",
        }
    }
}

/// One repository's settings, every key filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoSettings {
    pub when_incomplete: WhenIncomplete,
    pub markers: Markers,
    /// Which documents count, in reading order.
    pub sources: Vec<Source>,
    /// Logins whose comments and reviews are not counted.
    pub ignored_bots: Vec<String>,
    /// Count the body of pull requests opened by Renovate.
    pub count_renovate_body: bool,
    /// How long after a pull request opens its first check is written.
    #[serde(serialize_with = "serialize_duration")]
    pub first_check_delay: Duration,
    pub check_name: String,
}

impl Default for RepoSettings {
    /// Today's behaviour, with the built-in list of ignored bots.
    fn default() -> RepoSettings {
        RepoSettings::with_ignored_bots(
            DEFAULT_IGNORED_BOTS.split(',').map(str::to_owned).collect(),
        )
    }
}

impl RepoSettings {
    /// Today's behaviour with the server's `IGNORED_BOTS`: the defaults a
    /// repository's file starts from.
    pub fn with_ignored_bots(ignored_bots: Vec<String>) -> RepoSettings {
        RepoSettings {
            when_incomplete: WhenIncomplete::InProgress,
            markers: Markers::default(),
            sources: Source::ALL.to_vec(),
            ignored_bots,
            count_renovate_body: false,
            first_check_delay: Duration::ZERO,
            check_name: CHECK_NAME.to_owned(),
        }
    }

    /// The rules `TaskSources::tasks_with` counts by.
    pub fn count_rules(&self) -> crate::check::CountRules<'_> {
        crate::check::CountRules {
            markers: &self.markers,
            ignored_bots: &self.ignored_bots,
            count_renovate_body: self.count_renovate_body,
        }
    }

    /// The settings as a settings file would spell them (YAML, every key).
    pub fn to_yaml(&self) -> String {
        let list = |items: &[String]| {
            let quoted: Vec<String> = items.iter().map(|item| yaml_quote(item)).collect();
            format!("[{}]", quoted.join(", "))
        };
        let sources: Vec<&str> = self.sources.iter().map(|s| s.name()).collect();
        format!(
            "when_incomplete: {}\nmarkers:\n  skip: {}\n  optional: {}\n  case_sensitive: {}\nsources: [{}]\nignored_bots: {}\ncount_renovate_body: {}\nfirst_check_delay: {}\ncheck_name: {}\n",
            self.when_incomplete.name(),
            list(&self.markers.skip),
            list(&self.markers.optional),
            self.markers.case_sensitive,
            sources.join(", "),
            list(&self.ignored_bots),
            self.count_renovate_body,
            format_duration(self.first_check_delay),
            yaml_quote(&self.check_name),
        )
    }
}

/// A double-quoted YAML string: always valid, whatever the text holds.
fn yaml_quote(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialise")
}

/// `90s` → `1m30s`; zero is `0s`.
pub fn format_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            text.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    text
}

fn serialize_duration<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*duration))
}

/// Where in a settings file something is: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// One thing wrong with a repository's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// `owner/repo:path`, or the local path for `config check`.
    pub file: String,
    /// Where in the file, when the error is about a place in it.
    pub location: Option<Location>,
    /// The key, as a path: `markers.skip[1]`; absent for whole-file errors.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(at) = self.location {
            write!(f, ":{}:{}", at.line, at.column)?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The settings a repository's check is computed with, and how they came
/// about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// With any error, these are the defaults: a broken file applies none
    /// of its settings, so that a typo never half-applies.
    pub settings: RepoSettings,
    /// The files whose settings were merged, nearest first.
    pub files: Vec<FileRef>,
    /// Everything wrong with them; empty when the settings apply.
    pub errors: Vec<SettingsError>,
}

impl Effective {
    /// No file: the defaults.
    pub fn defaults(settings: RepoSettings) -> Effective {
        Effective {
            settings,
            files: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Markdown for a check run's text: what is wrong and that the defaults
    /// were used instead. Empty when nothing is wrong.
    pub fn error_report(&self) -> String {
        if self.errors.is_empty() {
            return String::new();
        }
        let mut text = format!(
            "\n## Settings not applied\nThe settings in `{SETTINGS_PATH}` have errors, so the defaults were used:\n"
        );
        for error in &self.errors {
            text.push_str(&format!("- `{error}`\n"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incomplete_check_is_in_progress_or_completed_with_the_chosen_conclusion() {
        assert_eq!(
            WhenIncomplete::InProgress.status_and_conclusion(),
            ("in_progress", None)
        );
        for (when, conclusion) in [
            (WhenIncomplete::Failure, "failure"),
            (WhenIncomplete::ActionRequired, "action_required"),
            (WhenIncomplete::Neutral, "neutral"),
        ] {
            assert_eq!(
                when.status_and_conclusion(),
                ("completed", Some(conclusion))
            );
        }
    }

    #[test]
    fn the_defaults_are_todays_behaviour_and_print_as_a_valid_file() {
        let defaults = RepoSettings::default();
        assert_eq!(defaults.check_name, CHECK_NAME);
        assert_eq!(defaults.sources, Source::ALL);
        assert_eq!(defaults.markers, Markers::default());
        assert_eq!(
            defaults.ignored_bots,
            ["linear", "linear[bot]", "coderabbitai[bot]"]
        );
        // What `config check` prints reads back to the same settings.
        let (layer, errors) = parse::parse("printed", &defaults.to_yaml());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            resolve::merge(&RepoSettings::with_ignored_bots(vec![]), [layer]),
            defaults
        );
        assert_eq!(format_duration(Duration::from_secs(3725)), "1h2m5s");
    }
}
