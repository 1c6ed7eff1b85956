//! `who`: the login sessions open now across the fleet, like who(1) for every host
//! at once, each with the su/sudo sessions opened inside it.

use std::collections::HashMap;

use watchtower_model::SessionSummary;

use crate::client::Client;
use crate::commands::json_line;
use crate::render::table;
use crate::timearg::format_ns;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this host.
    #[arg(long)]
    pub host: Option<String>,
}

pub async fn run(args: &Args, client: &mut Client, json: bool) -> anyhow::Result<()> {
    let (sessions, truncated) = client.open_sessions(args.host.as_deref()).await?;
    if json {
        for s in &sessions {
            json_line(s)?;
        }
    } else {
        println!("{}", who_table(&sessions));
    }
    if truncated {
        eprintln!("watchtowerctl: more sessions are open than the server lists at once; use --host");
    }
    Ok(())
}

/// The chain of a session: its own service and user after those it was opened
/// from, e.g. `sshd alice > su root`.
fn chain(s: &SessionSummary, by_id: &HashMap<(&str, u64), &SessionSummary>) -> String {
    let mut steps = vec![format!("{} {}", s.service, s.user)];
    let mut parent = s.parent_session;
    while let Some(id) = parent {
        let Some(p) = by_id.get(&(s.host_id.as_str(), id)) else {
            break;
        };
        if steps.len() >= 16 {
            break;
        }
        steps.push(format!("{} {}", p.service, p.user));
        parent = p.parent_session;
    }
    steps.reverse();
    steps.join(" > ")
}

/// One row per login (a session not opened from another open one), its chain
/// showing what was opened inside it, innermost last.
fn who_table(sessions: &[SessionSummary]) -> String {
    let by_id: HashMap<(&str, u64), &SessionSummary> = sessions
        .iter()
        .map(|s| ((s.host_id.as_str(), s.session), s))
        .collect();
    let mut sorted: Vec<&SessionSummary> = sessions.iter().collect();
    sorted.sort_by(|a, b| (&a.host_id, a.start_unix_ns).cmp(&(&b.host_id, b.start_unix_ns)));
    let rows = sorted.into_iter().map(|s| {
        // The login this session belongs to: the outermost open session.
        let mut login = s;
        while let Some(p) = login
            .parent_session
            .and_then(|id| by_id.get(&(s.host_id.as_str(), id)))
        {
            if std::ptr::eq(*p, s) {
                break;
            }
            login = p;
        }
        vec![
            s.host_id.clone(),
            login.user.clone(),
            login.remote_host.clone().unwrap_or_else(|| "local".into()),
            s.tty
                .clone()
                .or_else(|| login.tty.clone())
                .unwrap_or_else(|| "-".into()),
            format_ns(s.start_unix_ns),
            format!("{:016x}", s.session),
            chain(s, &by_id),
        ]
    });
    table(
        &["HOST", "USER", "FROM", "TTY", "SINCE", "SESSION", "CHAIN"],
        rows,
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(host: &str, id: u64, parent: Option<u64>, service: &str, user: &str) -> SessionSummary {
        SessionSummary {
            host_id: host.into(),
            session: id,
            parent_session: parent,
            service: service.into(),
            user: user.into(),
            remote_host: (service == "sshd").then(|| "198.51.100.7".to_owned()),
            tty: (service == "sshd").then(|| "pts/0".to_owned()),
            start_unix_ns: 1_700_000_000_000_000_000 + id,
            ..SessionSummary::default()
        }
    }

    #[test]
    fn each_open_session_shows_its_login_and_the_su_sudo_chain_inside_it() {
        let sessions = vec![
            session("web-1", 1, None, "sshd", "alice"),
            session("web-1", 2, Some(1), "su", "root"),
            session("web-1", 3, Some(2), "sudo", "bob"),
            session("db-1", 1, None, "sshd", "carol"),
        ];
        let text = who_table(&sessions);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("HOST"), "{text}");
        assert!(
            lines[1].starts_with("db-1") && lines[1].contains("carol") && lines[1].ends_with("sshd carol")
        );
        assert!(
            lines[4].contains("alice") && lines[4].contains("198.51.100.7") && lines[4].contains("pts/0")
        );
        assert!(lines[4].ends_with("sshd alice > su root > sudo bob"), "{text}");
        // Another host's session with the same id is not part of the chain.
        assert!(lines[2].ends_with("sshd alice"), "{text}");
    }
}
