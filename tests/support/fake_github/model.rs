use super::*;

pub(super) struct Model {
    /// Repository files and single-file permissions (`contents.rs`).
    pub(super) contents: Contents,
    pub(super) next_id: u64,
    pub(super) next_repo_id: u64,
    /// Keyed by [`repo_key`].
    pub(super) repos: BTreeMap<String, Repo>,
    pub(super) tokens: HashMap<String, Token>,
    pub(super) token_ttl: Duration,
    pub(super) issued: Vec<IssuedToken>,
    pub(super) check_runs: Vec<StoredCheckRun>,
    /// Check runs before this index were recorded before the last
    /// `reset_records` and are no longer reported (but still listed by the API).
    pub(super) check_run_records_from: usize,
    /// GitHub makes one check suite per app, repository and head SHA.
    pub(super) suites: HashMap<(String, String), u64>,
    pub(super) requests: Vec<RecordedRequest>,
    pub(super) next_request_seq: u64,
    pub(super) faults: VecDeque<PendingFault>,
    pub(super) rate: HashMap<Bucket, RateWindow>,
    pub(super) deliveries: Vec<Delivery>,
    pub(super) redeliveries: Vec<RedeliveryAttempt>,
    pub(super) redelivery_status_code: u16,
    /// Redeliveries requested, listed once their time has come.
    pub(super) scheduled_redeliveries: Vec<(Instant, NewDelivery)>,
    /// Secondary limits and outages.
    pub(super) limits: Limits,
    /// Old [`repo_key`]s of renamed or transferred repositories → their id.
    pub(super) renamed: HashMap<String, u64>,
    /// Each installation's permissions; absent: [`default_permissions`].
    pub(super) permissions: HashMap<u64, BTreeMap<String, String>>,
    pub(super) suspended: BTreeSet<u64>,
    /// Lower-cased logins of deleted accounts.
    pub(super) deleted_users: BTreeSet<String>,
    /// See [`FakeGitHub::set_strict_headers`].
    pub(super) strict_headers: bool,
    pub(super) openapi_violations: Vec<String>,
}

pub(super) struct Repo {
    pub(super) id: u64,
    pub(super) owner: String,
    pub(super) name: String,
    pub(super) installation_id: u64,
    pub(super) created_at: DateTime<Utc>,
    pub(super) base_sha: String,
    /// Every SHA that check runs may be created on.
    pub(super) commits: BTreeSet<String>,
    /// Issues and pull requests share one number space, as on GitHub.
    pub(super) threads: BTreeMap<u64, Thread>,
}

/// An issue or pull request with everything said on it.
pub(super) struct Thread {
    pub(super) number: u64,
    pub(super) issue_id: u64,
    pub(super) title: String,
    pub(super) body: Option<String>,
    pub(super) author: String,
    pub(super) state: PrState,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) closed_at: Option<DateTime<Utc>>,
    pub(super) pull: Option<PullFields>,
    pub(super) comments: Vec<IssueComment>,
    pub(super) reviews: Vec<Review>,
    pub(super) review_comments: Vec<ReviewComment>,
}

pub(super) struct PullFields {
    pub(super) id: u64,
    pub(super) head_sha: String,
    pub(super) head_ref: String,
    pub(super) base_ref: String,
    pub(super) merged: bool,
    pub(super) merged_at: Option<DateTime<Utc>>,
    pub(super) draft: bool,
}

pub(super) struct IssueComment {
    pub(super) id: u64,
    pub(super) author: String,
    pub(super) body: String,
    pub(super) created_at: DateTime<Utc>,
}

pub(super) struct Review {
    pub(super) id: u64,
    pub(super) author: String,
    pub(super) body: String,
    pub(super) state: ReviewState,
    pub(super) commit_id: String,
    pub(super) submitted_at: DateTime<Utc>,
}

pub(super) struct ReviewComment {
    pub(super) id: u64,
    pub(super) review_id: u64,
    pub(super) author: String,
    pub(super) body: String,
    pub(super) commit_id: String,
    pub(super) created_at: DateTime<Utc>,
}

