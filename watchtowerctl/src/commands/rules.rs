//! `rules`: Sigma rules on the operator's side. `rules test RULE --since 7d` runs
//! one rule over the stored events of a period, with the same field mapping the
//! server uses (the login each event belongs to included); `rules check DIR`
//! loads a rules directory as the server would and names each file that fails.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use watchtower_model::{Body, SessionStart};
use watchtower_sigma::fields::Login;
use watchtower_sigma::{LoadedRule, RuleSet, SigmaEvent};

use crate::client::Client;
use crate::commands::{Filters, Period, filter_of, json_line, range};
use crate::render::{row, table};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Subcommand, Debug)]
#[expect(clippy::large_enum_variant, reason = "parsed once per run")]
pub enum RulesCommand {
    /// Run one Sigma rule over stored events and list what it matches.
    Test {
        /// The rule file (Sigma YAML).
        rule: PathBuf,
        #[command(flatten)]
        filters: Filters,
        #[command(flatten)]
        period: Period,
        /// Stop after this many matches.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Load a rules directory as the server does; exits 1 if a file fails.
    Check {
        /// The directory (`*.yml`, `*.yaml`).
        dir: PathBuf,
    },
}

/// `rules check`: offline; its exit code.
pub fn check(dir: &std::path::Path, json: bool) -> anyhow::Result<i32> {
    let (set, errors) = RuleSet::load(dir).with_context(|| format!("reading {}", dir.display()))?;
    if json {
        json_line(&serde_json::json!({
            "loaded": set.rules.iter().map(|r| &r.file).collect::<Vec<_>>(),
            "failed": errors.iter().map(|e| serde_json::json!({"file": e.file, "error": e.error})).collect::<Vec<_>>(),
        }))?;
    } else {
        for rule in &set.rules {
            println!("ok      {}  {}", rule.file, rule.title);
        }
        for e in &errors {
            println!("FAILED  {}: {}", e.file, e.error);
        }
    }
    Ok(i32::from(!errors.is_empty()))
}

/// The logins of sessions started within the period, by (host, session): what a
/// match says about who ran it.
#[derive(Default)]
struct Logins {
    starts: HashMap<(String, u64), SessionStart>,
}

impl Logins {
    fn note(&mut self, host: &str, start: &SessionStart) {
        self.starts
            .insert((host.to_owned(), start.session), start.clone());
    }

    /// The outermost known session of `session`'s chain.
    fn login(&self, host: &str, session: Option<u64>) -> Option<Login> {
        let own = self.starts.get(&(host.to_owned(), session?))?;
        let mut current = own;
        for _ in 0..16 {
            match current
                .parent_session
                .and_then(|p| self.starts.get(&(host.to_owned(), p)))
            {
                Some(parent) => current = parent,
                None => break,
            }
        }
        Some(Login {
            user: current.user.clone(),
            source: current.remote_host.clone(),
            service: current.service.clone(),
            session_service: own.service.clone(),
            session_user: own.user.clone(),
        })
    }
}

pub async fn run(args: &Args, client: &mut Client, json: bool) -> anyhow::Result<()> {
    let RulesCommand::Test {
        rule,
        filters,
        period,
        limit,
    } = &args.command
    else {
        bail!("`rules check` needs no server");
    };
    let name = rule.display().to_string();
    let yaml = std::fs::read_to_string(rule).with_context(|| format!("reading {name}"))?;
    let rule = LoadedRule::parse(&name, &yaml)?;
    let filter = filter_of(filters, range(period)?)?;
    let mut logins = Logins::default();
    let mut rows = Vec::new();
    let mut seen = 0u64;
    let mut matched = 0usize;
    client
        .events(&filter, |stored| {
            seen += 1;
            let Some(event) = &stored.event else {
                return Ok(true);
            };
            if let Some(Body::SessionStart(start)) = &event.body {
                logins.note(&event.host_id, start);
            }
            let session = SigmaEvent::of(&stored, None).and_then(|e| e.session);
            let login = logins.login(&event.host_id, session);
            let Some(fields) = SigmaEvent::of(&stored, login.as_ref()) else {
                return Ok(true);
            };
            if !rule.matches(&fields) {
                return Ok(true);
            }
            matched += 1;
            if json {
                json_line(&stored)?;
            } else {
                let r = row(&stored);
                let who = login.map_or_else(
                    || r.user.clone(),
                    |l| {
                        format!(
                            "{} from {} via {}",
                            l.user,
                            l.source.as_deref().unwrap_or("local"),
                            l.service
                        )
                    },
                );
                rows.push(vec![r.time, r.host_id, r.seq.to_string(), r.kind, who, r.detail]);
            }
            Ok(matched < *limit)
        })
        .await?;
    if !json {
        println!(
            "{}",
            table(&["TIME", "HOST", "SEQ", "KIND", "LOGIN", "DETAIL"], rows)
        );
        println!("{matched} of {seen} events match \"{}\"", rule.title);
    }
    Ok(())
}
