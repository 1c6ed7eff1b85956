//! Any text as a message of any watched program: the parsers never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watchtower_journal::{Program, parse_message};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for program in [Program::Sshd, Program::Sudo, Program::Su, Program::Login, Program::Logind] {
        let _ = parse_message(program, &text);
    }
});
