//! `cargo xtask test`: every test of the workspace, the privileged end-to-end tests
//! included, one at a time.
//!
//! One package selection (the default members) for the build and the tests, so
//! cargo resolves features once and the C++ of `RocksDB` is compiled once per
//! profile. The deployment tests install the Debian packages of `cargo xtask
//! dist`, which is built first (twice, to check it is reproducible).

use crate::{cargo, root, run, target_dir};

pub fn test(filter: Option<&str>) -> anyhow::Result<()> {
    // The binaries the end-to-end tests start, and every test target.
    run(cargo().args(["build", "--all-targets"]))?;
    if filter.is_some() {
        crate::dist::dist()?;
    } else {
        crate::dist::check_reproducible()?;
    }
    let mut tests = cargo();
    tests
        .args(["test", "--", "--test-threads=1"])
        .env(
            "WATCHTOWER_AGENT_BIN",
            target_dir().join("debug/watchtower-agent"),
        )
        .env(
            "WATCHTOWER_SERVER_BIN",
            target_dir().join("debug/watchtower-server"),
        )
        .env("WATCHTOWERCTL_BIN", target_dir().join("debug/watchtowerctl"))
        .env("WATCHTOWER_DIST", root().join("dist"));
    if let Some(filter) = filter {
        tests.arg(filter);
    }
    run(&mut tests)
}
