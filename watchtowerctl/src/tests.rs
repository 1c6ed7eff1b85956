//! The command line: every command parses its flags, bad input is refused with a
//! clear error (clap's, or the first thing the command checks).

use std::path::PathBuf;

use clap::Parser;
use clap::error::ErrorKind;

use crate::commands::ca::CaCommand;
use crate::commands::export::Format;
use crate::commands::sessions::SessionCommand;
use crate::commands::{Filters, Period, filter_of, range};
use crate::{Cli, Command};

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("watchtowerctl").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn command(args: &[&str]) -> Command {
    parse(args).command
}

fn refused(args: &[&str]) -> clap::Error {
    match Cli::try_parse_from(std::iter::once("watchtowerctl").chain(args.iter().copied())) {
        Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
        Err(e) => e,
    }
}

#[test]
fn the_command_line_is_consistent() {
    use clap::CommandFactory as _;
    Cli::command().debug_assert();
}

#[test]
fn global_options_and_their_defaults() {
    // No environment in tests may set them: check the defaults only where unset.
    let cli = parse(&["stats"]);
    if std::env::var_os("WATCHTOWER_SERVER").is_none() {
        assert_eq!(cli.server, "https://127.0.0.1:7443");
    }
    if std::env::var_os("WATCHTOWER_CA").is_none() {
        assert_eq!(cli.ca, PathBuf::from("certs/ca.pem"));
    }
    assert_eq!(cli.server_name, "localhost");
    assert!(!cli.json);
    assert!(matches!(cli.command, Command::Stats));
    // Global: before or after the command.
    let cli = parse(&[
        "hosts",
        "--json",
        "--server",
        "https://wt:7443",
        "--server-name",
        "wt",
        "--ca",
        "ca.pem",
        "--cert",
        "me.pem",
        "--key",
        "me.key",
    ]);
    assert!(cli.json);
    assert_eq!(
        (
            cli.server.as_str(),
            cli.server_name.as_str(),
            cli.ca,
            cli.cert,
            cli.key
        ),
        (
            "https://wt:7443",
            "wt",
            PathBuf::from("ca.pem"),
            PathBuf::from("me.pem"),
            PathBuf::from("me.key")
        )
    );
    assert!(parse(&["--json", "stats"]).json);
}

#[test]
fn events_with_filters_and_a_period() {
    let Command::Events(args) = command(&[
        "events",
        "--host",
        "web-1",
        "--user",
        "alice",
        "--kind",
        "login_attempt",
        "--kind",
        "exec",
        "--failed",
        "--session",
        "ab",
        "--remote",
        "10.0.0.9",
        "--from",
        "1700000000",
        "--to",
        "2023-11-14T23:00:00Z",
        "--limit",
        "5",
    ]) else {
        panic!("not events");
    };
    assert_eq!(args.limit, 5);
    assert_eq!(args.filters.host.as_deref(), Some("web-1"));
    assert_eq!(args.filters.user.as_deref(), Some("alice"));
    assert_eq!(args.filters.kinds, ["login_attempt", "exec"]);
    assert!(args.filters.failed);
    assert_eq!(args.filters.session.as_deref(), Some("ab"));
    assert_eq!(args.filters.remote.as_deref(), Some("10.0.0.9"));
    assert_eq!(
        range(&args.period).unwrap(),
        (1_700_000_000_000_000_000, 1_700_002_800_000_000_000)
    );
    assert_eq!(filter_of(&args.filters, (0, 0)).unwrap().session, Some(0xab));

    let Command::Events(args) = command(&["events"]) else {
        panic!("not events");
    };
    assert_eq!(args.limit, 1000);
    assert!(args.filters.kinds.is_empty() && !args.filters.failed);
    assert_eq!(range(&args.period).unwrap(), (0, 0));
}

