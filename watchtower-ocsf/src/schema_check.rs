//! The independent check of this crate's output, used by the tests: the
//! published OCSF schema as the `ocsf-json-schema` Python package ships it,
//! applied by the `jsonschema` package (both installed by `cargo xtask setup`)
//! through `xtask/ocsf/validate_ocsf.py`. Nothing of the mapping here is used to
//! check it.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// The validator script.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../xtask/ocsf/validate_ocsf.py");
/// The Python that has `jsonschema` (Debian's `python3-jsonschema`).
pub const PYTHON: &str = "/usr/bin/python3";

/// What the validator said.
#[derive(Debug)]
pub enum Checked {
    /// Every event valid, every class asked for present; its summary.
    Valid(String),
    /// Its findings.
    Invalid(String),
    /// The validator is not installed (or could not run).
    Unavailable(String),
}

/// Check OCSF events, one JSON object a line, against the published schema;
/// each class uid in `classes` must occur.
#[must_use]
pub fn check(lines: &str, classes: &[u32]) -> Checked {
    let classes: Vec<String> = classes.iter().map(u32::to_string).collect();
    let child = Command::new(PYTHON)
        .arg(SCRIPT)
        .arg("--classes")
        .arg(classes.join(","))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return Checked::Unavailable(format!("cannot run {PYTHON} {SCRIPT}: {e}")),
    };
    if let Some(mut stdin) = child.stdin.take()
        && let Err(e) = stdin.write_all(lines.as_bytes())
    {
        return Checked::Unavailable(format!("cannot write to the validator: {e}"));
    }
    let output = match child.wait_with_output() {
        Ok(output) => output,
        Err(e) => return Checked::Unavailable(format!("the validator did not finish: {e}")),
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match output.status.code() {
        Some(0) => Checked::Valid(said),
        Some(1) => Checked::Invalid(said),
        _ => Checked::Unavailable(said),
    }
}

/// [`check`], panicking unless valid. A validator that is not installed fails
/// under CI (`CI` set) and is skipped loudly elsewhere.
pub fn assert_valid(lines: &str, classes: &[u32]) {
    match check(lines, classes) {
        Checked::Valid(summary) => eprintln!("OCSF schema check: {summary}"),
        Checked::Invalid(findings) => panic!("not valid OCSF:\n{findings}\n--- the events:\n{lines}"),
        Checked::Unavailable(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the OCSF validator must run in CI (`cargo xtask setup` installs it): {why}"
            );
            eprintln!("\n*** SKIPPED: the OCSF schema check (run `cargo xtask setup`): {why}\n");
        }
    }
}
