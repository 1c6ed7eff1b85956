//! The model's enumerations: what kind an event is, how a login ended, and what
//! the journal cross-check made of it.
//!
//! Each has a stable number (its code on the wire and on disk) and a snake_case
//! name (in configs, on the command line and in JSON). A number this build does
//! not know, from a newer agent, is kept as [`Unknown`](Outcome::Unknown) rather
//! than lost, and JSON shows it as the number, so the form the tamper-evidence
//! log hashes tells every value apart.

macro_rules! coded_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal => $label:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            #[default]
            Unspecified,
            $($(#[$vdoc])* $variant,)*
            /// A number this build does not know (a newer peer's), kept as it came.
            Unknown(i32),
        }

        impl From<i32> for $name {
            fn from(code: i32) -> Self {
                match code {
                    0 => Self::Unspecified,
                    $($code => Self::$variant,)*
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for i32 {
            fn from(value: $name) -> i32 {
                match value {
                    $name::Unspecified => 0,
                    $($name::$variant => $code,)*
                    $name::Unknown(code) => code,
                }
            }
        }

        impl $name {
            /// Every value this build knows, `Unspecified` aside.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),*];

            /// The snake_case name (`unknown` for a number this build does not know).
            #[must_use]
            pub fn name(self) -> &'static str {
                match self {
                    $name::Unspecified => "unspecified",
                    $($name::$variant => $label,)*
                    $name::Unknown(_) => "unknown",
                }
            }

            /// The value a snake_case name stands for (`unspecified` is no value).
            #[must_use]
            pub fn from_name(name: &str) -> Option<Self> {
                Self::KNOWN.iter().copied().find(|value| value.name() == name)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $name::Unknown(code) => s.serialize_i32(*code),
                    known => s.serialize_str(known.name()),
                }
            }
        }
    };
}

coded_enum! {
    /// What an event tells of.
    EventKind {
        LoginAttempt = 1 => "login_attempt",
        SessionStart = 2 => "session_start",
        SessionEnd = 3 => "session_end",
        Exec = 4 => "exec",
        Connect = 5 => "connect",
        LoginVerdict = 6 => "login_verdict",
        AgentHealth = 7 => "agent_health",
    }
}

coded_enum! {
    /// How a login attempt ended.
    Outcome {
        Success = 1 => "success",
        Failure = 2 => "failure",
    }
}

coded_enum! {
    /// The journald cross-check's verdict about one login.
    Verdict {
        /// Kernel and journal agree.
        Confirmed = 1 => "confirmed",
        /// The kernel saw a login the journal does not tell of (log suppressed or tampered).
        KernelOnly = 2 => "kernel_only",
        /// The journal tells of a login the kernel did not see (a path the probes missed, or a forgery).
        JournalOnly = 3 => "journal_only",
        /// Only one witness was running.
        Unchecked = 4 => "unchecked",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip_and_unknown_codes_are_kept() {
        for kind in EventKind::KNOWN {
            assert_eq!(EventKind::from(i32::from(*kind)), *kind);
            assert_eq!(EventKind::from_name(kind.name()), Some(*kind));
        }
        assert_eq!(EventKind::from(0), EventKind::Unspecified);
        assert_eq!(EventKind::from_name("unspecified"), None);
        assert_eq!(Outcome::from(7), Outcome::Unknown(7));
        assert_eq!(i32::from(Outcome::Unknown(7)), 7);
        assert_eq!(serde_json::to_value(Outcome::Unknown(7)).unwrap(), 7);
        assert_eq!(serde_json::to_value(Verdict::KernelOnly).unwrap(), "kernel_only");
        assert_eq!(serde_json::to_value(Outcome::Unspecified).unwrap(), "unspecified");
    }
}
