//! One settings file's text → a [`Layer`] (the keys it sets) and every
//! error in it. No I/O.
//!
//! # The YAML crate
//!
//! `saphyr`: the maintained continuation of `yaml-rust`/`yaml-rust2` by the
//! same maintainers, pure Rust without `unsafe`, YAML 1.2 (so `yes` and
//! `no` are strings, not booleans), duplicate keys rejected as the spec
//! requires, and a bound on alias expansion ("billion laughs"). Its
//! `MarkedYaml` tree carries a line and column for every key and value, so
//! this module can walk the whole file and report *every* unknown key and
//! wrong type with its place, where a serde deserializer stops at the first.
//! The alternatives: `serde_yaml` is archived, `serde_yml` is deprecated by
//! its author, `serde_norway` wraps the C libyaml translation and, like
//! every serde front end, reports one error at a time; `serde-saphyr`
//! needs a newer Rust than this crate's `rust-version`.

use std::time::Duration;

use saphyr::{LoadableYamlNode as _, MarkedYaml, Scalar, YamlData};

use super::{
    Location, MAX_CHECK_NAME_BYTES, MAX_FIRST_CHECK_DELAY, SettingsError, WhenIncomplete,
    format_duration,
};
use crate::check::Source;

/// The keys one file sets; `None` for a key it leaves alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    pub when_incomplete: Option<WhenIncomplete>,
    pub skip: Option<Vec<String>>,
    pub optional: Option<Vec<String>>,
    pub case_sensitive: Option<bool>,
    pub sources: Option<Vec<Source>>,
    pub ignored_bots: Option<Vec<String>>,
    pub count_renovate_body: Option<bool>,
    pub first_check_delay: Option<Duration>,
    pub check_name: Option<String>,
    pub extends: Option<Extends>,
}

/// Where `_extends` points: `repo`, `owner/repo` or `owner/repo:path`.
/// A missing owner is the original repository's owner, a missing path the
/// original path, as in Probot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extends {
    pub owner: Option<String>,
    pub repo: String,
    pub path: Option<String>,
}

impl Extends {
    /// Parses an `_extends` value with the rules of
    /// `@probot/octokit-plugin-config`: an owner of GitHub's login form
    /// (letters, digits and single inner hyphens, at most 39), a repository
    /// of letters, digits, `-`, `_` and `.`, and a path ending in `.yml` or
    /// `.yaml`.
    pub fn parse(value: &str) -> Option<Extends> {
        let (target, path) = match value.split_once(':') {
            Some((target, path)) => (target, Some(path)),
            None => (value, None),
        };
        let (owner, repo) = match target.split_once('/') {
            Some((owner, repo)) => (Some(owner), repo),
            None => (None, target),
        };
        let owner_ok = owner.is_none_or(|owner| {
            (1..=39).contains(&owner.len())
                && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !owner.starts_with('-')
                && !owner.ends_with('-')
                && !owner.contains("--")
        });
        let repo_ok = !repo.is_empty()
            && repo
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        let path_ok = path.is_none_or(|path| {
            let lower = path.to_ascii_lowercase();
            path.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                && (lower.len() > 4 && lower.ends_with(".yml")
                    || lower.len() > 5 && lower.ends_with(".yaml"))
        });
        (owner_ok && repo_ok && path_ok).then(|| Extends {
            owner: owner.map(str::to_owned),
            repo: repo.to_owned(),
            path: path.map(str::to_owned),
        })
    }
}

/// Parses and validates one file. `file` names it in errors. Keys with
/// errors are left unset; the caller decides what a file with errors means.
pub fn parse(file: &str, text: &str) -> (Layer, Vec<SettingsError>) {
    let mut walker = Walker {
        file,
        errors: Vec::new(),
    };
    let layer = walker.file(text);
    (layer, walker.errors)
}

/// A node's place, 1-based.
fn location(node: &MarkedYaml<'_>) -> Location {
    Location {
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    }
}

