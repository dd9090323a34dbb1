//! Which files make a repository's settings, and how they merge: Probot's
//! `context.config()` (`@probot/octokit-plugin-config`'s `getConfigFiles`
//! with Probot's `deepmerge` of the results), over any [`SettingsSource`].
//!
//! # Lookup
//!
//! 1. `{repo}:.github/task-list-completed.yml`.
//! 2. If it is absent (missing, or not readable: 403) and the repository is
//!    not itself `.github`: `{owner}/.github:.github/task-list-completed.yml`.
//! 3. While the last file read has `_extends`, the file it names. A target
//!    without an owner is in the *original* repository's owner; without a
//!    path, at the original path.
//!
//! # Merge
//!
//! As `deepmerge.all([...files from the furthest base to the repository's])`:
//! a scalar from a nearer file wins; lists are concatenated, the base's
//! items first (duplicates dropped, so `sources: [body]` twice does not count
//! the body twice); `markers` merges key by key. Keys no file sets take the
//! defaults. Unlike Probot, the defaults are not concatenated with a file's
//! lists: a repository that lists its own `markers.skip` replaces the
//! default markers rather than adding to them.
//!
//! # Errors
//!
//! Probot throws on a loop, an invalid `_extends` or an unparsable file;
//! here each of those, like an unknown key or a wrong type, becomes a
//! [`SettingsError`] and the result is the defaults. So does an `_extends`
//! target that does not exist (Probot would silently ignore it), and a
//! chain longer than [`MAX_EXTENDS`] (Probot has no limit but loops).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use super::parse::{self, Extends, Layer};
use super::{Effective, OWNER_SETTINGS_REPO, RepoSettings, SETTINGS_PATH, SettingsError};
use crate::github::{GitHubError, RepoName};

/// How many `_extends` a chain may follow.
pub const MAX_EXTENDS: usize = 5;

/// One file in one repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileRef {
    pub repo: RepoName,
    pub path: String,
}

impl FileRef {
    pub fn new(repo: &str, path: &str) -> FileRef {
        FileRef {
            repo: RepoName(repo.to_owned()),
            path: path.to_owned(),
        }
    }
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repo, self.path)
    }
}

/// What reading one file gave.
#[derive(Debug)]
pub enum Fetched {
    /// The file's text, and the `ETag` to revalidate it with.
    Found { text: String, etag: Option<String> },
    /// `304`: the text last read (whose ETag was sent) is still current.
    NotModified,
    /// No such file, or no such repository (`404`).
    Missing,
    /// Not readable with the App's permissions (`403`): as if missing.
    Forbidden,
    /// Something is there but it is not a settings file (a directory, a
    /// submodule, not UTF-8).
    NotAFile(String),
    /// GitHub could not answer now; try again later.
    Unavailable(GitHubError),
}

/// Reads settings files. The HTTP one is [`super::ContentsSource`]; tests
/// use a map.
pub trait SettingsSource {
    /// `etag` is the ETag of the text last read, for a conditional request.
    fn fetch(
        &self,
        repo: &RepoName,
        path: &str,
        etag: Option<&str>,
    ) -> impl Future<Output = Fetched> + Send;
}

/// A file read before: its text and ETag, for conditional requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownFile {
    pub etag: String,
    pub text: Arc<str>,
}

/// What [`resolve`] found out, for the cache.
#[derive(Debug)]
pub struct Resolution {
    pub effective: Effective,
    /// Every file asked for, with what is now known of it: `None` when it
    /// is absent (or has no ETag). A push touching any of them makes the
    /// result stale.
    pub probed: Vec<(FileRef, Option<KnownFile>)>,
    /// How many requests GitHub answered 304.
    pub not_modified: usize,
}

