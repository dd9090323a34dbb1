//! Per-repository settings read from the fake GitHub through the contents
//! API: the lookup order, every key, broken files, missing permissions, and
//! the cache's conditional requests.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use support::bot::{APP_ID, PRIVATE_KEY, PUBLIC_KEY};
use support::fake_github::{ContentsAccess, FakeGitHub};
use task_list_bot::check::Source;
use task_list_bot::config::AppCredentials;
use task_list_bot::event::Push;
use task_list_bot::github::{GitHub, InstallationId, Refusal, RepoName, RetryPolicy};
use task_list_bot::repo_settings::{
    ContentsSource, Effective, FileRef, RepoSettings, SETTINGS_PATH, SettingsCache, WhenIncomplete,
};

const INSTALLATION: u64 = 7;

struct World {
    github: FakeGitHub,
    client: GitHub,
}

impl World {
    async fn start() -> World {
        let github = FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await;
        let app = AppCredentials {
            app_id: APP_ID,
            private_key: PRIVATE_KEY.into(),
        };
        let client = GitHub::new(
            &github.base_url(),
            &app,
            RetryPolicy::new(Duration::from_secs(5)),
        )
        .unwrap();
        World { github, client }
    }

    fn source(&self) -> ContentsSource {
        let installation = self.client.installation(InstallationId(INSTALLATION));
        ContentsSource::for_installation(&installation)
    }

    async fn settings(&self, repo: &str) -> Arc<Effective> {
        let cache = SettingsCache::new(RepoSettings::default(), Duration::from_secs(60));
        cache
            .for_repo(&self.source(), &RepoName(repo.into()))
            .await
            .unwrap()
    }

    /// (path without the API prefix, status) of each contents request.
    fn contents_requests(&self) -> Vec<(String, u16)> {
        self.github
            .contents_requests()
            .into_iter()
            .map(|r| {
                let path = r.path.trim_start_matches("/api/v3").to_owned();
                (path, r.status)
            })
            .collect()
    }
}

fn contents_path(repo: &str, path: &str) -> String {
    format!("/repos/{repo}/contents/{path}")
}

#[tokio::test]
async fn the_repository_file_wins_then_the_owners_github_repository_then_extends() {
    let world = World::start().await;
    for repo in ["octo/app", "octo/other", "octo/.github", "octo/base"] {
        world.github.add_repo(INSTALLATION, repo);
    }
    world
        .github
        .set_contents_access(INSTALLATION, ContentsAccess::Read);
    world
        .github
        .put_file("octo/app", SETTINGS_PATH, "when_incomplete: failure\n");
    world.github.put_file(
        "octo/.github",
        SETTINGS_PATH,
        "_extends: base:shared/tasks.yml\nmarkers:\n  skip: [ORG]\n",
    );
    world.github.put_file(
        "octo/base",
        "shared/tasks.yml",
        "when_incomplete: neutral\nmarkers:\n  skip: [BASE]\n  optional: [MAYBE]\n",
    );

    let own = world.settings("octo/app").await;
    assert!(own.errors.is_empty(), "{:?}", own.errors);
    assert_eq!(own.settings.when_incomplete, WhenIncomplete::Failure);
    assert_eq!(own.settings.markers.skip, ["POST-MERGE", "N/A"]);
    assert_eq!(own.files, [FileRef::new("octo/app", SETTINGS_PATH)]);

    let inherited = world.settings("octo/other").await;
    assert!(inherited.errors.is_empty(), "{:?}", inherited.errors);
    assert_eq!(inherited.settings.when_incomplete, WhenIncomplete::Neutral);
    assert_eq!(inherited.settings.markers.skip, ["BASE", "ORG"]);
    assert_eq!(inherited.settings.markers.optional, ["MAYBE"]);
    assert_eq!(
        inherited.files,
        [
            FileRef::new("octo/.github", SETTINGS_PATH),
            FileRef::new("octo/base", "shared/tasks.yml"),
        ]
    );
    let other_requests: Vec<(String, u16)> = world
        .contents_requests()
        .into_iter()
        .filter(|(path, _)| !path.starts_with("/repos/octo/app/"))
        .collect();
    assert_eq!(
        other_requests,
        [
            (contents_path("octo/other", SETTINGS_PATH), 404),
            (contents_path("octo/.github", SETTINGS_PATH), 200),
            (contents_path("octo/base", "shared/tasks.yml"), 200),
        ]
    );
}

