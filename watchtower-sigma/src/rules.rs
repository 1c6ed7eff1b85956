//! A directory of Sigma rules: loaded, each checked against the events its
//! `logsource` names, and reloaded when the directory changes.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sigma_rust::Rule;

use crate::fields::{Kind, SigmaEvent};

/// A rule file larger than this is refused (rules are a few KiB).
const MAX_RULE_BYTES: u64 = 256 * 1024;
/// Rules in one directory, at most.
const MAX_RULES: usize = 10_000;

/// How serious a match is, from the rule's `level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A rule that loaded, with where it came from.
#[derive(Debug)]
pub struct LoadedRule {
    /// The file, relative to the rules directory.
    pub file: String,
    pub title: String,
    pub id: Option<String>,
    pub severity: Severity,
    /// The event kinds its `logsource` applies to; empty: every kind.
    kinds: Vec<Kind>,
    rule: Rule,
}

impl LoadedRule {
    /// Parse one rule; `file` names it in errors and alerts.
    pub fn parse(file: &str, yaml: &str) -> Result<LoadedRule, RuleError> {
        let rule = sigma_rust::rule_from_yaml(yaml).map_err(|e| RuleError {
            file: file.to_owned(),
            error: e.to_string(),
        })?;
        let kinds = kinds_of(&rule).map_err(|error| RuleError {
            file: file.to_owned(),
            error,
        })?;
        // sigma-rust does not export its `Level` type: read it by name.
        let severity = match rule.level.as_ref().map(|l| format!("{l:?}")).as_deref() {
            Some("High" | "Critical") => Severity::Critical,
            Some("Medium" | "Low") => Severity::Warning,
            _ => Severity::Info,
        };
        Ok(LoadedRule {
            file: file.to_owned(),
            title: rule.title.clone(),
            id: rule.id.clone(),
            severity,
            kinds,
            rule,
        })
    }

    /// Whether the rule matches the event (of a kind its logsource names).
    #[must_use]
    pub fn matches(&self, event: &SigmaEvent) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind)) && self.rule.is_match(&event.fields)
    }
}

/// The event kinds a logsource selects: Sigma's Linux categories and services.
fn kinds_of(rule: &Rule) -> Result<Vec<Kind>, String> {
    let source = &rule.logsource;
    if let Some(product) = &source.product
        && product != "linux"
    {
        return Err(format!(
            "logsource product {product:?}: these rules run on Linux events only"
        ));
    }
    let by_category = match source.category.as_deref() {
        None => Vec::new(),
        Some("process_creation") => vec![Kind::Exec],
        Some("network_connection") => vec![Kind::Connect],
        Some("authentication") => vec![Kind::Login, Kind::SessionStart],
        Some(other) => {
            return Err(format!(
                "logsource category {other:?} is not one Watchtower records \
                 (process_creation, network_connection, authentication)"
            ));
        }
    };
    let by_service = match source.service.as_deref() {
        None => Vec::new(),
        Some("sshd" | "auth" | "sudo" | "su" | "pam") => vec![Kind::Login, Kind::SessionStart],
        Some(other) => {
            return Err(format!(
                "logsource service {other:?} is not one Watchtower records"
            ));
        }
    };
    Ok(match (by_category.is_empty(), by_service.is_empty()) {
        (true, _) => by_service,
        (false, true) => by_category,
        (false, false) => by_category
            .into_iter()
            .filter(|k| by_service.contains(k))
            .collect(),
    })
}

/// A rule file that could not be loaded, by name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {error}")]
pub struct RuleError {
    pub file: String,
    pub error: String,
}

/// The rules of one directory.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<LoadedRule>,
    /// Names, sizes and modification times of the files read: the reload check.
    fingerprint: Vec<(String, u64, Option<SystemTime>)>,
}

/// A rule file: its name, path, size and modification time.
type RuleFile = (String, PathBuf, u64, Option<SystemTime>);

fn rule_files(dir: &Path) -> std::io::Result<Vec<RuleFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let is_rule = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yml" || e == "yaml");
        let meta = entry.metadata()?;
        if !is_rule || !meta.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push((name, path, meta.len(), meta.modified().ok()));
    }
    out.sort();
    Ok(out)
}

impl RuleSet {
    /// Load every rule file of `dir`; the files that fail are returned by name
    /// beside the rules that loaded.
    pub fn load(dir: &Path) -> std::io::Result<(RuleSet, Vec<RuleError>)> {
        let files = rule_files(dir)?;
        let mut set = RuleSet::default();
        let mut errors = Vec::new();
        for (name, path, len, modified) in files {
            set.fingerprint.push((name.clone(), len, modified));
            if set.rules.len() >= MAX_RULES {
                errors.push(RuleError {
                    file: name,
                    error: format!("more than {MAX_RULES} rules in the directory"),
                });
                continue;
            }
            if len > MAX_RULE_BYTES {
                errors.push(RuleError {
                    file: name,
                    error: format!("{len} bytes, more than {MAX_RULE_BYTES}"),
                });
                continue;
            }
            let loaded = std::fs::read_to_string(&path)
                .map_err(|e| RuleError {
                    file: name.clone(),
                    error: e.to_string(),
                })
                .and_then(|yaml| LoadedRule::parse(&name, &yaml));
            match loaded {
                Ok(rule) => set.rules.push(rule),
                Err(e) => errors.push(e),
            }
        }
        Ok((set, errors))
    }

    /// Whether the directory's rule files changed since this set was loaded.
    #[must_use]
    pub fn changed(&self, dir: &Path) -> bool {
        match rule_files(dir) {
            Ok(files) => {
                let now: Vec<_> = files.into_iter().map(|(n, _, l, m)| (n, l, m)).collect();
                now != self.fingerprint
            }
            Err(_) => !self.fingerprint.is_empty(),
        }
    }

    /// The rules `event` matches.
    pub fn matching<'a>(&'a self, event: &'a SigmaEvent) -> impl Iterator<Item = &'a LoadedRule> + 'a {
        self.rules.iter().filter(move |r| r.matches(event))
    }
}

#[cfg(test)]
mod tests;
