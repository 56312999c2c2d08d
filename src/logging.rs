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
        // Rocket's launch summary (its settings, every route, catcher and fairing: about a
        // hundred lines) is for debugging: below `debug`, only its errors are shown. Its
        // lines are warnings so they show at every level; ours (`LAUNCH`) too.
        let rocket_launch = record.target().contains("rocket::launch");
        if rocket_launch && record.level() > Level::Error && log::max_level() < LevelFilter::Trace {
            return;
        }
        let launch = rocket_launch || record.target() == LAUNCH;
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

/// Parameter names whose values are secrets: any name that contains one of these, in any
/// case and after percent-decoding (`apikey`, `password`, `currentPassword`, `newPassword`,
/// `resetToken`, `token`...). Masking a harmless parameter costs nothing; missing a secret
/// one would put it in a log file.
const SECRET_NAMES: &[&str] = &["apikey", "api_key", "password", "passwd", "token", "secret"];

/// Replaces the value of every `NAME=value` pair in `text` whose name is a secret's (see
/// [`SECRET_NAMES`]) with `***`: query strings in request lines, URLs in error messages.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut searched = 0;
    while let Some(found) = text[searched..].find('=') {
        let equals = searched + found;
        let value_start = equals + 1;
        searched = value_start;
        let name_start = text[..equals]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_name_char(*c))
            .last()
            .map_or(equals, |(at, _)| at);
        if name_start == equals || !is_secret_name(&text[name_start..equals]) {
            continue;
        }
        let value_len = text[value_start..]
            .find(|c: char| c == '&' || c == '#' || c.is_whitespace() || c == ':' || c == '"')
            .unwrap_or(text.len() - value_start);
        out.push_str(&text[copied..value_start]);
        out.push_str("***");
        copied = value_start + value_len;
        searched = copied;
    }
    out.push_str(&text[copied..]);
    out
}

/// Characters of a parameter name as clients send them, percent-encoding included.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '%' | '[' | ']' | '+')
}

fn is_secret_name(raw: &str) -> bool {
    let decoded: String = form_urlencoded::parse(raw.as_bytes())
        .next()
        .map(|(name, _)| name.to_ascii_lowercase())
        .unwrap_or_default();
    SECRET_NAMES.iter().any(|secret| decoded.contains(secret))
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

    #[test]
    fn passwords_and_tokens_in_query_strings_are_masked_however_spelled() {
        assert_eq!(
            mask_secrets(
                "POST /CUSTOMER/PASSWORD/?email=a@b.be&currentPassword=old1&newPassword=new2 200"
            ),
            "POST /CUSTOMER/PASSWORD/?email=a@b.be&currentPassword=***&newPassword=*** 200"
        );
        assert_eq!(
            mask_secrets("GET /x?%70assword=p1&PASSWORD=p2&resetToken=t1&id_client=3"),
            "GET /x?%70assword=***&PASSWORD=***&resetToken=***&id_client=3"
        );
        assert_eq!(mask_secrets("a?since=12&limit=5"), "a?since=12&limit=5");
        assert_eq!(mask_secrets("=x é=y password="), "=x é=y password=***");
    }
}
