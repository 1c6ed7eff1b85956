//! `events`: stored events, oldest first, as a table or JSON lines.

use crate::client::Client;
use crate::commands::{Filters, Period, filter_of, json_line, range};
use crate::render::{EVENT_HEADER, event_cells, row, table};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub filters: Filters,
    #[command(flatten)]
    pub period: Period,
    /// At most this many (0: all).
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

pub async fn run(args: &Args, client: &mut Client, json: bool) -> anyhow::Result<()> {
    let Args {
        filters,
        period,
        limit,
    } = args;
    let filter = filter_of(filters, range(period)?)?;
    let mut rows = Vec::new();
    let mut n = 0usize;
    client
        .events(&filter, |stored| {
            n += 1;
            if json {
                json_line(&stored)?;
            } else {
                rows.push(event_cells(&row(&stored)));
            }
            Ok(*limit == 0 || n < *limit)
        })
        .await?;
    if !json {
        println!("{}", events_table(rows));
        eprintln!("{n} events");
    }
    Ok(())
}

/// The table of events (rows of [`event_cells`]).
fn events_table(rows: Vec<Vec<String>>) -> String {
    table(&EVENT_HEADER, rows).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::fixtures;

    #[test]
    fn a_table_of_two_events() {
        let rows = [fixtures::failed_login(), fixtures::exec()]
            .iter()
            .map(|e| event_cells(&row(e)))
            .collect();
        assert_eq!(
            events_table(rows),
            [
                " TIME                      HOST   SEQ  KIND           USER   SESSION           REMOTE    OUTCOME  DETAIL                                    ",
                " 2023-11-14T22:13:20.000Z  web-1  9    login_attempt  alice                    10.0.0.9  failure  sshd tty=ssh PAM_AUTH_ERR at authenticate ",
                " 2023-11-14T22:13:21.500Z  web-1  10   exec           alice  00000000000000ab                     id -un [/usr/bin/id]                      ",
            ]
            .join("\n")
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(
            events_table(Vec::new()),
            " TIME  HOST  SEQ  KIND  USER  SESSION  REMOTE  OUTCOME  DETAIL "
        );
    }
}
