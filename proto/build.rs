//! Generates the tonic/prost code, with `serde::Serialize` on every message so tools
//! (watchtowerctl --json, export) print events as readable JSON: enum fields by name,
//! session keys as 16 hex digits, hashes and keys as hex.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=watchtower.proto");
    let mut builder = tonic_prost_build::configure()
        .message_attribute(".", "#[derive(serde::Serialize)]")
        .enum_attribute(".", "#[derive(serde::Serialize)]")
        .enum_attribute(".", "#[serde(rename_all = \"snake_case\")]");
    let outcome = [
        "LoginAttempt.outcome",
        "KernelWitness.outcome",
        "JournalWitness.outcome",
        "LoginVerdict.outcome",
        "EventFilter.outcome",
    ];
    for field in outcome {
        builder = builder.field_attribute(
            format!("watchtower.v1.{field}"),
            "#[serde(serialize_with = \"crate::json::outcome\")]",
        );
    }
    builder = builder
        .field_attribute(
            "watchtower.v1.LoginVerdict.verdict",
            "#[serde(serialize_with = \"crate::json::verdict\")]",
        )
        .field_attribute(
            "watchtower.v1.EventFilter.kinds",
            "#[serde(serialize_with = \"crate::json::kinds\")]",
        );
    let session = [
        "SessionStart.session",
        "SessionEnd.session",
        "SessionSummary.session",
    ];
    for field in session {
        builder = builder.field_attribute(
            format!("watchtower.v1.{field}"),
            "#[serde(serialize_with = \"crate::json::session\")]",
        );
    }
    let optional_session = [
        "SessionStart.parent_session",
        "SessionEnd.parent_session",
        "SessionSummary.parent_session",
        "Exec.session",
        "Connect.session",
        "LoginAttempt.from_session",
        "KernelWitness.from_session",
        "EventFilter.session",
    ];
    for field in optional_session {
        builder = builder.field_attribute(
            format!("watchtower.v1.{field}"),
            "#[serde(serialize_with = \"crate::json::optional_session\")]",
        );
    }
    builder = builder.field_attribute(
        "watchtower.v1.SessionSummary.child_sessions",
        "#[serde(serialize_with = \"crate::json::sessions\")]",
    );
    for field in [
        "Checkpoint.root",
        "SignedCheckpoint.signature",
        "SignedCheckpoint.public_key",
        "QueryEventsRequest.page_token",
        "QueryEventsResponse.next_page_token",
    ] {
        builder = builder.field_attribute(
            format!("watchtower.v1.{field}"),
            "#[serde(serialize_with = \"crate::json::hex\")]",
        );
    }
    builder.compile_protos(&["watchtower.proto"], &["."])?;
    Ok(())
}
