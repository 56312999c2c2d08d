//! The process logger. It replaces Rocket's so that every line, whoever writes it, passes
//! through [`mask_secrets`], and so that other crates' chatter stays out at every level.
//!
//! Request lines are written by [`crate::server`] (method, path, query with `apikey` masked,
//! status, time). Rocket's own request-level output, and at `debug` the HTTP stack's, would
//! print request headers, where `X-API-Key` and `Authorization` live: below warnings, only
//! clientele's own lines and Rocket's launch summary are let through.

use std::io::Write;
use std::sync::Once;

use log::{Level, LevelFilter, Metadata, Record};

struct Logger;

/// The log target of the start-up lines that show at every level but `off`.
pub const LAUNCH: &str = "clientele::launch";

impl log::Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Rocket's "launched" lines are warnings so they show at every level; ours too.
        let launch = record.target().contains("rocket::launch") || record.target() == LAUNCH;
        let ours = record.target().starts_with("clientele");
        // Indented lines are details of a request Rocket is routing ("no matching routes").
        let detail = record.target().ends_with('_');
        if !ours && !launch && (record.level() > Level::Warn || detail) {
            return;
        }
        // Rocket marks indented lines with a target ending in `_`.
        let indent = if record.target().ends_with('_') {
            "   >> "
        } else {
            ""
        };
        let prefix = match record.level() {
            Level::Error => "error: ",
            Level::Warn if !launch => "warning: ",
            _ => "",
        };
        let line = mask_secrets(&format!("{indent}{prefix}{}", record.args()));
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn flush(&self) {}
}

/// Installs the logger once per process and sets its level from Rocket's `log_level` names:
/// `off`, `critical` (warnings and errors), `normal` (requests too) or `debug`.
pub fn init(level: &str) {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let _ = log::set_logger(&Logger);
    });
    log::set_max_level(match level {
        "off" => LevelFilter::Off,
        "critical" => LevelFilter::Warn,
        "debug" => LevelFilter::Trace,
        _ => LevelFilter::Info,
    });
}

/// Replaces the value of every `apikey=` parameter in `text` with `***`.
pub fn mask_secrets(text: &str) -> String {
    const NAME: &str = "apikey=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_ignore_case(rest, NAME) {
        let value_start = at + NAME.len();
        out.push_str(&rest[..value_start]);
        out.push_str("***");
        let value_len = rest[value_start..]
            .find(|c: char| c == '&' || c == '#' || c.is_whitespace() || c == ':' || c == '"')
            .unwrap_or(rest.len() - value_start);
        rest = &rest[value_start + value_len..];
    }
    out.push_str(rest);
    out
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::mask_secrets;

    #[test]
    fn api_keys_in_query_strings_are_masked() {
        assert_eq!(
            mask_secrets("GET /CUSTOMER/LIST?apikey=s3cr3t&id_client=1:"),
            "GET /CUSTOMER/LIST?apikey=***&id_client=1:"
        );
        assert_eq!(
            mask_secrets("x?APIKEY=abc def ApiKey=q"),
            "x?APIKEY=*** def ApiKey=***"
        );
        assert_eq!(mask_secrets("nothing here"), "nothing here");
    }
}
