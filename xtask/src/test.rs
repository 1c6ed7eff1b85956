//! `cargo xtask test`: unit tests, then the privileged end-to-end tests.

use crate::{cargo, run, target_dir};

pub fn test(filter: Option<&str>) -> anyhow::Result<()> {
    run(cargo().args([
        "build",
        "--package",
        "watchtower-agent",
        "--package",
        "watchtower-server",
    ]))?;
    run(cargo().args([
        "test",
        "--workspace",
        "--exclude",
        "watchtower-e2e",
        "--exclude",
        "watchtower-ebpf",
    ]))?;
    let agent = target_dir().join("debug/watchtower-agent");
    let server = target_dir().join("debug/watchtower-server");
    let mut e2e = cargo();
    e2e.args(["test", "--package", "watchtower-e2e", "--", "--test-threads=1"])
        .env("WATCHTOWER_AGENT_BIN", &agent)
        .env("WATCHTOWER_SERVER_BIN", &server);
    if let Some(filter) = filter {
        e2e.arg(filter);
    }
    run(&mut e2e)
}
