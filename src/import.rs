//! Reading customers from files (the old API's saved JSON response) and writing them to the
//! store in one transaction. The demo data is loaded through the same path.
//!
//! Every value is checked before anything is written; an error names the line and the field.

use std::collections::HashMap;
use std::fmt;

use rusqlite::{params_from_iter, Connection, OptionalExtension, ToSql};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::auth::{self, PasswordHasher, Secret};
use crate::customer::{Customer, Field, COLUMNS};

/// The longest text accepted in a string field.
const MAX_TEXT: usize = 4096;

/// What a file says about a customer's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordInput {
    /// No `password` field: an existing customer keeps the password they have.
    Absent,
    /// An empty password: the customer cannot log in.
    Empty,
    /// Plain text, to be hashed.
    Plain(Secret),
    /// Already an Argon2 or bcrypt hash, kept as it is.
    Hashed(String),
}

/// One customer read from a file, with where it was.
#[derive(Debug, Clone)]
pub struct Record {
    pub line: usize,
    pub customer: Customer,
    pub password: PasswordInput,
}

/// A value in a file that cannot be imported: `LINE: field: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RecordError {
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.line, self.message)
        } else {
            write!(f, "{}: {}: {}", self.line, self.field, self.message)
        }
    }
}

fn record_error(line: usize, field: &str, message: impl Into<String>) -> RecordError {
    RecordError {
        line,
        field: field.to_owned(),
        message: message.into(),
    }
}

/// The old API's envelope (also what `clientele export` writes).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    success: Option<Value>,
    #[serde(borrow)]
    result: JsonResult<'a>,
}

#[derive(Deserialize)]
struct JsonResult<'a> {
    #[serde(borrow)]
    customer: Vec<&'a RawValue>,
}