pub(super) struct Token {
    pub(super) installation_id: u64,
    pub(super) expires_at: SystemTime,
    pub(super) revoked: bool,
    /// `Some` when the token was scoped to some repositories ([`repo_key`]s).
    pub(super) scope: Option<BTreeSet<String>>,
}

pub(super) struct PendingFault {
    pub(super) endpoint: Endpoint,
    pub(super) fault: Fault,
    pub(super) remaining: usize,
}

pub(super) struct StoredCheckRun {
    pub(super) id: u64,
    pub(super) repo_key: String,
    pub(super) repo_full_name: String,
    pub(super) installation_id: u64,
    pub(super) suite_id: u64,
    pub(super) head_sha: String,
    pub(super) run: ValidCheckRun,
    pub(super) body: Value,
    pub(super) received_at: Instant,
}

impl StoredCheckRun {
    pub(super) fn record(&self) -> RecordedCheckRun {
        RecordedCheckRun {
            id: self.id,
            repo: self.repo_full_name.clone(),
            installation_id: self.installation_id,
            head_sha: self.head_sha.clone(),
            name: self.run.name.clone(),
            body: self.body.clone(),
            received_at: self.received_at,
        }
    }
}

impl Model {
    pub(super) fn new() -> Model {
        Model {
            contents: Contents::default(),
            next_id: 1001,
            next_repo_id: 500_001,
            repos: BTreeMap::new(),
            tokens: HashMap::new(),
            token_ttl: DEFAULT_TOKEN_TTL,
            issued: Vec::new(),
            check_runs: Vec::new(),
            check_run_records_from: 0,
            suites: HashMap::new(),
            requests: Vec::new(),
            next_request_seq: 0,
            faults: VecDeque::new(),
            rate: HashMap::new(),
            deliveries: Vec::new(),
            redeliveries: Vec::new(),
            redelivery_status_code: 200,
            scheduled_redeliveries: Vec::new(),
            limits: Limits::default(),
            renamed: HashMap::new(),
            permissions: HashMap::new(),
            suspended: BTreeSet::new(),
            deleted_users: BTreeSet::new(),
            strict_headers: true,
            openapi_violations: Vec::new(),
        }
    }

    /// One id sequence for every kind of object keeps ids unique across
    /// kinds, so a test mixing up a comment id and a review id fails.
    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn repo(&self, full_name: &str) -> Result<&Repo, ModelError> {
        match self.repos.get(&repo_key(full_name)) {
            Some(repo) => Ok(repo),
            None => model_error(format!("repository {full_name} was not added")),
        }
    }

    pub(super) fn repo_mut(&mut self, full_name: &str) -> Result<&mut Repo, ModelError> {
        match self.repos.get_mut(&repo_key(full_name)) {
            Some(repo) => Ok(repo),
            None => model_error(format!("repository {full_name} was not added")),
        }
    }

    pub(super) fn installation_exists(&self, installation_id: u64) -> bool {
        self.repos
            .values()
            .any(|r| r.installation_id == installation_id)
    }

    pub(super) fn add_repo(
        &mut self,
        installation_id: u64,
        full_name: &str,
    ) -> Result<RepoInfo, ModelError> {
        let Some((owner, name)) = full_name.split_once('/') else {
            return model_error(format!("{full_name:?} is not owner/name"));
        };
        if owner.is_empty() || name.is_empty() || name.contains('/') {
            return model_error(format!("{full_name:?} is not owner/name"));
        }
        if let Ok(repo) = self.repo_mut(full_name) {
            repo.installation_id = installation_id;
            return Ok(repo.info());
        }
        self.next_repo_id += 1;
        let base_sha = fake_sha(&format!("base:{}", repo_key(full_name)));
        let repo = Repo {
            id: self.next_repo_id,
            owner: owner.to_owned(),
            name: name.to_owned(),
            installation_id,
            created_at: Utc::now(),
            commits: BTreeSet::from([base_sha.clone()]),
            base_sha,
            threads: BTreeMap::new(),
        };
        let info = repo.info();
        self.repos.insert(repo_key(full_name), repo);
        Ok(info)
    }

