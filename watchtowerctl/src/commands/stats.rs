//! `stats`: the server's counters, one per row (or one JSON object).

use watchtower_proto::pb::StatsResponse;

use crate::client::Client;
use crate::commands::json_line;
use crate::render::table;

pub async fn run(client: &mut Client, json: bool) -> anyhow::Result<()> {
    let stats = client.stats().await?;
    if json {
        json_line(&stats)?;
    } else {
        println!("{}", stats_table(&stats)?);
    }
    Ok(())
}

/// Every counter (by its JSON name) and its value.
fn stats_table(stats: &StatsResponse) -> anyhow::Result<String> {
    let v = serde_json::to_value(stats)?;
    let rows = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| vec![k.clone(), v.to_string()]);
    Ok(table(&["COUNTER", "VALUE"], rows).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_as_a_table() {
        let stats = StatsResponse {
            events_stored: 42,
            rejected: [("revoked".to_owned(), 2)].into_iter().collect(),
            hosts: 3,
            ..StatsResponse::default()
        };
        let text = stats_table(&stats).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(lines[0], " COUNTER                   VALUE");
        assert!(lines.contains(&" events_stored             42"), "{text}");
        assert!(
            lines.contains(&" rejected                  {\"revoked\":2}"),
            "{text}"
        );
        assert!(lines.contains(&" hosts                     3"), "{text}");
    }
}
