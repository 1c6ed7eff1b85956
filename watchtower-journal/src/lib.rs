//! The journal as a second witness of logins.
//!
//! Three layers, all pure and testable without root:
//! - [`entry`]: one record of `journalctl -o json` into a [`JournalEntry`] (trusted
//!   fields such as `_PID` and `_COMM` kept apart from what the writer claims);
//! - [`message`]: the messages users know (sshd, sudo, su, login, `pam_unix`,
//!   systemd-logind) into a typed [`AuthMessage`];
//! - [`story`]: the several lines one login writes, grouped by PID as an operator
//!   would read them, into one [`JournalLogin`] per decisive line.
//!
//! Nothing here panics on any input: the parsers are fuzzed (`fuzz/`).

pub mod entry;
pub mod message;
pub mod story;

pub use entry::{EntryError, JournalEntry, parse_entry};
pub use message::{AuthMessage, Program, PublicKey, SudoLine, SudoOutcome, parse_message};
pub use story::{JournalLogin, LoginStories, Outcome, StoryCounters};
