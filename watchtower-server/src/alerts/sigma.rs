//! Sigma rules on the server: every stored exec, connect, login and session
//! event is matched against the rules of `alerts.sigma_rules_dir`
//! ([`watchtower_sigma`] maps it onto Sigma's field names, with the login it
//! belongs to). A match is a `sigma` alert carrying the whole story: the rule, the
//! event, and the session chain from the event's session up to the login (who
//! logged in, from where, through which su/sudo). The directory is checked every
//! `sigma_reload_secs`: a changed rule set is loaded without a restart, a file
//! that does not parse is logged by name and counted, and the others keep running.

use std::path::PathBuf;
use std::sync::Mutex;

use watchtower_model::{Alert, SessionSummary, SigmaMatch, StoredEvent};
use watchtower_sigma::fields::Login;
use watchtower_sigma::{RuleSet, SigmaEvent};

use super::AlertEngine;
use crate::metrics::Metrics;
use crate::store::EventStore;

/// Sessions followed up the chain, at most (a loop in forged parents ends here).
const MAX_CHAIN: usize = 16;

pub(super) struct SigmaRules {
    dir: PathBuf,
    set: Mutex<RuleSet>,
}

impl SigmaRules {
    /// Load the rules of `dir` (a directory that cannot be read is an empty set,
    /// logged, and read again at the next check).
    pub(super) fn load(dir: PathBuf, metrics: &Metrics) -> SigmaRules {
        let set = load_logged(&dir, metrics);
        SigmaRules {
            dir,
            set: Mutex::new(set),
        }
    }

    /// Load the rules again if the directory changed.
    pub(super) fn reload_if_changed(&self, metrics: &Metrics) {
        let changed = self.set.lock().expect("sigma rules").changed(&self.dir);
        if changed {
            let set = load_logged(&self.dir, metrics);
            *self.set.lock().expect("sigma rules") = set;
        }
    }
}

fn load_logged(dir: &std::path::Path, metrics: &Metrics) -> RuleSet {
    match RuleSet::load(dir) {
        Ok((set, errors)) => {
            for e in &errors {
                tracing::error!(file = %e.file, error = %e.error, "a Sigma rule does not load; the others run");
            }
            metrics.sigma_rules(set.rules.len() as u64, errors.len() as u64);
            tracing::info!(
                dir = %dir.display(),
                rules = set.rules.len(),
                failed = errors.len(),
                "Sigma rules loaded"
            );
            set
        }
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot read the Sigma rules directory");
            metrics.sigma_rules(0, 1);
            RuleSet::default()
        }
    }
}

/// The session `session` of `host` and the sessions it was opened from, innermost
/// first.
fn session_chain(store: &EventStore, host: &str, session: u64) -> Vec<SessionSummary> {
    let mut chain = Vec::new();
    let mut next = Some(session);
    while let Some(id) = next {
        if chain.len() >= MAX_CHAIN || chain.iter().any(|s: &SessionSummary| s.session == id) {
            break;
        }
        match store.session_summary_of(host, id) {
            Ok(Some(summary)) => {
                next = summary.parent_session;
                chain.push(summary);
            }
            Ok(None) => break,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a session for a Sigma match");
                break;
            }
        }
    }
    chain
}

/// "alice from 198.51.100.7 via sshd, then su to root, then sudo to root".
fn chain_text(chain: &[SessionSummary]) -> String {
    let mut steps: Vec<String> = chain
        .iter()
        .rev()
        .enumerate()
        .map(|(i, s)| {
            let from = s
                .remote_host
                .as_deref()
                .map_or_else(String::new, |r| format!(" from {r}"));
            if i == 0 {
                format!("{}{from} via {}", s.user, s.service)
            } else {
                format!("{} to {}", s.service, s.user)
            }
        })
        .collect();
    if steps.is_empty() {
        steps.push("no login session".into());
    }
    steps.join(", then ")
}

impl AlertEngine {
    /// Match one stored event against the Sigma rules.
    pub(super) fn sigma(&self, stored: &StoredEvent) {
        let Some(rules) = &self.sigma else { return };
        let Some(event) = &stored.event else { return };
        let set = rules.set.lock().expect("sigma rules");
        if set.rules.is_empty() {
            return;
        }
        let host = event.host_id.as_str();
        let Some(bare) = SigmaEvent::of(stored, None) else {
            return;
        };
        let chain = bare
            .session
            .map(|session| session_chain(&self.store, host, session))
            .unwrap_or_default();
        let login = match (chain.first(), chain.last()) {
            (Some(own), Some(root)) => Some(Login {
                user: root.user.clone(),
                source: root.remote_host.clone(),
                service: root.service.clone(),
                session_service: own.service.clone(),
                session_user: own.user.clone(),
            }),
            _ => None,
        };
        let Some(full) = SigmaEvent::of(stored, login.as_ref()) else {
            return;
        };
        let matched: Vec<_> = set.matching(&full).collect();
        for rule in matched {
            let what = ["CommandLine", "DestinationIp", "TargetUserName"]
                .into_iter()
                .find_map(|field| full.text(field))
                .unwrap_or_default();
            let summary = format!(
                "Sigma \"{}\" on {host}: {} {what} (seq {}); login: {}",
                rule.title,
                full.kind.name(),
                event.seq,
                chain_text(&chain)
            );
            let alert = Alert {
                rule: "sigma".into(),
                severity: rule.severity.name().into(),
                host_id: host.into(),
                summary,
                user: login.as_ref().map(|l| l.user.clone()),
                remote_address: login.as_ref().and_then(|l| l.source.clone()),
                count: 1,
                seqs: vec![event.seq],
                sigma: Some(SigmaMatch {
                    title: rule.title.clone(),
                    rule_id: rule.id.clone(),
                    file: rule.file.clone(),
                    event: Some(stored.clone()),
                    session_chain: chain.clone(),
                }),
                ..Alert::default()
            };
            self.raise(alert);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(
        id: u64,
        parent: Option<u64>,
        service: &str,
        user: &str,
        remote: Option<&str>,
    ) -> SessionSummary {
        SessionSummary {
            session: id,
            parent_session: parent,
            service: service.into(),
            user: user.into(),
            remote_host: remote.map(Into::into),
            ..SessionSummary::default()
        }
    }

    #[test]
    fn the_chain_reads_from_the_login_to_the_innermost_session() {
        let chain = vec![
            session(3, Some(2), "sudo", "root", None),
            session(2, Some(1), "su", "bob", None),
            session(1, None, "sshd", "alice", Some("198.51.100.7")),
        ];
        assert_eq!(
            chain_text(&chain),
            "alice from 198.51.100.7 via sshd, then su to bob, then sudo to root"
        );
        assert_eq!(chain_text(&[]), "no login session");
    }
}
