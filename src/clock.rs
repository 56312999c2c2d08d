//! UTC times written as the audit trail writes them (RFC 3339, `2026-11-30T01:02:03.456Z`),
//! without a date library: for log lines, the last use of API keys, and `--since`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since 1970 (UTC) at `at`; 0 for a time before it.
pub fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for `millis` since 1970 (UTC): what the audit trail stores.
pub fn utc_millis(millis: u64) -> String {
    let (date, seconds) = civil(millis / 1000);
    format!("{date}T{seconds}.{:03}Z", millis % 1000)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for `seconds` since 1970 (UTC).
pub fn utc_seconds(seconds: u64) -> String {
    let (date, time) = civil(seconds);
    format!("{date}T{time}Z")
}

/// Now, as [`utc_millis`] writes it.
pub fn now_utc_millis() -> String {
    utc_millis(millis(SystemTime::now()))
}

/// The date (`YYYY-MM-DD`) and time of day (`HH:MM:SS`) of `seconds` since 1970, UTC.
fn civil(seconds: u64) -> (String, String) {
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let rest = seconds % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}",
            rest / 3_600,
            rest % 3_600 / 60,
            rest % 60
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_the_audit_trail_writes_them() {
        assert_eq!(utc_seconds(1_795_973_400), "2026-11-29T17:30:00Z");
        assert_eq!(utc_seconds(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_millis(1_795_973_400_007), "2026-11-29T17:30:00.007Z");
        assert_eq!(utc_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(now_utc_millis().len(), "2026-11-29T17:30:00.007Z".len());
    }
}