#[tokio::test]
async fn every_key_is_read_from_github() {
    let world = World::start().await;
    world.github.add_repo(INSTALLATION, "octo/app");
    world.github.put_file(
        "octo/app",
        SETTINGS_PATH,
        "\
when_incomplete: action_required
markers:
  skip: [WONTFIX]
  optional: [nice-to-have]
  case_sensitive: false
sources: [body, review_comments]
ignored_bots: [dependabot]
count_renovate_body: true
first_check_delay: 2m
check_name: tasks / complete
",
    );
    let found = world.settings("octo/app").await;
    assert!(found.errors.is_empty(), "{:?}", found.errors);
    let s = &found.settings;
    assert_eq!(s.when_incomplete, WhenIncomplete::ActionRequired);
    assert_eq!(s.markers.skip, ["WONTFIX"]);
    assert_eq!(s.markers.optional, ["nice-to-have"]);
    assert!(!s.markers.case_sensitive);
    assert_eq!(s.sources, [Source::Body, Source::ReviewComments]);
    assert_eq!(s.ignored_bots, ["dependabot"]);
    assert!(s.count_renovate_body);
    assert_eq!(s.first_check_delay, Duration::from_secs(120));
    assert_eq!(s.check_name, "tasks / complete");
}

#[tokio::test]
async fn a_broken_file_gives_the_defaults_and_says_where() {
    let world = World::start().await;
    world.github.add_repo(INSTALLATION, "octo/app");
    world.github.put_file(
        "octo/app",
        SETTINGS_PATH,
        "when_incomplete: failure\nsources: body\n",
    );
    let found = world.settings("octo/app").await;
    assert_eq!(found.settings, RepoSettings::default());
    let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [format!(
            "octo/app:{SETTINGS_PATH}:2:10: sources: expected a list of sources (one of body, comments, reviews, review_comments), found a string"
        )]
    );
    assert!(found.error_report().contains("sources: expected a list"));
}

#[tokio::test]
async fn no_permission_no_file_and_no_github_repository_all_mean_the_defaults() {
    let world = World::start().await;
    world.github.add_repo(INSTALLATION, "octo/app");
    world
        .github
        .put_file("octo/app", SETTINGS_PATH, "when_incomplete: failure\n");
    world
        .github
        .set_contents_access(INSTALLATION, ContentsAccess::None);
    let forbidden = world.settings("octo/app").await;
    assert_eq!(*forbidden, Effective::defaults(RepoSettings::default()));
    assert_eq!(
        world.contents_requests(),
        [
            (contents_path("octo/app", SETTINGS_PATH), 403),
            // No .github repository in this installation: 404.
            (contents_path("octo/.github", SETTINGS_PATH), 404),
        ]
    );

    // Single file access covers the settings path, not an _extends elsewhere.
    world.github.set_contents_access(
        INSTALLATION,
        ContentsAccess::SingleFile(vec![SETTINGS_PATH.into()]),
    );
    world.github.add_repo(INSTALLATION, "octo/base");
    world
        .github
        .put_file("octo/base", "other.yml", "check_name: x\n");
    world
        .github
        .put_file("octo/app", SETTINGS_PATH, "_extends: base:other.yml\n");
    let found = world.settings("octo/app").await;
    assert_eq!(found.settings, RepoSettings::default());
    assert!(
        found.errors[0]
            .message
            .contains("does not exist or cannot be read"),
        "{:?}",
        found.errors
    );
}

