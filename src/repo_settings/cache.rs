//! Each repository's settings, kept in the process between pull requests.
//!
//! A result younger than `max_age` is used without asking GitHub. An older
//! one is revalidated: every file it was made of is asked for again with
//! `If-None-Match`, and GitHub answers `304` (which costs no rate limit) while
//! the file is unchanged. A `push` to a default branch that touches one of
//! those files drops the result at once ([`SettingsCache::invalidate_push`]).
//!
//! Workers share no in-process state, so each worker has its own cache: a
//! worker that missed a push (another worker got it) sees the change after
//! at most `max_age`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::resolve::{self, FileRef, KnownFile, SettingsSource};
use super::{Effective, RepoSettings};
use crate::event::Push;
use crate::github::{GitHubError, RepoName};

/// How long a result is used before it is revalidated, by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(5 * 60);

/// Repositories whose settings one worker keeps at most; beyond this the
/// longest unchecked results make room (they are read again when needed).
pub const MAX_CACHED_REPOS: usize = 10_000;

/// The settings of the repositories seen lately.
pub struct SettingsCache {
    defaults: RepoSettings,
    max_age: Duration,
    capacity: usize,
    /// A std Mutex: held for map operations only, never across a request.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    repos: HashMap<RepoName, Entry>,
    /// Files read, by ETag, for conditional requests.
    files: HashMap<FileRef, KnownFile>,
}

struct Entry {
    effective: Arc<Effective>,
    checked_at: Instant,
    /// Every file asked for, present or not.
    depends_on: Vec<FileRef>,
}

/// Counters, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lookup {
    /// Whether GitHub was asked at all.
    pub asked_github: bool,
    /// Requests answered 304.
    pub not_modified: usize,
}

impl SettingsCache {
    /// `defaults` are what keys no file sets get (the server's
    /// `IGNORED_BOTS` among them).
    pub fn new(defaults: RepoSettings, max_age: Duration) -> SettingsCache {
        SettingsCache {
            defaults,
            max_age,
            capacity: MAX_CACHED_REPOS,
            state: Mutex::default(),
        }
    }

    /// Keeps at most `capacity` repositories instead of [`MAX_CACHED_REPOS`].
    pub fn with_capacity(mut self, capacity: usize) -> SettingsCache {
        self.capacity = capacity.max(1);
        self
    }

    pub fn defaults(&self) -> &RepoSettings {
        &self.defaults
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the maps valid, so a panic elsewhere while
        // the lock was held does not make them unusable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings of `repo`, read through `source` when the cached ones
    /// are missing or older than `max_age`. `Err` only when GitHub could not
    /// answer and nothing is cached: a stale result is better than none.
    pub async fn for_repo<S: SettingsSource>(
        &self,
        source: &S,
        repo: &RepoName,
    ) -> Result<Arc<Effective>, GitHubError> {
        self.lookup(source, repo)
            .await
            .map(|(effective, _)| effective)
    }

    /// [`SettingsCache::for_repo`], telling what it cost.
    pub async fn lookup<S: SettingsSource>(
        &self,
        source: &S,
        repo: &RepoName,
    ) -> Result<(Arc<Effective>, Lookup), GitHubError> {
        let (cached, known) = {
            let state = self.state();
            let cached = state.repos.get(repo).map(|entry| {
                (
                    Arc::clone(&entry.effective),
                    entry.checked_at.elapsed() < self.max_age,
                )
            });
            if let Some((effective, true)) = cached {
                return Ok((effective, Lookup::default()));
            }
            (cached.map(|(effective, _)| effective), state.files.clone())
        };
        let resolution = match resolve::resolve(source, repo, &self.defaults, &known).await {
            Ok(resolution) => resolution,
            Err(error) => {
                return match cached {
                    Some(stale) => {
                        tracing::warn!(repository = %repo, %error, "settings not revalidated; using the last ones read");
                        Ok((
                            stale,
                            Lookup {
                                asked_github: true,
                                not_modified: 0,
                            },
                        ))
                    }
                    None => Err(error),
                };
            }
        };
        let effective = Arc::new(resolution.effective);
        let mut state = self.state();
        let mut depends_on = Vec::with_capacity(resolution.probed.len());
        for (file, memo) in resolution.probed {
            match memo {
                Some(memo) => state.files.insert(file.clone(), memo),
                None => state.files.remove(&file),
            };
            depends_on.push(file);
        }
        if state.repos.len() >= self.capacity && !state.repos.contains_key(repo) {
            let oldest = state
                .repos
                .iter()
                .min_by_key(|(_, entry)| entry.checked_at)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                state.repos.remove(&oldest);
            }
            let still_used: std::collections::HashSet<&FileRef> = state
                .repos
                .values()
                .flat_map(|entry| entry.depends_on.iter())
                .collect();
            let unused: Vec<FileRef> = state
                .files
                .keys()
                .filter(|file| !still_used.contains(file) && !depends_on.contains(file))
                .cloned()
                .collect();
            for file in unused {
                state.files.remove(&file);
            }
        }
        state.repos.insert(
            repo.clone(),
            Entry {
                effective: Arc::clone(&effective),
                checked_at: Instant::now(),
                depends_on,
            },
        );
        Ok((
            effective,
            Lookup {
                asked_github: true,
                not_modified: resolution.not_modified,
            },
        ))
    }

    /// How many repositories' settings are kept now.
    pub fn len(&self) -> usize {
        self.state().repos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every result made from `file` (present or absent), and the
    /// file's text: the next lookup reads it afresh.
    pub fn invalidate(&self, file: &FileRef) {
        let mut state = self.state();
        state.files.remove(file);
        state
            .repos
            .retain(|_, entry| !entry.depends_on.contains(file));
    }

    /// What a `push` means for the cache: a push to the default branch that
    /// may touch a file some result was made from invalidates it. Returns
    /// how many results were dropped.
    pub fn invalidate_push(&self, push: &Push) -> usize {
        if !push.to_default_branch {
            return 0;
        }
        let touched: Vec<FileRef> = {
            let state = self.state();
            let mut files: Vec<FileRef> = state
                .repos
                .values()
                .flat_map(|entry| entry.depends_on.iter())
                .filter(|file| {
                    // GitHub's names are case-insensitive; `_extends` may spell them otherwise.
                    file.repo.0.eq_ignore_ascii_case(&push.repo.0) && push.may_touch(&file.path)
                })
                .cloned()
                .collect();
            files.sort();
            files.dedup();
            files
        };
        let before = self.state().repos.len();
        for file in &touched {
            self.invalidate(file);
        }
        before - self.state().repos.len()
    }
}