/// What a node is, for "expected X, found Y".
fn describe(node: &MarkedYaml<'_>) -> &'static str {
    match &node.data {
        YamlData::Value(Scalar::Null) => "nothing (null)",
        YamlData::Value(Scalar::Boolean(_)) => "a boolean",
        YamlData::Value(Scalar::Integer(_)) => "an integer",
        YamlData::Value(Scalar::FloatingPoint(_)) => "a number",
        YamlData::Value(Scalar::String(_)) | YamlData::Representation(..) => "a string",
        YamlData::Sequence(_) => "a list",
        YamlData::Mapping(_) => "a mapping",
        YamlData::Tagged(..) => "a tagged value",
        YamlData::Alias(_) | YamlData::BadValue => "an unreadable value",
    }
}

struct Walker<'f> {
    file: &'f str,
    errors: Vec<SettingsError>,
}

impl Walker<'_> {
    fn error(&mut self, at: Option<Location>, key: Option<&str>, message: impl Into<String>) {
        self.errors.push(SettingsError {
            file: self.file.to_owned(),
            location: at,
            key: key.map(str::to_owned),
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, node: &MarkedYaml<'_>, key: &str, expected: &str) {
        let found = describe(node);
        self.error(
            Some(location(node)),
            Some(key),
            format!("expected {expected}, found {found}"),
        );
    }

    fn file(&mut self, text: &str) -> Layer {
        let documents = match MarkedYaml::load_from_str(text) {
            Ok(documents) => documents,
            Err(error) => {
                let mark = error.marker();
                let at = Location {
                    line: mark.line(),
                    column: mark.col() + 1,
                };
                self.error(Some(at), None, format!("not valid YAML: {}", error.info()));
                return Layer::default();
            }
        };
        let mut layer = Layer::default();
        let root = match documents.as_slice() {
            [] => return layer,
            [root] => root,
            [_, second, ..] => {
                self.error(
                    Some(location(second)),
                    None,
                    "a settings file holds one YAML document, this one holds several",
                );
                return layer;
            }
        };
        let entries = match &root.data {
            // An empty file (or one of comments only) sets nothing.
            YamlData::Value(Scalar::Null) => return layer,
            YamlData::Mapping(entries) => entries,
            _ => {
                let found = describe(root);
                self.error(
                    Some(location(root)),
                    None,
                    format!("settings must be a mapping of keys to values, found {found}"),
                );
                return layer;
            }
        };
        for (key_node, value) in entries {
            let Some(key) = self.key(key_node, "") else {
                continue;
            };
            match key {
                "when_incomplete" => layer.when_incomplete = self.when_incomplete(value, key),
                "markers" => self.markers(value, &mut layer),
                "sources" => layer.sources = self.sources(value, key),
                "ignored_bots" => layer.ignored_bots = self.strings(value, key, "a login"),
                "count_renovate_body" => layer.count_renovate_body = self.boolean(value, key),
                "first_check_delay" => layer.first_check_delay = self.delay(value, key),
                "check_name" => layer.check_name = self.check_name(value, key),
                "_extends" => layer.extends = self.extends(value, key),
                other => {
                    let message =
                        format!("unknown key; the keys are {}", TOP_LEVEL_KEYS.join(", "));
                    self.error(Some(location(key_node)), Some(other), message);
                }
            }
        }
        layer
    }

    /// A mapping key as a string; `parent` prefixes it in errors.
    fn key<'n>(&mut self, node: &'n MarkedYaml<'_>, parent: &str) -> Option<&'n str> {
        match &node.data {
            YamlData::Value(Scalar::String(key)) => Some(key.as_ref()),
            _ => {
                let found = describe(node);
                let key = if parent.is_empty() { "(key)" } else { parent };
                self.error(
                    Some(location(node)),
                    Some(key),
                    format!("keys must be strings, found {found}"),
                );
                None
            }
        }
    }

    fn string<'n>(&mut self, node: &'n MarkedYaml<'_>, key: &str) -> Option<&'n str> {
        match &node.data {
            YamlData::Value(Scalar::String(text)) => Some(text.as_ref()),
            _ => {
                self.wrong_type(node, key, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, node: &MarkedYaml<'_>, key: &str) -> Option<bool> {
        match &node.data {
            YamlData::Value(Scalar::Boolean(value)) => Some(*value),
            _ => {
                self.wrong_type(node, key, "true or false");
                None
            }
        }
    }

    /// A list of non-empty strings. Any bad item drops the whole list.
    fn strings(&mut self, node: &MarkedYaml<'_>, key: &str, what: &str) -> Option<Vec<String>> {
        let YamlData::Sequence(items) = &node.data else {
            self.wrong_type(node, key, &format!("a list of strings ({what} each)"));
            return None;
        };
        let before = self.errors.len();
        let mut values = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{index}]");
            if let Some(text) = self.string(item, &item_key) {
                if text.trim().is_empty() {
                    self.error(Some(location(item)), Some(&item_key), "must not be empty");
                } else {
                    values.push(text.to_owned());
                }
            }
        }
        (self.errors.len() == before).then_some(values)
    }

    fn when_incomplete(&mut self, node: &MarkedYaml<'_>, key: &str) -> Option<WhenIncomplete> {
        let names: Vec<&str> = WhenIncomplete::ALL.iter().map(|w| w.name()).collect();
        let expected = format!("one of {}", names.join(", "));
        let text = self.string(node, key)?;
        let found = WhenIncomplete::ALL.into_iter().find(|w| w.name() == text);
        if found.is_none() {
            self.error(
                Some(location(node)),
                Some(key),
                format!("{text:?} is not {expected}"),
            );
        }
        found
    }

    fn markers(&mut self, node: &MarkedYaml<'_>, layer: &mut Layer) {
        let YamlData::Mapping(entries) = &node.data else {
            self.wrong_type(
                node,
                "markers",
                "a mapping with skip, optional, case_sensitive",
            );
            return;
        };
        for (key_node, value) in entries {
            let Some(key) = self.key(key_node, "markers") else {
                continue;
            };
            match key {
                "skip" => layer.skip = self.strings(value, "markers.skip", "a marker"),
                "optional" => layer.optional = self.strings(value, "markers.optional", "a marker"),
                "case_sensitive" => {
                    layer.case_sensitive = self.boolean(value, "markers.case_sensitive")
                }
                other => self.error(
                    Some(location(key_node)),
                    Some(&format!("markers.{other}")),
                    "unknown key; the keys of markers are skip, optional, case_sensitive",
                ),
            }
        }
    }

    fn sources(&mut self, node: &MarkedYaml<'_>, key: &str) -> Option<Vec<Source>> {
        let names: Vec<&str> = Source::ALL.iter().map(|s| s.name()).collect();
        let expected = format!("one of {}", names.join(", "));
        let YamlData::Sequence(items) = &node.data else {
            self.wrong_type(node, key, &format!("a list of sources ({expected})"));
            return None;
        };
        let before = self.errors.len();
        let mut sources = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{index}]");
            let Some(text) = self.string(item, &item_key) else {
                continue;
            };
            match Source::ALL.into_iter().find(|s| s.name() == text) {
                Some(source) if !sources.contains(&source) => sources.push(source),
                Some(_) => {}
                None => self.error(
                    Some(location(item)),
                    Some(&item_key),
                    format!("{text:?} is not {expected}"),
                ),
            }
        }
        (self.errors.len() == before).then_some(sources)
    }

    fn delay(&mut self, node: &MarkedYaml<'_>, key: &str) -> Option<Duration> {
        let text = match &node.data {
            YamlData::Value(Scalar::String(text)) => text.to_string(),
            // `0` alone needs no unit.
            YamlData::Value(Scalar::Integer(0)) => "0s".to_owned(),
            _ => {
                self.wrong_type(node, key, "a duration such as 30s, 2m or 1m30s");
                return None;
            }
        };
        let max = format_duration(MAX_FIRST_CHECK_DELAY);
        match parse_duration(&text) {
            Some(delay) if delay <= MAX_FIRST_CHECK_DELAY => Some(delay),
            Some(_) => {
                self.error(
                    Some(location(node)),
                    Some(key),
                    format!("{text:?} is longer than the maximum, {max}"),
                );
                None
            }
            None => {
                self.error(
                    Some(location(node)),
                    Some(key),
                    format!(
                        "{text:?} is not a duration: a number with a unit (s, m or h), such as 30s, 2m or 1m30s"
                    ),
                );
                None
            }
        }
    }

    fn check_name(&mut self, node: &MarkedYaml<'_>, key: &str) -> Option<String> {
        let text = self.string(node, key)?;
        let problem = if text.trim().is_empty() {
            Some("must not be empty".to_owned())
        } else if text.len() > MAX_CHECK_NAME_BYTES {
            Some(format!(
                "is {} bytes long; the most is {MAX_CHECK_NAME_BYTES}",
                text.len()
            ))
        } else if text.chars().any(char::is_control) {
            Some("must be one line without control characters".to_owned())
        } else if text.trim() != text {
            Some("must not start or end with spaces".to_owned())
        } else {
            None
        };
        match problem {
            Some(problem) => {
                self.error(Some(location(node)), Some(key), problem);
                None
            }
            None => Some(text.to_owned()),
        }
    }

    fn extends(&mut self, node: &MarkedYaml<'_>, key: &str) -> Option<Extends> {
        let text = self.string(node, key)?;
        let parsed = Extends::parse(text);
        if parsed.is_none() {
            self.error(
                Some(location(node)),
                Some(key),
                format!(
                    "{text:?} is not a repository to extend: repo, owner/repo or owner/repo:path/to/file.yml"
                ),
            );
        }
        parsed
    }
}

