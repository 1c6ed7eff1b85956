//! Alerts the server raises, and the Sigma match one carries.

use crate::{SessionSummary, StoredEvent};

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Alert {
    /// Numbered by the server, from 1.
    pub id: u64,
    pub time_unix_ns: u64,
    /// failed_logins, root_login, new_address, kernel_only, journal_only, stale_agent,
    /// log_witness, conflicting_duplicate, sigma.
    pub rule: String,
    /// info, warning or critical.
    pub severity: String,
    pub host_id: String,
    /// One line for people.
    pub summary: String,
    pub user: Option<String>,
    pub remote_address: Option<String>,
    /// Failed logins counted in the window, or 1.
    pub count: u64,
    /// The host's events (seqs) that raised it.
    pub seqs: Vec<u64>,
    /// A Sigma rule's match (rule `sigma`): the rule, the event it matched, and the
    /// login session the event belongs to with the sessions it was opened from (the
    /// su/sudo chain), innermost first, ending at the login.
    pub sigma: Option<SigmaMatch>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SigmaMatch {
    /// The rule's title, its id when it has one, and its file in the rules directory.
    pub title: String,
    pub rule_id: Option<String>,
    pub file: String,
    pub event: Option<StoredEvent>,
    pub session_chain: Vec<SessionSummary>,
}