#[test]
fn bad_events_arguments() {
    assert_eq!(
        refused(&["events", "--limit", "many"]).kind(),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        refused(&["events", "--limit", "-1"]).kind(),
        ErrorKind::UnknownArgument
    );
    assert_eq!(refused(&["events", "--bogus"]).kind(), ErrorKind::UnknownArgument);
    assert_eq!(refused(&["events", "--host"]).kind(), ErrorKind::InvalidValue);
    // Times are checked by the command, before it asks the server anything.
    let Command::Events(args) = command(&["events", "--since", "5y"]) else {
        panic!("not events");
    };
    assert_eq!(
        range(&args.period).unwrap_err().to_string(),
        r#""5y": the unit must be s, m, h, d or w"#
    );
    let Command::Events(args) = command(&["events", "--since", "1h", "--from", "0"]) else {
        panic!("not events");
    };
    assert_eq!(
        range(&args.period).unwrap_err().to_string(),
        "give --since or --from, not both"
    );
    let Command::Events(args) = command(&["events", "--to", "tomorrow"]) else {
        panic!("not events");
    };
    let error = range(&args.period).unwrap_err().to_string();
    assert!(
        error.starts_with(r#""tomorrow" is neither RFC 3339 nor Unix seconds"#),
        "{error}"
    );
    let Command::Events(args) = command(&["events", "--kind", "logins"]) else {
        panic!("not events");
    };
    assert_eq!(
        filter_of(&args.filters, (0, 0)).unwrap_err().to_string(),
        r#"unknown kind "logins""#
    );
}

#[test]
fn sessions_and_sessions_show() {
    let Command::Sessions(args) = command(&["sessions", "--user", "alice", "--since", "7d"]) else {
        panic!("not sessions");
    };
    assert!(args.show.is_none());
    assert_eq!(args.limit, 200);
    assert_eq!(args.filters.user.as_deref(), Some("alice"));
    assert_eq!(args.period.since.as_deref(), Some("7d"));

    let Command::Sessions(args) = command(&["sessions", "show", "web-1", "00000000000000ab"]) else {
        panic!("not sessions");
    };
    let Some(SessionCommand::Show { host, session }) = args.show else {
        panic!("not show");
    };
    assert_eq!((host.as_str(), session.as_str()), ("web-1", "00000000000000ab"));

    assert_eq!(
        refused(&["sessions", "show", "web-1"]).kind(),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        refused(&["sessions", "--limit", "x"]).kind(),
        ErrorKind::ValueValidation
    );
}

#[test]
fn hosts_tail_stats_and_alerts() {
    let Command::Hosts(args) = command(&["hosts"]) else {
        panic!("not hosts");
    };
    assert_eq!(args.stale_after, 120);
    let Command::Hosts(args) = command(&["hosts", "--stale-after", "30"]) else {
        panic!("not hosts");
    };
    assert_eq!(args.stale_after, 30);
    assert_eq!(
        refused(&["hosts", "--stale-after", "soon"]).kind(),
        ErrorKind::ValueValidation
    );

    let Command::Tail(args) = command(&[
        "tail",
        "--host",
        "web-1",
        "--kind",
        "login_attempt",
        "--no-alerts",
        "--count",
        "3",
    ]) else {
        panic!("not tail");
    };
    assert_eq!(args.filters.host.as_deref(), Some("web-1"));
    assert!(args.no_alerts);
    assert_eq!(args.count, Some(3));
    let Command::Tail(args) = command(&["tail"]) else {
        panic!("not tail");
    };
    assert!(!args.no_alerts && args.count.is_none());
    // A tail has no period.
    assert_eq!(
        refused(&["tail", "--since", "1h"]).kind(),
        ErrorKind::UnknownArgument
    );

    assert!(matches!(command(&["stats"]), Command::Stats));
    assert_eq!(refused(&["stats", "extra"]).kind(), ErrorKind::UnknownArgument);

    let Command::Alerts(args) = command(&["alerts", "--since", "1d", "--limit", "10"]) else {
        panic!("not alerts");
    };
    assert_eq!((args.period.since.as_deref(), args.limit), (Some("1d"), 10));
    assert_eq!(
        refused(&["alerts", "--limit", "-5"]).kind(),
        ErrorKind::UnknownArgument
    );
    assert_eq!(
        refused(&["alerts", "--limit", "99999999999"]).kind(),
        ErrorKind::ValueValidation
    );
}

#[test]
fn report_and_export() {
    let Command::Report(args) = command(&["report"]) else {
        panic!("not report");
    };
    assert_eq!(args.lookback, "90d");
    assert!(args.host.is_none() && args.period.since.is_none());
    let Command::Report(args) = command(&["report", "--host", "web-1", "--lookback", "30d", "--from", "0"])
    else {
        panic!("not report");
    };
    assert_eq!(
        (
            args.host.as_deref(),
            args.lookback.as_str(),
            args.period.from.as_deref()
        ),
        (Some("web-1"), "30d", Some("0"))
    );

    let Command::Export(args) = command(&["export"]) else {
        panic!("not export");
    };
    assert_eq!(args.format, Format::Csv);
    assert!(args.output.is_none());
    let Command::Export(args) = command(&["export", "--format", "jsonl", "-o", "out.jsonl", "--failed"])
    else {
        panic!("not export");
    };
    assert_eq!(args.format, Format::Jsonl);
    assert_eq!(args.output, Some(PathBuf::from("out.jsonl")));
    assert!(args.filters.failed);
    let Command::Export(args) = command(&["export", "--format", "ocsf"]) else {
        panic!("not export");
    };
    assert_eq!(args.format, Format::Ocsf);
    let Command::Tail(args) = command(&["tail", "--format", "ocsf"]) else {
        panic!("not tail");
    };
    assert_eq!(args.format, Some(crate::commands::Shown::Ocsf));
    let error = refused(&["export", "--format", "xml"]);
    assert_eq!(error.kind(), ErrorKind::InvalidValue);
    assert!(
        error.to_string().contains("[possible values: csv, jsonl, ocsf]"),
        "{error}"
    );
}

#[test]
fn the_offline_commands() {
    let Command::Ca(args) = command(&[
        "ca",
        "init",
        "--server-name",
        "wt.example",
        "--server-name",
        "10.0.0.1",
    ]) else {
        panic!("not ca");
    };
    let CaCommand::Init {
        dir,
        server_names,
        operator,
        days,
    } = args.command;
    assert_eq!(dir, PathBuf::from("/etc/watchtower/ca"));
    assert_eq!(server_names, ["wt.example", "10.0.0.1"]);
    assert_eq!((operator.as_str(), days), ("operator", 365));
    assert_eq!(
        refused(&["ca", "init"]).kind(),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        refused(&["ca"]).kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );

    let Command::Enroll(args) = command(&[
        "enroll",
        "web-1",
        "--label",
        "region=eu-west",
        "--label",
        "group=web",
        "--days",
        "30",
    ]) else {
        panic!("not enroll");
    };
    assert_eq!(args.host, "web-1");
    assert_eq!(args.labels, ["region=eu-west", "group=web"]);
    assert_eq!(
        (args.days, args.ca_dir, args.out),
        (30, PathBuf::from("/etc/watchtower/ca"), None)
    );
    assert_eq!(refused(&["enroll"]).kind(), ErrorKind::MissingRequiredArgument);
    assert_eq!(
        refused(&["enroll", "web-1", "--days", "a year"]).kind(),
        ErrorKind::ValueValidation
    );

    let Command::Revoke(args) = command(&[
        "revoke",
        "web-1",
        "--serial",
        "1a2b",
        "--revoked-file",
        "/tmp/revoked",
    ]) else {
        panic!("not revoke");
    };
    assert_eq!(
        (args.host.as_str(), args.serial.as_deref(), args.revoked_file),
        ("web-1", Some("1a2b"), Some(PathBuf::from("/tmp/revoked")))
    );
    assert_eq!(refused(&["revoke"]).kind(), ErrorKind::MissingRequiredArgument);
}

#[test]
fn verify() {
    let Command::Verify(args) = command(&[
        "verify",
        "--host",
        "web-1",
        "--public-key",
        "checkpoint-signing.pub",
    ]) else {
        panic!("not verify");
    };
    assert_eq!(args.host.as_deref(), Some("web-1"));
    assert_eq!(args.public_key, [PathBuf::from("checkpoint-signing.pub")]);
    assert!(args.state.is_none() && args.min_retention_days.is_none() && !args.server_check);
    let Command::Verify(args) = command(&[
        "verify",
        "--public-key",
        "k",
        "--state",
        "s.json",
        "--min-retention-days",
        "90",
    ]) else {
        panic!("not verify");
    };
    assert_eq!(
        (args.state, args.min_retention_days),
        (Some(PathBuf::from("s.json")), Some(90))
    );
    // No pinned key, no verify: a checkpoint is worth only the key it is checked with.
    assert_eq!(refused(&["verify"]).kind(), ErrorKind::MissingRequiredArgument);
    assert_eq!(
        refused(&["verify", "--public-key"]).kind(),
        ErrorKind::InvalidValue
    );
}

#[test]
fn unknown_commands_and_help() {
    assert_eq!(refused(&["bogus"]).kind(), ErrorKind::InvalidSubcommand);
    assert_eq!(
        refused(&[]).kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    assert_eq!(refused(&["--help"]).kind(), ErrorKind::DisplayHelp);
    assert_eq!(refused(&["events", "--help"]).kind(), ErrorKind::DisplayHelp);
    assert_eq!(refused(&["--version"]).kind(), ErrorKind::DisplayVersion);
}

#[test]
fn filters_and_periods_default_to_everything() {
    assert_eq!(
        filter_of(&Filters::default(), range(&Period::default()).unwrap()).unwrap(),
        watchtower_model::EventFilter::default()
    );
}