/// Parses a JSON file of customers: `{"success":"true",...,"result":{"customer":[...]}}` as
/// the old API answered (and `clientele export` writes), or a bare array of customer objects.
pub fn parse_json(text: &str) -> Result<Vec<Record>, RecordError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let not_a_list = |error: serde_json::Error| {
        record_error(
            error.line().max(1),
            "",
            format!(
                "not a customer list (expected {{\"result\":{{\"customer\":[...]}}}} \
                 or an array of customers): {error}"
            ),
        )
    };
    let items: Vec<&RawValue> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(not_a_list)?
    } else {
        let envelope: Envelope<'_> = serde_json::from_str(text).map_err(not_a_list)?;
        if matches!(&envelope.success, Some(Value::String(s)) if s == "false") {
            return Err(record_error(1, "success", "the file is an error response"));
        }
        envelope.result.customer
    };
    let records = items
        .into_iter()
        .map(|raw| {
            // The raw value borrows from `text`, so its address says where it starts.
            let offset = (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
            let line = text[..offset.min(text.len())].matches('\n').count() + 1;
            let object: serde_json::Map<String, Value> = serde_json::from_str(raw.get())
                .map_err(|_| record_error(line, "", "expected a customer object"))?;
            let fields = object
                .into_iter()
                .map(|(name, value)| (name, json_scalar(value)))
                .collect::<Vec<_>>();
            record_from_fields(line, fields)
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_unique(&records)?;
    Ok(records)
}

/// A JSON scalar as the text a spreadsheet would hold; objects and arrays stay `None`.
fn json_scalar(value: Value) -> Option<String> {
    match value {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Builds a record from `(name, text)` pairs, checking each value against its field's rules.
/// A `None` value is a nested JSON object or array, which no field accepts.
pub fn record_from_fields(
    line: usize,
    fields: impl IntoIterator<Item = (String, Option<String>)>,
) -> Result<Record, RecordError> {
    let mut customer = empty_customer();
    let mut password = PasswordInput::Absent;
    let mut has_key = false;
    for (name, value) in fields {
        let Some(value) = value else {
            return Err(record_error(
                line,
                &name,
                "expected a single value, not a list or object",
            ));
        };
        if name == "password" {
            password = if value.is_empty() {
                PasswordInput::Empty
            } else if auth::is_hash(&value) {
                PasswordInput::Hashed(value)
            } else {
                PasswordInput::Plain(Secret::new(value))
            };
            continue;
        }
        let field =
            Field::from_name(&name).ok_or_else(|| record_error(line, &name, "unknown field"))?;
        has_key |= field == Field::Clcleunik;
        set_field(&mut customer, field, value)
            .map_err(|message| record_error(line, &name, message))?;
    }
    if !has_key {
        return Err(record_error(
            line,
            "clcleunik",
            "missing (every customer needs its key)",
        ));
    }
    Ok(Record {
        line,
        customer,
        password,
    })
}

fn empty_customer() -> Customer {
    Customer {
        clcleunik: 0,
        customer_number: String::new(),
        groupe_price: String::new(),
        login: String::new(),
        last_name: String::new(),
        first_name: String::new(),
        address: String::new(),
        zipcode: String::new(),
        city: String::new(),
        country: String::new(),
        phone: String::new(),
        cellphone: String::new(),
        email: String::new(),
        denomination: String::new(),
        tva_number: String::new(),
        added_date: String::new(),
        add_hour: String::new(),
        language: String::new(),
        show_price: false,
        web_remise: 0.0,
        megawinapp_login: String::new(),
        notification_accepted: false,
    }
}

/// Checks `value` against the rules of `field` and stores it.
fn set_field(customer: &mut Customer, field: Field, value: String) -> Result<(), String> {
    let text = |value: String| {
        if value.len() > MAX_TEXT {
            Err(format!("longer than {MAX_TEXT} bytes"))
        } else {
            Ok(value)
        }
    };
    match field {
        Field::Clcleunik => {
            customer.clcleunik = value
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|id| *id >= 1 && value.trim().bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("expected a positive whole number, found {value:?}"))?;
        }
        Field::ShowPrice => customer.show_price = parse_flag(&value)?,
        Field::NotificationAccepted => customer.notification_accepted = parse_flag(&value)?,
        Field::WebRemise => {
            let trimmed = value.trim().replace(',', ".");
            customer.web_remise = if trimmed.is_empty() {
                0.0
            } else {
                trimmed
                    .parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite() && (0.0..=100.0).contains(p))
                    .ok_or_else(|| {
                        format!("expected a percentage from 0 to 100, found {value:?}")
                    })?
            };
        }
        Field::AddedDate => {
            if !value.is_empty() && !is_date(&value) {
                return Err(format!("expected a date as YYYY-MM-DD, found {value:?}"));
            }
            customer.added_date = value;
        }
        Field::AddHour => {
            if !value.is_empty() && !is_time(&value) {
                return Err(format!("expected a time as HH:MM:SS, found {value:?}"));
            }
            customer.add_hour = value;
        }
        Field::CustomerNumber => customer.customer_number = text(value)?,
        Field::GroupePrice => customer.groupe_price = text(value)?,
        Field::Login => customer.login = text(value)?,
        Field::LastName => customer.last_name = text(value)?,
        Field::FirstName => customer.first_name = text(value)?,
        Field::Address => customer.address = text(value)?,
        Field::Zipcode => customer.zipcode = text(value)?,
        Field::City => customer.city = text(value)?,
        Field::Country => customer.country = text(value)?,
        Field::Phone => customer.phone = text(value)?,
        Field::Cellphone => customer.cellphone = text(value)?,
        Field::Email => customer.email = text(value)?,
        Field::Denomination => customer.denomination = text(value)?,
        Field::TvaNumber => customer.tva_number = text(value)?,
        Field::Language => customer.language = text(value)?,
        Field::MegawinappLogin => customer.megawinapp_login = text(value)?,
    }
    Ok(())
}

/// `true`/`false`, `1`/`0` (any case); empty is false.
fn parse_flag(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        _ => Err(format!("expected 1, 0, true or false, found {value:?}")),
    }
}

fn digits(value: &str, lengths: &[usize], separator: u8) -> Option<Vec<u32>> {
    let parts: Vec<&str> = value.split(separator as char).collect();
    if parts.len() != lengths.len() {
        return None;
    }
    parts
        .iter()
        .zip(lengths)
        .map(|(part, len)| {
            (part.len() == *len && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse().ok())
                .flatten()
        })
        .collect()
}

fn is_date(value: &str) -> bool {
    matches!(digits(value, &[4, 2, 2], b'-').as_deref(),
        Some([_, month, day]) if (1..=12).contains(month) && (1..=31).contains(day))
}

fn is_time(value: &str) -> bool {
    matches!(digits(value, &[2, 2, 2], b':').as_deref(),
        Some([h, m, s]) if *h < 24 && *m < 60 && *s < 60)
}

/// A key may appear only once in a file.
fn check_unique(records: &[Record]) -> Result<(), RecordError> {
    let mut first_line = HashMap::with_capacity(records.len());
    for record in records {
        if let Some(line) = first_line.insert(record.customer.clcleunik, record.line) {
            return Err(record_error(
                record.line,
                "clcleunik",
                format!(
                    "{} appears twice (first on line {line})",
                    record.customer.clcleunik
                ),
            ));
        }
    }
    Ok(())
}

/// What a write did, for the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deleted: usize,
}

