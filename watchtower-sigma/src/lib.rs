//! Sigma detections over stored events.
//!
//! [`fields`] maps a stored event onto Sigma's Linux field names (`Image`,
//! `CommandLine`, `User`, `DestinationIp`, ...) plus what only Watchtower knows:
//! the login a process belongs to (`LoginUser`, `LoginSource`, `LoginService`,
//! `LogonId`). [`RuleSet`] holds the rules of a directory (`*.yml`, `*.yaml`), each
//! applied only to the events its `logsource` names; a file that does not parse is
//! reported by name and the others load.

pub mod fields;
mod rules;

pub use fields::{Kind, SigmaEvent};
pub use rules::{LoadedRule, RuleError, RuleSet, Severity};