/// The settings of `repo`, read through `source`; `known` holds files read
/// before, revalidated by ETag. `Err` only when GitHub could not answer.
pub async fn resolve<S: SettingsSource>(
    source: &S,
    repo: &RepoName,
    defaults: &RepoSettings,
    known: &HashMap<FileRef, KnownFile>,
) -> Result<Resolution, GitHubError> {
    let mut reader = Reader {
        source,
        known,
        probed: Vec::new(),
        not_modified: 0,
    };
    let (owner, name) = repo.0.split_once('/').unwrap_or(("", repo.0.as_str()));
    let mut loaded: Vec<(FileRef, Layer)> = Vec::new();
    let mut errors: Vec<SettingsError> = Vec::new();

    let first = FileRef::new(&repo.0, SETTINGS_PATH);
    let mut last = reader.read(&first, &mut errors).await?;
    if last.is_none() && name != OWNER_SETTINGS_REPO {
        let shared = FileRef::new(&format!("{owner}/{OWNER_SETTINGS_REPO}"), SETTINGS_PATH);
        last = reader.read(&shared, &mut errors).await?;
    }
    let mut extends = last.as_ref().and_then(|(_, layer)| layer.extends.clone());
    loaded.extend(last);

    while let Some(Extends {
        owner: target_owner,
        repo: target_repo,
        path,
    }) = extends.take()
    {
        let from = loaded
            .last()
            .map(|(file, _)| file.to_string())
            .unwrap_or_default();
        let target = FileRef::new(
            &format!("{}/{target_repo}", target_owner.as_deref().unwrap_or(owner)),
            path.as_deref().unwrap_or(SETTINGS_PATH),
        );
        let whole_file_error = |message: String| SettingsError {
            file: from.clone(),
            location: None,
            key: Some("_extends".to_owned()),
            message,
        };
        if reader.probed.iter().any(|(file, _)| *file == target) {
            errors.push(whole_file_error(format!(
                "extends {target}, which is already part of these settings (a loop)"
            )));
            break;
        }
        if loaded.len() > MAX_EXTENDS {
            errors.push(whole_file_error(format!(
                "extends {target}, but settings may extend at most {MAX_EXTENDS} times"
            )));
            break;
        }
        match reader.read(&target, &mut errors).await? {
            Some((file, layer)) => {
                extends = layer.extends.clone();
                loaded.push((file, layer));
            }
            None => errors.push(whole_file_error(format!(
                "extends {target}, which does not exist or cannot be read"
            ))),
        }
    }

    let files: Vec<FileRef> = loaded.iter().map(|(file, _)| file.clone()).collect();
    let settings = if errors.is_empty() {
        merge(defaults, loaded.into_iter().map(|(_, layer)| layer))
    } else {
        defaults.clone()
    };
    Ok(Resolution {
        effective: Effective {
            settings,
            files,
            errors,
        },
        probed: reader.probed,
        not_modified: reader.not_modified,
    })
}

struct Reader<'a, S> {
    source: &'a S,
    known: &'a HashMap<FileRef, KnownFile>,
    probed: Vec<(FileRef, Option<KnownFile>)>,
    not_modified: usize,
}

impl<S: SettingsSource> Reader<'_, S> {
    /// Reads and parses one file; `None` when it is absent. Its errors go
    /// to `errors`.
    async fn read(
        &mut self,
        file: &FileRef,
        errors: &mut Vec<SettingsError>,
    ) -> Result<Option<(FileRef, Layer)>, GitHubError> {
        let known = self.known.get(file);
        let fetched = self
            .source
            .fetch(&file.repo, &file.path, known.map(|k| k.etag.as_str()))
            .await;
        let (text, memo): (Arc<str>, Option<KnownFile>) = match fetched {
            Fetched::Found { text, etag } => {
                let text: Arc<str> = text.into();
                let memo = etag.map(|etag| KnownFile {
                    etag,
                    text: Arc::clone(&text),
                });
                (text, memo)
            }
            Fetched::NotModified => match known {
                Some(known) => {
                    self.not_modified += 1;
                    (Arc::clone(&known.text), Some(known.clone()))
                }
                None => {
                    return Err(GitHubError::Decode {
                        path: file.to_string(),
                        cause: "304 Not Modified to a request without If-None-Match".into(),
                        request_id: "-".into(),
                    });
                }
            },
            Fetched::Missing | Fetched::Forbidden => {
                self.probed.push((file.clone(), None));
                return Ok(None);
            }
            Fetched::NotAFile(why) => {
                self.probed.push((file.clone(), None));
                errors.push(SettingsError {
                    file: file.to_string(),
                    location: None,
                    key: None,
                    message: why,
                });
                return Ok(None);
            }
            Fetched::Unavailable(error) => return Err(error),
        };
        self.probed.push((file.clone(), memo));
        let (layer, file_errors) = parse::parse(&file.to_string(), &text);
        errors.extend(file_errors);
        Ok(Some((file.clone(), layer)))
    }
}

