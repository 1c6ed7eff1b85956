//! Finding the libpam the system's login programs load: the dynamic linker's
//! cache (`ldconfig -p`), then the usual library directories of the major
//! distributions.

use std::path::{Path, PathBuf};

const SONAME: &str = "libpam.so.0";
const FALLBACK_DIRS: [&str; 7] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/lib/aarch64-linux-gnu",
];

/// The path `ldconfig -p` output gives for `soname` on this machine's architecture.
#[must_use]
pub fn from_ldconfig_output(output: &str, soname: &str) -> Option<PathBuf> {
    let wanted_arch = if cfg!(target_arch = "x86_64") {
        "x86-64"
    } else {
        "AArch64"
    };
    let mut any = None;
    for line in output.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix(soname) else {
            continue;
        };
        let Some((flags, path)) = rest.split_once("=>") else {
            continue;
        };
        let path = PathBuf::from(path.trim());
        if flags.contains(wanted_arch) {
            return Some(path);
        }
        any.get_or_insert(path);
    }
    any
}

/// Where libpam is on this machine, or every place looked at.
pub fn discover() -> Result<PathBuf, String> {
    let mut looked = Vec::new();
    for ldconfig in ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"] {
        if let Ok(out) = std::process::Command::new(ldconfig).arg("-p").output() {
            if let Some(path) = from_ldconfig_output(&String::from_utf8_lossy(&out.stdout), SONAME)
                && path.exists()
            {
                return Ok(path);
            }
            looked.push(format!("{ldconfig} -p"));
            break;
        }
    }
    for dir in FALLBACK_DIRS {
        let candidate = Path::new(dir).join(SONAME);
        if candidate.exists() {
            return Ok(candidate);
        }
        looked.push(candidate.display().to_string());
    }
    Err(format!("{SONAME} not found (looked in: {})", looked.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ldconfig -p` on Debian 12 (x86-64), trimmed.
    const DEBIAN: &str = "1234 libs found in cache `/etc/ld.so.cache'
\tlibpamc.so.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libpamc.so.0
\tlibpam_misc.so.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libpam_misc.so.0
\tlibpam.so.0 (libc6) => /lib/i386-linux-gnu/libpam.so.0
\tlibpam.so.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libpam.so.0
";

    #[test]
    fn picks_this_architecture_and_the_exact_soname() {
        let found = from_ldconfig_output(DEBIAN, "libpam.so.0").unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(found, PathBuf::from("/lib/x86_64-linux-gnu/libpam.so.0"));
        }
        assert_eq!(from_ldconfig_output(DEBIAN, "libnothing.so.1"), None);
        // Fedora's 64-bit entry.
        let fedora = "\tlibpam.so.0 (libc6,x86-64) => /lib64/libpam.so.0\n";
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                from_ldconfig_output(fedora, "libpam.so.0"),
                Some(PathBuf::from("/lib64/libpam.so.0"))
            );
        }
    }
}
