//! Pull requests as a team writes them: a template with a summary, a list
//! of changes, test instructions with a code block, and a checklist, so a
//! `pull_request` payload is several KB, as on GitHub. The expected check
//! title is computed here from the counts the bench put in, independently of
//! the bot's parser.

use std::fmt::Write as _;

use crate::fake_github::{FakeGitHub, PullRequest};

/// Checklist items a pull-request template might have. None says OPTIONAL,
/// N/A or POST-MERGE, which the bot treats specially.
const TASKS: [&str; 8] = [
    "Tests added or updated for the new behaviour",
    "Documentation and the changelog updated",
    "Migration tested against a copy of production data",
    "Feature flag defaults to off in every environment",
    "Security checklist reviewed (input validation, secrets, permissions)",
    "Screenshots attached for user-visible changes",
    "Backwards compatible with clients one release behind",
    "Dashboards and alerts updated for the new metrics",
];

/// How many tasks a text has and how many of them are ticked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub done: usize,
    pub total: usize,
}

impl Tally {
    pub fn new(done: usize, total: usize) -> Tally {
        Tally { done, total }
    }

    /// The check title the bot must write: `{done} / {total} tasks completed`.
    pub fn title(self) -> String {
        format!("{} / {} tasks completed", self.done, self.total)
    }

    pub fn is_complete(self) -> bool {
        self.done == self.total
    }

    pub fn plus(self, other: Tally) -> Tally {
        Tally::new(self.done + other.done, self.total + other.total)
    }
}

/// A pull request the bench created and knows the expected check of.
#[derive(Clone, Debug)]
pub struct BenchPull {
    pub repo: String,
    pub number: u64,
    pub head_sha: String,
    /// The checklist in the body.
    pub body_tally: Tally,
    /// Edits of the summary so far (changes the body, not the tasks).
    pub revision: u32,
}

impl BenchPull {
    /// A pull request whose checklist size and ticks vary with its number,
    /// so neighbouring pull requests expect different titles.
    pub fn new(repo: &str, number: u64) -> BenchPull {
        let total = 3 + (number as usize % 6);
        let done = (number as usize * 7) % (total + 1);
        BenchPull {
            repo: repo.to_owned(),
            number,
            head_sha: head_sha(repo, number),
            body_tally: Tally::new(done, total),
            revision: 0,
        }
    }

    pub fn body(&self) -> String {
        pull_body(self.number, self.body_tally, self.revision)
    }

    /// Creates or replaces the pull request in the fake as it is now.
    pub fn upsert_into(&self, fake: &FakeGitHub) {
        let pull = PullRequest::new(self.number)
            .title(&format!(
                "Retry webhook deliveries with backoff (part {})",
                self.number
            ))
            .body(&self.body())
            .head_sha(&self.head_sha)
            .head_ref(&format!("feature/retries-{}", self.number))
            .author(author(self.number));
        fake.upsert_pull(&self.repo, pull);
    }
}

fn author(number: u64) -> &'static str {
    const AUTHORS: [&str; 4] = ["mona", "hubot", "octocat", "defunkt"];
    AUTHORS[number as usize % AUTHORS.len()]
}

/// A stable 40-hex-digit SHA per pull request (FNV-1a, three ways).
pub fn head_sha(repo: &str, number: u64) -> String {
    let hash = |salt: u64| {
        format!("{salt}:{repo}#{number}")
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    };
    format!("{:016x}{:016x}{:08x}", hash(1), hash(2), hash(3) as u32)
}

/// The markdown body of a pull request with `tally` tasks.
pub fn pull_body(number: u64, tally: Tally, revision: u32) -> String {
    let mut body = String::with_capacity(2048);
    body.push_str("<!-- Thanks for the pull request! Fill in every section below. -->\n\n");
    body.push_str("## Summary\n\n");
    let _ = writeln!(
        body,
        "Webhook deliveries that fail with a 5xx are retried with exponential backoff \
         (part {number} of the series). Until now a single failed delivery meant a \
         missing check on the pull request, and someone had to push an empty commit \
         to get it back. The retry budget is bounded so that a GitHub outage does not \
         pile up work; see the design note linked below for the numbers."
    );
    if revision > 0 {
        let _ = writeln!(
            body,
            "\n_Edited ({revision}): clarified the retry budget after review._"
        );
    }
    body.push_str(
        "\n## Changes\n\n\
         - Add `RetryPolicy` with a ceiling of 5 attempts and full jitter\n\
         - Record the attempt count in the pending set so restarts keep it\n\
         - Log the GitHub request id of every failed attempt\n\
         - Remove the old fixed 2 s sleep\n\
         \n## How to test\n\n\
         1. Start the fake GitHub with a fault on check-run creation:\n\
         \n```sh\n\
         curl -X POST localhost:8080/_fake/faults \\\n  \
           -d '{\"endpoint\": \"create_check_run\", \"fault\": {\"kind\": \"server_error\", \"status\": 503}, \"times\": 2}'\n\
         ```\n\n\
         2. Open a pull request and watch the check appear after two retries.\n\
         3. Check the logs for `will retry` lines with increasing delays.\n\
         \nDesign note: https://example.com/docs/retries (section 3, \"Budgets\").\n\
         \n## Checklist\n\n",
    );
    for (index, task) in TASKS.iter().cycle().take(tally.total).enumerate() {
        let mark = if index < tally.done { 'x' } else { ' ' };
        let _ = writeln!(body, "- [{mark}] {task}");
    }
    body.push_str("\nReviewers: please look at the backoff arithmetic in `github.rs` first.\n");
    body
}