/// Merges layers given nearest first onto `defaults` (see the module docs).
pub fn merge(
    defaults: &RepoSettings,
    nearest_first: impl IntoIterator<Item = Layer>,
) -> RepoSettings {
    let layers: Vec<Layer> = nearest_first.into_iter().collect();
    let mut settings = defaults.clone();
    if let Some(value) = layers.iter().find_map(|l| l.when_incomplete) {
        settings.when_incomplete = value;
    }
    if let Some(value) = layers.iter().find_map(|l| l.case_sensitive) {
        settings.markers.case_sensitive = value;
    }
    if let Some(value) = layers.iter().find_map(|l| l.count_renovate_body) {
        settings.count_renovate_body = value;
    }
    if let Some(value) = layers.iter().find_map(|l| l.first_check_delay) {
        settings.first_check_delay = value;
    }
    if let Some(value) = layers.iter().find_map(|l| l.check_name.clone()) {
        settings.check_name = value;
    }
    if let Some(value) = concat(layers.iter().map(|l| l.skip.as_ref())) {
        settings.markers.skip = value;
    }
    if let Some(value) = concat(layers.iter().map(|l| l.optional.as_ref())) {
        settings.markers.optional = value;
    }
    if let Some(value) = concat(layers.iter().map(|l| l.sources.as_ref())) {
        settings.sources = value;
    }
    if let Some(value) = concat(layers.iter().map(|l| l.ignored_bots.as_ref())) {
        settings.ignored_bots = value;
    }
    settings
}