    pub(super) fn upsert_pull(
        &mut self,
        full_name: &str,
        pull: PullRequest,
    ) -> Result<(), ModelError> {
        let issue_id = self.next_id();
        let pull_id = self.next_id();
        let repo = self.repo_mut(full_name)?;
        let now = Utc::now();
        let head_sha = if pull.head_sha.is_empty() {
            fake_sha(&format!("head:{}#{}", repo_key(full_name), pull.number))
        } else {
            pull.head_sha.clone()
        };
        let head_ref = if pull.head_ref.is_empty() {
            format!("pr-{}", pull.number)
        } else {
            pull.head_ref.clone()
        };
        // GitHub has no open-and-merged pull requests.
        let state = if pull.merged {
            PrState::Closed
        } else {
            pull.state
        };
        repo.commits.insert(head_sha.clone());
        let thread = repo
            .threads
            .entry(pull.number)
            .or_insert_with(|| Thread::new(pull.number, issue_id, &pull.author, now));
        let merged_at = match &thread.pull {
            Some(p) if p.merged && pull.merged => p.merged_at,
            _ if pull.merged => Some(now),
            _ => None,
        };
        let id = thread.pull.as_ref().map_or(pull_id, |p| p.id);
        thread.title = pull.title;
        thread.body = pull.body;
        thread.author = pull.author;
        thread.state = state;
        thread.updated_at = now;
        thread.closed_at = match state {
            // Closing keeps the time it was first closed.
            PrState::Closed => thread.closed_at.or(Some(now)),
            PrState::Open => None,
        };
        thread.pull = Some(PullFields {
            id,
            head_sha,
            head_ref,
            base_ref: pull.base_ref,
            merged: pull.merged,
            merged_at,
            draft: pull.draft,
        });
        Ok(())
    }

    pub(super) fn add_issue(
        &mut self,
        full_name: &str,
        number: u64,
        title: &str,
        author: &str,
        body: &str,
    ) -> Result<(), ModelError> {
        let issue_id = self.next_id();
        let repo = self.repo_mut(full_name)?;
        let now = Utc::now();
        let thread = repo
            .threads
            .entry(number)
            .or_insert_with(|| Thread::new(number, issue_id, author, now));
        if thread.pull.is_some() {
            return model_error(format!("#{number} of {full_name} is a pull request"));
        }
        thread.title = title.to_owned();
        thread.author = author.to_owned();
        thread.body = Some(body.to_owned());
        thread.updated_at = now;
        Ok(())
    }

    pub(super) fn thread_mut(
        &mut self,
        full_name: &str,
        number: u64,
    ) -> Result<&mut Thread, ModelError> {
        let repo = self.repo_mut(full_name)?;
        match repo.threads.get_mut(&number) {
            Some(thread) => Ok(thread),
            None => model_error(format!(
                "{full_name} has no issue or pull request #{number}"
            )),
        }
    }

    pub(super) fn pull_thread_mut(
        &mut self,
        full_name: &str,
        number: u64,
    ) -> Result<&mut Thread, ModelError> {
        let thread = self.thread_mut(full_name, number)?;
        if thread.pull.is_none() {
            return model_error(format!(
                "#{number} of {full_name} is an issue, not a pull request"
            ));
        }
        Ok(thread)
    }

    pub(super) fn add_issue_comment(
        &mut self,
        full_name: &str,
        number: u64,
        author: &str,
        body: &str,
    ) -> Result<u64, ModelError> {
        let id = self.next_id();
        let thread = self.thread_mut(full_name, number)?;
        let now = Utc::now();
        thread.comments.push(IssueComment {
            id,
            author: author.to_owned(),
            body: body.to_owned(),
            created_at: now,
        });
        thread.updated_at = now;
        Ok(id)
    }

    pub(super) fn add_review(
        &mut self,
        full_name: &str,
        number: u64,
        author: &str,
        body: &str,
        state: ReviewState,
    ) -> Result<u64, ModelError> {
        let id = self.next_id();
        let thread = self.pull_thread_mut(full_name, number)?;
        let commit_id = thread.head_sha().to_owned();
        thread.reviews.push(Review {
            id,
            author: author.to_owned(),
            body: body.to_owned(),
            state,
            commit_id,
            submitted_at: Utc::now(),
        });
        Ok(id)
    }