/// Hashes the plain-text passwords of `records` (in parallel) and writes them all in one
/// transaction: inserted or updated by `clcleunik`; with `replace`, customers not in `records`
/// are deleted. Nothing is written if anything fails.
pub fn write(
    conn: &mut Connection,
    records: &[Record],
    hasher: &PasswordHasher,
    replace: bool,
) -> Result<Summary, Box<dyn std::error::Error + Send + Sync>> {
    let plain: Vec<Secret> = records
        .iter()
        .filter_map(|record| match &record.password {
            PasswordInput::Plain(secret) => Some(secret.clone()),
            _ => None,
        })
        .collect();
    let mut hashes = hasher.hash_many(&plain)?.into_iter();

    let tx = conn.transaction()?;
    let mut summary = Summary::default();
    {
        let placeholders = vec!["?"; 23].join(", ");
        let mut select = tx.prepare(&format!(
            "SELECT {COLUMNS}, password_hash FROM customer WHERE clcleunik = ?"
        ))?;
        let mut upsert = tx.prepare(&format!(
            "INSERT OR REPLACE INTO customer ({COLUMNS}, password_hash, updated_at) \
             VALUES ({placeholders}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
        ))?;
        for record in records {
            let existing = select
                .query_row([record.customer.clcleunik], |row| {
                    Ok((Customer::from_row(row)?, row.get::<_, Option<String>>(22)?))
                })
                .optional()?;
            let password: Option<String> = match &record.password {
                PasswordInput::Absent => existing.as_ref().and_then(|(_, hash)| hash.clone()),
                PasswordInput::Empty => None,
                PasswordInput::Plain(_) => hashes.next(),
                PasswordInput::Hashed(hash) => Some(hash.clone()),
            };
            match &existing {
                None => summary.inserted += 1,
                Some((customer, hash))
                    if *customer == record.customer
                        && *hash == password
                        && !matches!(record.password, PasswordInput::Plain(_)) =>
                {
                    summary.unchanged += 1;
                    continue;
                }
                Some(_) => summary.updated += 1,
            }
            let params = record.customer.to_params();
            let all: Vec<&dyn ToSql> = params
                .iter()
                .copied()
                .chain([&password as &dyn ToSql])
                .collect();
            upsert.execute(params_from_iter(all))?;
        }
        if replace {
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS import_keys (clcleunik INTEGER PRIMARY KEY); \
                 DELETE FROM import_keys;",
            )?;
            let mut keep = tx.prepare("INSERT INTO import_keys VALUES (?)")?;
            for record in records {
                keep.execute([record.customer.clcleunik])?;
            }
            summary.deleted = tx.execute(
                "DELETE FROM customer WHERE clcleunik NOT IN (SELECT clcleunik FROM import_keys)",
                [],
            )?;
            tx.execute_batch("DROP TABLE import_keys;")?;
        }
    }
    tx.commit()?;
    Ok(summary)
}

/// The demo customers shipped in `data/demo-customers.json`, built into the binary so that it
/// seeds from any working directory.
pub const DEMO_JSON: &str = include_str!("../data/demo-customers.json");

/// Fills an empty store with the demo customers. Returns how many were written.
pub fn seed_demo(
    conn: &mut Connection,
    hasher: &PasswordHasher,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let records = parse_json(DEMO_JSON).map_err(|e| format!("demo-customers.json:{e}"))?;
    let summary = write(conn, &records, hasher, false)?;
    Ok(summary.inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_carry_the_line_of_the_customer() {
        let text = "{\"result\":{\"customer\":[\n{\"clcleunik\":1},\n{\"clcleunik\":\"abc\"}\n]}}";
        let error = parse_json(text).unwrap_err();
        assert_eq!(error.line, 3);
        assert_eq!(error.field, "clcleunik");
    }

    #[test]
    fn unknown_fields_and_duplicate_keys_are_refused() {
        let unknown = parse_json(r#"[{"clcleunik":1,"nickname":"x"}]"#).unwrap_err();
        assert_eq!(unknown.field, "nickname");
        let twice = parse_json("[{\"clcleunik\":1},\n{\"clcleunik\":1}]").unwrap_err();
        assert!(twice.message.contains("appears twice"), "{twice}");
    }

    #[test]
    fn values_are_checked_by_field() {
        assert!(parse_json(r#"[{"clcleunik":1,"addedDate":"2024-13-01"}]"#).is_err());
        assert!(parse_json(r#"[{"clcleunik":1,"addHour":"25:00:00"}]"#).is_err());
        assert!(parse_json(r#"[{"clcleunik":1,"webRemise":"abc"}]"#).is_err());
        let ok = parse_json(
            r#"[{"clcleunik":"7","webRemise":"12,5","showPrice":"1","notification_accepted":0}]"#,
        )
        .unwrap();
        assert_eq!(ok[0].customer.clcleunik, 7);
        assert_eq!(ok[0].customer.web_remise, 12.5);
        assert!(ok[0].customer.show_price);
    }

    #[test]
    fn passwords_are_classified() {
        let records = parse_json(
            r#"[{"clcleunik":1,"password":"pw"},{"clcleunik":2,"password":""},
                {"clcleunik":3,"password":"$2y$10$abcdefghijklmnopqrstuv"},{"clcleunik":4}]"#,
        )
        .unwrap();
        assert!(matches!(records[0].password, PasswordInput::Plain(_)));
        assert_eq!(records[1].password, PasswordInput::Empty);
        assert!(matches!(records[2].password, PasswordInput::Hashed(_)));
        assert_eq!(records[3].password, PasswordInput::Absent);
    }

    #[test]
    fn the_demo_file_parses() {
        let records = parse_json(DEMO_JSON).unwrap();
        assert!(records.len() >= 20);
        assert_eq!(records[0].customer.login, "jdoe");
    }
}