/// The lists that are set, given nearest first, joined from the furthest
/// base on as deepmerge concatenates them, without repeats; `None` when no
/// layer sets the list.
fn concat<'a, T: Clone + PartialEq + 'a>(
    nearest_first: impl DoubleEndedIterator<Item = Option<&'a Vec<T>>>,
) -> Option<Vec<T>> {
    let mut merged: Option<Vec<T>> = None;
    for list in nearest_first.rev().flatten() {
        let merged = merged.get_or_insert_with(Vec::new);
        for item in list {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
    }
    merged
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::check::Source;
    use crate::repo_settings::WhenIncomplete;

    /// Files in memory, with ETags; records every request.
    #[derive(Default)]
    pub(crate) struct MapSource {
        pub files: Mutex<HashMap<FileRef, (String, String)>>,
        pub forbidden: Vec<String>,
        pub requests: Mutex<Vec<(FileRef, Option<String>)>>,
        /// Answer every request as GitHub being unreachable.
        pub down: std::sync::atomic::AtomicBool,
    }

    impl MapSource {
        pub fn with(files: &[(&str, &str, &str)]) -> MapSource {
            let source = MapSource::default();
            for (repo, path, text) in files {
                source.put(repo, path, text);
            }
            source
        }

        pub fn put(&self, repo: &str, path: &str, text: &str) {
            let etag = format!("\"{}-{}\"", text.len(), self.requests.lock().unwrap().len());
            self.files
                .lock()
                .unwrap()
                .insert(FileRef::new(repo, path), (text.to_owned(), etag));
        }

        pub fn asked(&self) -> Vec<String> {
            let requests = self.requests.lock().unwrap();
            requests.iter().map(|(file, _)| file.to_string()).collect()
        }
    }

    impl SettingsSource for MapSource {
        async fn fetch(&self, repo: &RepoName, path: &str, etag: Option<&str>) -> Fetched {
            let file = FileRef::new(&repo.0, path);
            self.requests
                .lock()
                .unwrap()
                .push((file.clone(), etag.map(str::to_owned)));
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Fetched::Unavailable(GitHubError::Unreachable {
                    method: http::Method::GET,
                    path: file.to_string(),
                    attempts: 1,
                    cause: "down".into(),
                });
            }
            if self.forbidden.contains(&repo.0) {
                return Fetched::Forbidden;
            }
            match self.files.lock().unwrap().get(&file) {
                Some((_, current)) if Some(current.as_str()) == etag => Fetched::NotModified,
                Some((text, current)) => Fetched::Found {
                    text: text.clone(),
                    etag: Some(current.clone()),
                },
                None => Fetched::Missing,
            }
        }
    }

    const P: &str = SETTINGS_PATH;

    async fn effective(source: &MapSource, repo: &str) -> Effective {
        resolve(
            source,
            &RepoName(repo.into()),
            &RepoSettings::default(),
            &HashMap::new(),
        )
        .await
        .unwrap()
        .effective
    }

    #[tokio::test]
    async fn no_file_anywhere_means_the_defaults() {
        let source = MapSource::default();
        let found = effective(&source, "octo/app").await;
        assert_eq!(found, Effective::defaults(RepoSettings::default()));
        assert_eq!(
            source.asked(),
            [format!("octo/app:{P}"), format!("octo/.github:{P}")]
        );
    }

    #[tokio::test]
    async fn the_repository_file_comes_first_then_the_owners_github_repository() {
        let source = MapSource::with(&[
            ("octo/app", P, "when_incomplete: failure\n"),
            (
                "octo/.github",
                P,
                "when_incomplete: neutral\ncheck_name: org\n",
            ),
        ]);
        let own = effective(&source, "octo/app").await;
        assert_eq!(own.settings.when_incomplete, WhenIncomplete::Failure);
        assert_eq!(
            own.settings.check_name, "task-list-completed",
            "no fallback merge"
        );
        assert_eq!(own.files, [FileRef::new("octo/app", P)]);
        let shared = effective(&source, "octo/other").await;
        assert_eq!(shared.settings.when_incomplete, WhenIncomplete::Neutral);
        assert_eq!(shared.files, [FileRef::new("octo/.github", P)]);
        // The .github repository itself does not fall back to itself.
        let source = MapSource::default();
        effective(&source, "octo/.github").await;
        assert_eq!(source.asked(), [format!("octo/.github:{P}")]);
    }

    #[tokio::test]
    async fn forbidden_files_mean_the_defaults() {
        let source = MapSource {
            forbidden: vec!["octo/app".into(), "octo/.github".into()],
            ..MapSource::default()
        };
        let found = effective(&source, "octo/app").await;
        assert_eq!(found, Effective::defaults(RepoSettings::default()));
    }

    #[tokio::test]
    async fn extends_chains_merge_like_probot() {
        let source = MapSource::with(&[
            (
                "octo/app",
                P,
                "_extends: base\nmarkers:\n  skip: [LOCAL]\nsources: [body]\n",
            ),
            (
                "octo/base",
                P,
                "_extends: other/shared:conf/tasks.yml\nwhen_incomplete: failure\nmarkers:\n  skip: [BASE, LOCAL]\n  case_sensitive: false\n",
            ),
            (
                "other/shared",
                "conf/tasks.yml",
                "when_incomplete: neutral\nfirst_check_delay: 30s\nsources: [comments, body]\n",
            ),
        ]);
        let found = effective(&source, "octo/app").await;
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let s = &found.settings;
        assert_eq!(s.when_incomplete, WhenIncomplete::Failure, "nearer wins");
        assert_eq!(s.first_check_delay, Duration::from_secs(30));
        assert_eq!(s.markers.skip, ["BASE", "LOCAL"], "base first, no repeats");
        assert!(!s.markers.case_sensitive);
        assert_eq!(
            s.markers.optional,
            ["OPTIONAL"],
            "unset keys keep the default"
        );
        assert_eq!(s.sources, [Source::Comments, Source::Body]);
        assert_eq!(
            found.files,
            [
                FileRef::new("octo/app", P),
                FileRef::new("octo/base", P),
                FileRef::new("other/shared", "conf/tasks.yml"),
            ]
        );
    }

    #[tokio::test]
    async fn loops_missing_targets_and_long_chains_are_errors_with_defaults() {
        let looping = MapSource::with(&[
            ("octo/app", P, "_extends: a\nwhen_incomplete: failure\n"),
            ("octo/a", P, "_extends: octo/app\n"),
        ]);
        let found = effective(&looping, "octo/app").await;
        assert_eq!(found.settings, RepoSettings::default());
        assert_eq!(
            found
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [format!(
                "octo/a:{P}: _extends: extends octo/app:{P}, which is already part of these settings (a loop)"
            )]
        );

        let missing = MapSource::with(&[("octo/app", P, "_extends: gone\n")]);
        let found = effective(&missing, "octo/app").await;
        assert!(
            found.errors[0].message.contains("does not exist"),
            "{found:?}"
        );

        let mut chain = vec![];
        for i in 0..8 {
            chain.push((format!("octo/r{i}"), format!("_extends: r{}\n", i + 1)));
        }
        let source = MapSource::default();
        for (repo, text) in &chain {
            source.put(repo, P, text);
        }
        let found = effective(&source, "octo/r0").await;
        assert!(
            found.errors[0].message.contains("at most 5 times"),
            "{found:?}"
        );
        assert_eq!(source.asked().len(), MAX_EXTENDS + 1);
    }

    #[tokio::test]
    async fn a_broken_file_gives_the_defaults_and_every_error() {
        let source = MapSource::with(&[(
            "octo/app",
            P,
            "when_incomplete: failure\ncolour: blue\nmarkers: []\n",
        )]);
        let found = effective(&source, "octo/app").await;
        assert_eq!(found.settings, RepoSettings::default());
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with(&format!("octo/app:{P}:2:1: colour: unknown key")));
        assert!(found.error_report().contains("the defaults were used"));
    }

    #[tokio::test]
    async fn the_cache_asks_nothing_while_fresh_and_revalidates_by_etag() {
        use crate::repo_settings::SettingsCache;
        let source = MapSource::with(&[("octo/app", P, "when_incomplete: failure\n")]);
        let repo = RepoName("octo/app".into());

        let fresh = SettingsCache::new(RepoSettings::default(), Duration::from_secs(3600));
        let (first, cost) = fresh.lookup(&source, &repo).await.unwrap();
        assert!(cost.asked_github);
        let (second, cost) = fresh.lookup(&source, &repo).await.unwrap();
        assert!(!cost.asked_github);
        assert_eq!(first, second);
        assert_eq!(source.asked().len(), 1);

        let stale = SettingsCache::new(RepoSettings::default(), Duration::ZERO);
        stale.lookup(&source, &repo).await.unwrap();
        let (again, cost) = stale.lookup(&source, &repo).await.unwrap();
        assert_eq!(cost.not_modified, 1);
        assert_eq!(again.settings.when_incomplete, WhenIncomplete::Failure);
        let last = source.requests.lock().unwrap().last().cloned().unwrap();
        assert!(last.1.is_some(), "sent If-None-Match");

        // A push touching the file drops what was made from it.
        source.put("octo/app", P, "when_incomplete: neutral\n");
        let push = crate::event::Push {
            installation: None,
            repo: repo.clone(),
            to_default_branch: true,
            paths: [P.to_owned()].into(),
            paths_incomplete: false,
        };
        assert_eq!(fresh.invalidate_push(&push), 1);
        let (changed, cost) = fresh.lookup(&source, &repo).await.unwrap();
        assert!(cost.asked_github && cost.not_modified == 0);
        assert_eq!(changed.settings.when_incomplete, WhenIncomplete::Neutral);
    }

    #[tokio::test]
    async fn the_cache_keeps_a_bounded_number_of_repositories() {
        use crate::repo_settings::SettingsCache;
        let source = MapSource::default();
        let cache =
            SettingsCache::new(RepoSettings::default(), Duration::from_secs(3600)).with_capacity(3);
        for i in 0..5 {
            cache
                .for_repo(&source, &RepoName(format!("octo/r{i}")))
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), 3);
        // The newest are kept: asking again for the last costs nothing.
        let (_, cost) = cache
            .lookup(&source, &RepoName("octo/r4".into()))
            .await
            .unwrap();
        assert!(!cost.asked_github);
    }

    #[tokio::test]
    async fn an_outage_serves_the_last_settings_read_or_fails_without_any() {
        use crate::repo_settings::SettingsCache;
        use std::sync::atomic::Ordering;
        let source = MapSource::with(&[("octo/app", P, "when_incomplete: failure\n")]);
        let cache = SettingsCache::new(RepoSettings::default(), Duration::ZERO);
        let repo = RepoName("octo/app".into());
        cache.for_repo(&source, &repo).await.unwrap();
        source.down.store(true, Ordering::SeqCst);
        let stale = cache.for_repo(&source, &repo).await.unwrap();
        assert_eq!(stale.settings.when_incomplete, WhenIncomplete::Failure);
        let error = cache
            .for_repo(&source, &RepoName("octo/new".into()))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
    }
}
