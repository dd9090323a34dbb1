//! Checks every check run the fake recorded for a scenario: right name,
//! right commit, a title and status the pull request's state called for,
//! none missing, none repeating the one before.

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::Value;

use crate::fake_github::{FakeGitHub, RecordedCheckRun};
use crate::prs::{BenchPull, Tally};

const CHECK_NAME: &str = "task-list-completed";

/// What a pull request's checks must say.
#[derive(Clone, Debug)]
pub struct Expected {
    pub repo: String,
    pub number: u64,
    pub head_sha: String,
    /// Every state the pull request went through, oldest first; a write may
    /// describe any of them, the latest write must describe the last.
    pub history: Vec<Tally>,
}

impl Expected {
    pub fn of(pull: &BenchPull, history: Vec<Tally>) -> Expected {
        Expected {
            repo: pull.repo.clone(),
            number: pull.number,
            head_sha: pull.head_sha.clone(),
            history,
        }
    }

    fn final_tally(&self) -> Tally {
        self.history.last().copied().unwrap_or_default()
    }
}

/// The outcome for one scenario.
#[derive(Debug, Default)]
pub struct Verification {
    pub pulls: usize,
    pub check_runs: usize,
    pub problems: Vec<String>,
}

impl Verification {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn summary(&self) -> String {
        if self.is_ok() {
            format!(
                "OK: {} check runs on {} pull requests, all correct, none missing or repeated",
                self.check_runs, self.pulls
            )
        } else {
            format!(
                "FAILED ({} problems): {}",
                self.problems.len(),
                self.problems
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    }
}

/// The check runs recorded on the scenario's repositories, in arrival order.
pub fn recorded(fake: &FakeGitHub, expected: &[Expected]) -> Vec<RecordedCheckRun> {
    let repos: BTreeSet<&str> = expected.iter().map(|e| e.repo.as_str()).collect();
    let mut runs: Vec<RecordedCheckRun> = repos
        .into_iter()
        .flat_map(|repo| fake.check_runs(repo))
        .collect();
    runs.sort_by_key(|run| run.received_at);
    runs
}

/// Bursts of `opened` events: exactly one check per pull request, on its
/// head commit, saying what its body says.
pub fn exactly_one_each(fake: &FakeGitHub, expected: &[Expected]) -> Verification {
    verify(fake, expected, |pull, runs, problems| {
        if runs.len() != 1 {
            problems.push(format!(
                "{}#{}: {} check runs, expected exactly 1",
                pull.repo,
                pull.number,
                runs.len()
            ));
        }
    })
}

/// A realistic burst: the latest check of every pull request describes its
/// final state; no write repeats the one before it (a write the bot should
/// have skipped).
pub fn latest_correct(fake: &FakeGitHub, expected: &[Expected]) -> Verification {
    verify(fake, expected, |pull, runs, problems| {
        for pair in runs.windows(2) {
            if title(&pair[0]) == title(&pair[1]) {
                problems.push(format!(
                    "{}#{}: check run {} repeats check run {} ({:?})",
                    pull.repo,
                    pull.number,
                    pair[1].id,
                    pair[0].id,
                    title(&pair[1])
                ));
            }
        }
    })
}

/// Common checks, plus `per_pull` on each pull request's runs.
fn verify(
    fake: &FakeGitHub,
    expected: &[Expected],
    per_pull: impl Fn(&Expected, &[RecordedCheckRun], &mut Vec<String>),
) -> Verification {
    let runs = recorded(fake, expected);
    let mut problems = Vec::new();
    for run in &runs {
        let known = expected
            .iter()
            .any(|e| e.repo == run.repo && e.head_sha == run.head_sha);
        if !known {
            problems.push(format!(
                "check run {} on {} {} is on no pull request of the scenario",
                run.id, run.repo, run.head_sha
            ));
        }
    }
    for pull in expected {
        let own: Vec<RecordedCheckRun> = runs
            .iter()
            .filter(|run| run.repo == pull.repo && run.head_sha == pull.head_sha)
            .cloned()
            .collect();
        check_pull(pull, &own, &mut problems);
        per_pull(pull, &own, &mut problems);
    }
    Verification {
        pulls: expected.len(),
        check_runs: runs.len(),
        problems,
    }
}

fn check_pull(pull: &Expected, runs: &[RecordedCheckRun], problems: &mut Vec<String>) {
    let Some(latest) = runs.last() else {
        problems.push(format!("{}#{}: no check run", pull.repo, pull.number));
        return;
    };
    for run in runs {
        if let Some(problem) = content_problem(pull, run) {
            problems.push(format!(
                "{}#{} check run {}: {problem}",
                pull.repo, pull.number, run.id
            ));
        }
    }
    let wanted = pull.final_tally();
    if title(latest) != wanted.title() {
        problems.push(format!(
            "{}#{}: latest check says {:?}, expected {:?}",
            pull.repo,
            pull.number,
            title(latest),
            wanted.title()
        ));
    }
}

/// What is wrong with one check run, if anything: name, commit, a title of
/// a state the pull request was in, and the status that title calls for.
fn content_problem(pull: &Expected, run: &RecordedCheckRun) -> Option<String> {
    let field = |name: &str| run.body.get(name).and_then(Value::as_str);
    if run.name != CHECK_NAME || field("name") != Some(CHECK_NAME) {
        return Some(format!("name {:?}", run.name));
    }
    if field("head_sha") != Some(pull.head_sha.as_str()) {
        return Some(format!("head_sha {:?}", field("head_sha")));
    }
    let Some(tally) = pull.history.iter().find(|t| t.title() == title(run)) else {
        return Some(format!(
            "title {:?} matches no state the pull request was in",
            title(run)
        ));
    };
    let (status, conclusion) = (field("status"), field("conclusion"));
    let consistent = if tally.is_complete() {
        status == Some("completed") && conclusion == Some("success")
    } else {
        status == Some("in_progress") && conclusion.is_none()
    };
    if !consistent {
        return Some(format!(
            "status {status:?} / conclusion {conclusion:?} for {:?}",
            title(run)
        ));
    }
    None
}

pub fn title(run: &RecordedCheckRun) -> &str {
    run.body
        .pointer("/output/title")
        .and_then(Value::as_str)
        .unwrap_or("(no title)")
}

/// When the latest check of every pull request became correct (and stayed
/// so): for each pull request, the arrival of the first run of the trailing
/// correct ones; the latest of those over all pull requests.
pub fn settled_at(fake: &FakeGitHub, expected: &[Expected]) -> Option<Instant> {
    let runs = recorded(fake, expected);
    let mut latest_settle = None;
    for pull in expected {
        let wanted = pull.final_tally().title();
        let own: Vec<&RecordedCheckRun> = runs
            .iter()
            .filter(|run| run.repo == pull.repo && run.head_sha == pull.head_sha)
            .collect();
        if own.last().is_none_or(|run| title(run) != wanted) {
            return None;
        }
        let trailing_correct = own.iter().rev().take_while(|run| title(run) == wanted);
        let settled = trailing_correct.map(|run| run.received_at).min()?;
        latest_settle = latest_settle.max(Some(settled));
    }
    latest_settle
}
