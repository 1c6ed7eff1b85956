//! The login an event belongs to, for OCSF output: the session at the root of
//! its su/sudo chain, read from the server's session summaries (`GetSession`,
//! once per session, kept for the rest of the run).

use std::collections::HashMap;

use watchtower_model::{Body, SessionSummary, StoredEvent};

use crate::client::Client;

/// How far a chain is followed (su inside sudo inside ...).
const MAX_CHAIN: usize = 16;

/// Session summaries read so far, by host and session key (`None`: not stored).
#[derive(Default)]
pub struct Logins {
    known: HashMap<(String, u64), Option<SessionSummary>>,
}

/// The session an event was made in, if it names one.
fn session_of(stored: &StoredEvent) -> Option<(&str, u64)> {
    let event = stored.event.as_ref()?;
    let key = match event.body.as_ref()? {
        Body::Exec(e) => e.session,
        Body::Connect(c) => c.session,
        Body::LoginAttempt(a) => a.from_session,
        Body::SessionStart(s) => Some(s.session),
        Body::SessionEnd(s) => Some(s.session),
        Body::LoginVerdict(_) | Body::AgentHealth(_) => None,
    }?;
    (key != 0).then_some((event.host_id.as_str(), key))
}

impl Logins {
    async fn summary(&mut self, client: &mut Client, host: &str, session: u64) -> Option<SessionSummary> {
        let key = (host.to_owned(), session);
        if let Some(known) = self.known.get(&key) {
            return known.clone();
        }
        // A session the store does not have (pruned, or never started) is no login.
        let summary = client.session(host, session).await.ok().and_then(|r| r.summary);
        self.known.insert(key, summary.clone());
        summary
    }

    /// The login `stored` belongs to: its session's summary, followed up the
    /// sessions it was opened from to the first one opened from none.
    pub async fn login_of(&mut self, client: &mut Client, stored: &StoredEvent) -> Option<SessionSummary> {
        let (host, session) = session_of(stored)?;
        let host = host.to_owned();
        let mut login = self.summary(client, &host, session).await?;
        for _ in 0..MAX_CHAIN {
            let Some(parent) = login.parent_session.filter(|p| *p != 0) else {
                break;
            };
            match self.summary(client, &host, parent).await {
                Some(summary) => login = summary,
                None => break,
            }
        }
        Some(login)
    }

    /// `stored` as an OCSF event, attributed to its login when the store knows it.
    pub async fn ocsf(&mut self, client: &mut Client, stored: &StoredEvent) -> serde_json::Value {
        match self.login_of(client, stored).await {
            Some(login) => {
                watchtower_ocsf::event_in_login(stored, crate::render::ocsf_message(stored), &login)
            }
            None => crate::render::ocsf_event(stored),
        }
    }
}