    /// Returns `(comment id, review id)`.
    pub(super) fn add_review_comment(
        &mut self,
        full_name: &str,
        number: u64,
        author: &str,
        body: &str,
    ) -> Result<(u64, u64), ModelError> {
        let review_id = self.add_review(full_name, number, author, "", ReviewState::Commented)?;
        let id = self.next_id();
        let thread = self.pull_thread_mut(full_name, number)?;
        let commit_id = thread.head_sha().to_owned();
        thread.review_comments.push(ReviewComment {
            id,
            review_id,
            author: author.to_owned(),
            body: body.to_owned(),
            commit_id,
            created_at: Utc::now(),
        });
        Ok((id, review_id))
    }

    pub(super) fn add_commit(&mut self, full_name: &str, sha: &str) -> Result<(), ModelError> {
        self.repo_mut(full_name)?.commits.insert(sha.to_owned());
        Ok(())
    }

    // -- renames, permissions, suspension ----------------------------------

    pub(super) fn rename_repo(&mut self, old: &str, new: &str) -> Result<(), ModelError> {
        let Some((owner, name)) = new.split_once('/') else {
            return model_error(format!("{new:?} is not owner/name"));
        };
        if owner.is_empty() || name.is_empty() || name.contains('/') {
            return model_error(format!("{new:?} is not owner/name"));
        }
        let (old_key, new_key) = (repo_key(old), repo_key(new));
        if old_key != new_key && self.repos.contains_key(&new_key) {
            return model_error(format!("repository {new} exists already"));
        }
        let Some(mut repo) = self.repos.remove(&old_key) else {
            return model_error(format!("repository {old} was not added"));
        };
        repo.owner = owner.to_owned();
        repo.name = name.to_owned();
        let id = repo.id;
        let full_name = repo.full_name();
        self.repos.insert(new_key.clone(), repo);
        self.renamed.remove(&new_key);
        if old_key != new_key {
            self.renamed.insert(old_key.clone(), id);
        }
        for run in self.check_runs.iter_mut().filter(|r| r.repo_key == old_key) {
            run.repo_key.clone_from(&new_key);
            run.repo_full_name.clone_from(&full_name);
        }
        self.suites = std::mem::take(&mut self.suites)
            .into_iter()
            .map(|((key, sha), suite)| {
                let key = if key == old_key { new_key.clone() } else { key };
                ((key, sha), suite)
            })
            .collect();
        for scope in self.tokens.values_mut().filter_map(|t| t.scope.as_mut()) {
            if scope.remove(&old_key) {
                scope.insert(new_key.clone());
            }
        }
        Ok(())
    }

    pub(super) fn installation_permissions(
        &self,
        installation_id: u64,
    ) -> BTreeMap<String, String> {
        self.permissions
            .get(&installation_id)
            .cloned()
            .unwrap_or_else(default_permissions)
    }

    pub(super) fn installation_permissions_mut(
        &mut self,
        installation_id: u64,
    ) -> &mut BTreeMap<String, String> {
        self.permissions
            .entry(installation_id)
            .or_insert_with(default_permissions)
    }

    pub(super) fn revoke_permission(&mut self, installation_id: u64, permission: &str) {
        self.installation_permissions_mut(installation_id)
            .remove(permission);
    }

    pub(super) fn unsuspend_installation(&mut self, installation_id: u64) {
        self.suspended.remove(&installation_id);
    }

    pub(super) fn suspend_installation(&mut self, installation_id: u64) {
        self.suspended.insert(installation_id);
        for token in self
            .tokens
            .values_mut()
            .filter(|t| t.installation_id == installation_id)
        {
            token.revoked = true;
        }
    }

    // -- records --------------------------------------------------------------

