//! Kernel boot-time nanoseconds to wall-clock time, and RFC 3339 formatting.

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `CLOCK_BOOTTIME` now, in ns: the clock the probes stamp records with.
#[must_use]
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// Unix time in ns of a `CLOCK_BOOTTIME` stamp, using the clocks' current distance
/// (so a wall-clock step is followed).
#[must_use]
pub fn boot_to_unix_ns(boot_ns: u64) -> u64 {
    let real = clock_ns(libc::CLOCK_REALTIME);
    let boot = clock_ns(libc::CLOCK_BOOTTIME);
    real.saturating_sub(boot).saturating_add(boot_ns)
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` for a Unix time in ns.
#[must_use]
pub fn rfc3339(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let nanos = unix_ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 (a leap day) 12:34:56.000000789
        assert_eq!(rfc3339(951_827_696_000_000_789), "2000-02-29T12:34:56.000000789Z");
        assert_eq!(
            rfc3339(1_798_761_599_999_999_999),
            "2026-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn boot_stamps_map_near_now() {
        let now_boot = boottime_ns();
        let unix = boot_to_unix_ns(now_boot);
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(unix.abs_diff(wall) < 1_000_000_000, "{unix} vs {wall}");
    }
}