/// A refused installation token says nothing of the settings file: the
/// read fails with GitHub's refusal of the token (so the item ends as
/// suspended), instead of the defaults being taken and kept as if the file
/// were missing.
#[tokio::test]
async fn a_refused_token_is_not_a_missing_settings_file() {
    let world = World::start().await;
    world.github.add_repo(INSTALLATION, "octo/app");
    world
        .github
        .put_file("octo/app", SETTINGS_PATH, "when_incomplete: failure\n");
    world.github.suspend_installation(INSTALLATION);
    let cache = SettingsCache::new(RepoSettings::default(), Duration::from_secs(60));
    let repo = RepoName("octo/app".into());

    let error = cache.for_repo(&world.source(), &repo).await.unwrap_err();
    assert!(error.refused_the_token(), "{error}");
    assert_eq!(error.refusal(), Some(Refusal::Suspended), "{error}");
    assert!(
        error.to_string().contains(&format!(
            "POST /app/installations/{INSTALLATION}/access_tokens"
        )),
        "{error}"
    );
    assert_eq!(world.contents_requests(), [], "no file was asked for");

    world.github.unsuspend_installation(INSTALLATION);
    let read = cache.for_repo(&world.source(), &repo).await.unwrap();
    assert_eq!(read.settings.when_incomplete, WhenIncomplete::Failure);
}

#[tokio::test]
async fn the_cache_asks_nothing_while_fresh_then_revalidates_with_a_free_304() {
    let world = World::start().await;
    world.github.add_repo(INSTALLATION, "octo/app");
    world
        .github
        .put_file("octo/app", SETTINGS_PATH, "when_incomplete: neutral\n");
    let repo = RepoName("octo/app".into());
    let source = world.source();

    let fresh = SettingsCache::new(RepoSettings::default(), Duration::from_secs(3600));
    fresh.for_repo(&source, &repo).await.unwrap();
    let (again, cost) = fresh.lookup(&source, &repo).await.unwrap();
    assert!(!cost.asked_github);
    assert_eq!(again.settings.when_incomplete, WhenIncomplete::Neutral);
    assert_eq!(world.contents_requests().len(), 1);

    let revalidating = SettingsCache::new(RepoSettings::default(), Duration::ZERO);
    revalidating.for_repo(&source, &repo).await.unwrap();
    let (again, cost) = revalidating.lookup(&source, &repo).await.unwrap();
    assert_eq!(cost.not_modified, 1);
    assert_eq!(again.settings.when_incomplete, WhenIncomplete::Neutral);
    assert_eq!(
        world.contents_requests().last().unwrap(),
        &(contents_path("octo/app", SETTINGS_PATH), 304)
    );

    // A push that changes the file makes the fresh cache read it again.
    world
        .github
        .put_file("octo/app", SETTINGS_PATH, "when_incomplete: failure\n");
    let push = Push::decode(
        serde_json::json!({
            "ref": "refs/heads/main",
            "commits": [{"added": [], "modified": [SETTINGS_PATH], "removed": []}],
            "repository": {"full_name": "octo/app", "default_branch": "main"},
            "installation": {"id": INSTALLATION}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(fresh.invalidate_push(&push), 1);
    let changed = fresh.for_repo(&source, &repo).await.unwrap();
    assert_eq!(changed.settings.when_incomplete, WhenIncomplete::Failure);
}

#[tokio::test]
async fn a_304_costs_no_rate_limit_and_raw_answers_carry_the_etag() {
    let world = World::start().await;
    world.github.add_repo(INSTALLATION, "octo/app");
    world
        .github
        .put_file("octo/app", SETTINGS_PATH, "check_name: x\n");
    let installation = world.client.installation(InstallationId(INSTALLATION));
    let http = installation.requester();
    let path = contents_path("octo/app", SETTINGS_PATH);
    let used = |answer: &task_list_bot::github::Answer| -> u32 {
        answer.headers["x-ratelimit-used"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };

    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static(task_list_bot::repo_settings::contents::RAW_MEDIA_TYPE),
    );
    let first = http.get_conditional(&path, &headers).await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.body, b"check_name: x\n");
    let etag = first.headers["etag"].clone();
    assert_eq!(
        Some(etag.to_str().unwrap().to_owned()),
        world.github.file_etag("octo/app", SETTINGS_PATH)
    );

    headers.insert(http::header::IF_NONE_MATCH, etag);
    let second = http.get_conditional(&path, &headers).await.unwrap();
    assert_eq!(second.status, 304);
    assert!(second.body.is_empty());
    assert_eq!(used(&second), used(&first), "a 304 is not charged");

    world
        .github
        .put_file("octo/app", SETTINGS_PATH, "check_name: y\n");
    let third = http.get_conditional(&path, &headers).await.unwrap();
    assert_eq!(third.status, 200);
    assert_eq!(used(&third), used(&first) + 1);
}