    pub(super) fn record_arrival(&mut self, method: &str, path: &str, received_at: Instant) -> u64 {
        self.next_request_seq += 1;
        self.requests.push(RecordedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            status: 0,
            installation_id: None,
            endpoint: None,
            received_at,
            seq: self.next_request_seq,
        });
        self.next_request_seq
    }

    pub(super) fn recorded_request(&mut self, seq: u64) -> Option<&mut RecordedRequest> {
        // Recent requests are at the end; search from there.
        self.requests.iter_mut().rev().find(|r| r.seq == seq)
    }

    pub(super) fn record_route(
        &mut self,
        seq: u64,
        installation_id: Option<u64>,
        endpoint: Option<Endpoint>,
    ) {
        if let Some(request) = self.recorded_request(seq) {
            request.installation_id = installation_id;
            request.endpoint = endpoint;
        }
    }

    pub(super) fn record_status(&mut self, seq: u64, status: u16) {
        if let Some(request) = self.recorded_request(seq) {
            request.status = status;
        }
    }

    pub(super) fn check_run_records(&self) -> impl Iterator<Item = &StoredCheckRun> {
        self.check_runs.iter().skip(self.check_run_records_from)
    }

    pub(super) fn reset_records(&mut self) {
        self.requests.clear();
        self.issued.clear();
        self.redeliveries.clear();
        self.check_run_records_from = self.check_runs.len();
    }
}

impl Repo {
    pub(super) fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub(super) fn info(&self) -> RepoInfo {
        RepoInfo {
            id: self.id,
            full_name: self.full_name(),
            owner: self.owner.clone(),
            name: self.name.clone(),
            installation_id: self.installation_id,
            default_branch: "main".to_owned(),
        }
    }

    pub(super) fn find_issue_comment(&self, id: u64) -> Option<(&Thread, &IssueComment)> {
        self.threads
            .values()
            .find_map(|t| t.comments.iter().find(|c| c.id == id).map(|c| (t, c)))
    }

    pub(super) fn find_review(&self, id: u64) -> Option<(&Thread, &Review)> {
        self.threads
            .values()
            .find_map(|t| t.reviews.iter().find(|r| r.id == id).map(|r| (t, r)))
    }

    pub(super) fn find_review_comment(&self, id: u64) -> Option<(&Thread, &ReviewComment)> {
        self.threads.values().find_map(|t| {
            t.review_comments
                .iter()
                .find(|c| c.id == id)
                .map(|c| (t, c))
        })
    }

    /// Resolves a ref as `GET .../commits/{ref}/check-runs` does: a known
    /// SHA, a branch (a pull request's head or base) or `heads/...`.
    pub(super) fn resolve_ref(&self, git_ref: &str) -> Option<String> {
        if self.commits.contains(git_ref) {
            return Some(git_ref.to_owned());
        }
        let branch = git_ref
            .strip_prefix("refs/heads/")
            .or_else(|| git_ref.strip_prefix("heads/"))
            .unwrap_or(git_ref);
        self.threads.values().find_map(|t| {
            let pull = t.pull.as_ref()?;
            if pull.head_ref == branch {
                Some(pull.head_sha.clone())
            } else if pull.base_ref == branch {
                Some(self.base_sha.clone())
            } else {
                None
            }
        })
    }
}

impl Thread {
    pub(super) fn new(number: u64, issue_id: u64, author: &str, now: DateTime<Utc>) -> Thread {
        Thread {
            number,
            issue_id,
            title: String::new(),
            body: None,
            author: author.to_owned(),
            state: PrState::Open,
            created_at: now,
            updated_at: now,
            closed_at: None,
            pull: None,
            comments: Vec::new(),
            reviews: Vec::new(),
            review_comments: Vec::new(),
        }
    }

    pub(super) fn head_sha(&self) -> &str {
        self.pull.as_ref().map_or("", |p| p.head_sha.as_str())
    }

    pub(super) fn as_pull(&self) -> Option<PullRequest> {
        let pull = self.pull.as_ref()?;
        Some(PullRequest {
            number: self.number,
            title: self.title.clone(),
            body: self.body.clone(),
            head_sha: pull.head_sha.clone(),
            head_ref: pull.head_ref.clone(),
            base_ref: pull.base_ref.clone(),
            author: self.author.clone(),
            state: self.state,
            merged: pull.merged,
            draft: pull.draft,
        })
    }
}

/// The permissions the app asks for, and so what an installation grants
/// until a test revokes some.
pub(super) fn default_permissions() -> BTreeMap<String, String> {
    [
        ("checks", "write"),
        ("contents", "read"),
        ("issues", "read"),
        ("metadata", "read"),
        ("pull_requests", "read"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}
