//! `cargo xtask proto`: the `watchtower.v1` code, generated from
//! `proto/watchtower.proto` with protox (a protobuf compiler in Rust, so no
//! `protoc` is needed) and tonic-prost-build, into `proto/src/generated/`, which is
//! checked in. `cargo xtask test` regenerates it into a scratch directory and fails
//! when the checked-in copy differs.
//!
//! Every message derives `serde::Serialize` so tools (watchtowerctl --json, export)
//! print events as readable JSON: enum fields by name, session keys as 16 hex
//! digits, hashes and keys as hex.

use std::path::Path;

use anyhow::{Context as _, bail};

use crate::root;

/// The generated file, relative to the workspace.
const GENERATED: &str = "proto/src/generated/watchtower.v1.rs";

/// Generate the code into `out_dir`.
fn generate(out_dir: &Path) -> anyhow::Result<()> {
    let proto_dir = root().join("proto");
    let descriptors = protox::compile([proto_dir.join("watchtower.proto")], [&proto_dir])
        .context("compiling proto/watchtower.proto")?;
    let mut builder = tonic_prost_build::configure()
        .out_dir(out_dir)
        .emit_rerun_if_changed(false)
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
    // Absent from older records: leaving it out of their JSON keeps their hashes.
    builder = builder.field_attribute(
        "watchtower.v1.AgentHealth.capture_start",
        "#[serde(skip_serializing_if = \"Option::is_none\")]",
    );
    builder = builder.field_attribute(
        "watchtower.v1.SessionSummary.child_sessions",
        "#[serde(serialize_with = \"crate::json::sessions\")]",
    );
    for field in [
        "QueryEventsRequest.page_token",
        "QueryEventsResponse.next_page_token",
    ] {
        builder = builder.field_attribute(
            format!("watchtower.v1.{field}"),
            "#[serde(serialize_with = \"crate::json::hex\")]",
        );
    }
    for field in ["SignedCheckpoint.note", "LogEntry.entry"] {
        builder = builder.field_attribute(
            format!("watchtower.v1.{field}"),
            "#[serde(serialize_with = \"crate::json::text\")]",
        );
    }
    builder = builder.field_attribute(
        "watchtower.v1.Proof.hashes",
        "#[serde(serialize_with = \"crate::json::hex_list\")]",
    );
    builder
        .compile_fds(descriptors)
        .context("generating the tonic/prost code")?;
    Ok(())
}

/// Regenerate the checked-in code.
pub fn regenerate() -> anyhow::Result<()> {
    let out = root().join(GENERATED);
    generate(out.parent().expect("generated file has a directory"))?;
    println!("proto: wrote {GENERATED}");
    Ok(())
}

/// Fail unless regenerating gives exactly the checked-in code.
pub fn check() -> anyhow::Result<()> {
    let scratch = crate::target_dir().join("proto-check");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    generate(&scratch)?;
    let fresh = std::fs::read(scratch.join("watchtower.v1.rs"))?;
    let checked_in = std::fs::read(root().join(GENERATED)).with_context(|| format!("reading {GENERATED}"))?;
    if fresh != checked_in {
        bail!(
            "{GENERATED} is not what proto/watchtower.proto generates: run `cargo xtask proto` and commit it"
        );
    }
    println!("proto: {GENERATED} is up to date");
    Ok(())
}
