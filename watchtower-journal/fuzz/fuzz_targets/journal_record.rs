//! Any bytes as one line of `journalctl -o json`: parsing and grouping never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watchtower_journal::{LoginStories, parse_entry};

fuzz_target!(|data: &[u8]| {
    let mut stories = LoginStories::new();
    // Each line is a record, as journalctl writes them; several lines exercise
    // the grouping by PID.
    for line in data.split(|b| *b == b'\n') {
        if let Ok(entry) = parse_entry(line) {
            let _ = stories.push(&entry);
        }
    }
});