/// Every top-level key, for "unknown key" errors.
const TOP_LEVEL_KEYS: [&str; 9] = [
    "when_incomplete",
    "markers",
    "sources",
    "ignored_bots",
    "count_renovate_body",
    "first_check_delay",
    "check_name",
    "_extends",
    "(and markers.skip, markers.optional, markers.case_sensitive)",
];

/// `30s`, `2m`, `1h`, `1m30s`, `0s`: one or more numbers each with a unit,
/// units from largest to smallest, each at most once.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = text;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 || digits > 9 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = match rest.chars().next()? {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        if unit >= last_unit {
            return None;
        }
        last_unit = unit;
        rest = &rest[1..];
        total = total.checked_add(number.checked_mul(unit)?)?;
    }
    Some(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse("f.yml", text)
            .1
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_key_is_read() {
        let text = "\
when_incomplete: action_required
markers:
  skip: [WONTFIX]
  optional: [\"nice to have\"]
  case_sensitive: false
sources: [body, reviews]
ignored_bots: [dependabot]
count_renovate_body: true
first_check_delay: 1m30s
check_name: tasks
_extends: octo/settings:shared/tasks.yml
";
        let (layer, errors) = parse("f.yml", text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            layer,
            Layer {
                when_incomplete: Some(WhenIncomplete::ActionRequired),
                skip: Some(vec!["WONTFIX".into()]),
                optional: Some(vec!["nice to have".into()]),
                case_sensitive: Some(false),
                sources: Some(vec![Source::Body, Source::Reviews]),
                ignored_bots: Some(vec!["dependabot".into()]),
                count_renovate_body: Some(true),
                first_check_delay: Some(Duration::from_secs(90)),
                check_name: Some("tasks".into()),
                extends: Some(Extends {
                    owner: Some("octo".into()),
                    repo: "settings".into(),
                    path: Some("shared/tasks.yml".into()),
                }),
            }
        );
    }

    #[test]
    fn empty_files_and_comments_set_nothing() {
        for text in ["", "# nothing yet\n", "---\n"] {
            let (layer, errors) = parse("f.yml", text);
            assert_eq!(layer, Layer::default(), "{text:?}");
            assert!(errors.is_empty(), "{text:?}: {errors:?}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_each_reported_with_line_and_key() {
        let text = "\
when_incomplete: failed
markers:
  skip: [\"\", 3]
  optinal: [X]
sources: [body, commits]
ignored_bots: linear
count_renovate_body: yes
first_check_delay: 2 hours
check_name: \"\"
colour: blue
_extends: \"not a repo!\"
";
        assert_eq!(
            errors(text),
            [
                "f.yml:1:18: when_incomplete: \"failed\" is not one of in_progress, failure, action_required, neutral",
                "f.yml:3:10: markers.skip[0]: must not be empty",
                "f.yml:3:14: markers.skip[1]: expected a string, found an integer",
                "f.yml:4:3: markers.optinal: unknown key; the keys of markers are skip, optional, case_sensitive",
                "f.yml:5:17: sources[1]: \"commits\" is not one of body, comments, reviews, review_comments",
                "f.yml:6:15: ignored_bots: expected a list of strings (a login each), found a string",
                "f.yml:7:22: count_renovate_body: expected true or false, found a string",
                "f.yml:8:20: first_check_delay: \"2 hours\" is not a duration: a number with a unit (s, m or h), such as 30s, 2m or 1m30s",
                "f.yml:9:13: check_name: must not be empty",
                "f.yml:10:1: colour: unknown key; the keys are when_incomplete, markers, sources, ignored_bots, count_renovate_body, first_check_delay, check_name, _extends, (and markers.skip, markers.optional, markers.case_sensitive)",
                "f.yml:11:11: _extends: \"not a repo!\" is not a repository to extend: repo, owner/repo or owner/repo:path/to/file.yml",
            ]
        );
    }

    #[test]
    fn broken_yaml_and_other_shapes_are_reported() {
        let broken = errors("markers:\n  skip: [a, b\n");
        assert_eq!(broken.len(), 1);
        assert!(broken[0].starts_with("f.yml:"), "{broken:?}");
        assert!(broken[0].contains("not valid YAML"), "{broken:?}");
        assert_eq!(
            errors("- a\n- b\n"),
            ["f.yml:1:1: settings must be a mapping of keys to values, found a list"]
        );
        let duplicate = errors("check_name: a\ncheck_name: b\n");
        assert_eq!(duplicate.len(), 1, "{duplicate:?}");
        assert!(duplicate[0].contains("not valid YAML"), "{duplicate:?}");
        assert_eq!(errors("a: 1\n---\nb: 2\n").len(), 1);
        assert_eq!(
            errors("check_name:\n"),
            ["f.yml:1:11: check_name: expected a string, found nothing (null)"]
        );
    }

    #[test]
    fn delays_are_bounded_and_need_a_unit() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "30",
            "s",
            "1x",
            "30s1m",
            "1m1m",
            "-1s",
            "1.5m",
            "9999999999s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse("f.yml", "first_check_delay: 0").0.first_check_delay,
            Some(Duration::ZERO)
        );
        assert_eq!(
            errors("first_check_delay: 61m"),
            ["f.yml:1:20: first_check_delay: \"61m\" is longer than the maximum, 1h"]
        );
        assert_eq!(
            errors("first_check_delay: 30"),
            [
                "f.yml:1:20: first_check_delay: expected a duration such as 30s, 2m or 1m30s, found an integer"
            ]
        );
    }

    #[test]
    fn check_names_are_one_short_line() {
        let long = format!("check_name: {}", "x".repeat(256));
        assert_eq!(
            errors(&long),
            ["f.yml:1:13: check_name: is 256 bytes long; the most is 255"]
        );
        assert_eq!(
            errors("check_name: \"a\\nb\""),
            ["f.yml:1:13: check_name: must be one line without control characters"]
        );
        assert!(errors(&format!("check_name: {}", "x".repeat(255))).is_empty());
    }

    #[test]
    fn extends_follows_probots_forms() {
        let parsed = |text: &str| Extends::parse(text);
        assert_eq!(
            parsed(".github"),
            Some(Extends {
                owner: None,
                repo: ".github".into(),
                path: None
            })
        );
        assert_eq!(
            parsed("octo-org/settings"),
            Some(Extends {
                owner: Some("octo-org".into()),
                repo: "settings".into(),
                path: None
            })
        );
        assert_eq!(
            parsed("octo/settings:ci/Tasks.YAML").and_then(|e| e.path),
            Some("ci/Tasks.YAML".into())
        );
        for bad in [
            "",
            "octo/",
            "-octo/x",
            "oc--to/x",
            "a/b/c",
            "octo/x:tasks.json",
            "octo/x:",
            "x y",
            &format!("{}/x", "o".repeat(40)),
        ] {
            assert_eq!(parsed(bad), None, "{bad:?}");
        }
    }
}
