//! Bringing customers in: reading them from files (the old API's saved JSON response, or a
//! spreadsheet's CSV) in [`read`], and writing them to the store in one transaction
//! ([`import`], the rules once for both backends, over each backend's few primitives). The
//! demo data is loaded the same way.
//!
//! Every value is checked (by [`crate::customer::field`]'s rules, the same as the API's)
//! before anything is written; an error names the line and the field.

pub mod import;
pub mod read;

use std::collections::HashSet;
use std::fmt;

use rusqlite::Connection;

use crate::auth::{self, PasswordHasher, Secret};
use crate::customer::{field, Customer, Field, FieldSet};

pub use import::{
    import, ImportError, KnownPasswords, Options, Progress, Silent, Summary, MAX_REPORTED,
};
pub use read::{csv_records, parse_json, read_records, Format, Records, TextEncoding};

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
    /// The fields the file gave; the others are empty here.
    pub customer: Customer,
    /// Which fields the file gave. On an update, the others keep their stored values, so a
    /// sheet with a few columns changes only those columns.
    pub present: FieldSet,
    pub password: PasswordInput,
}

impl Record {
    /// The customer as it will be stored: the file's fields over `stored`, if any.
    pub fn merged(&self, stored: Option<&Customer>) -> Customer {
        match stored {
            None => self.customer.clone(),
            Some(stored) => {
                let mut merged = stored.clone();
                for field in Field::ALL.into_iter().filter(|f| self.present.contains(*f)) {
                    merged.copy_field(&self.customer, field);
                }
                merged
            }
        }
    }
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

pub(crate) fn record_error(line: usize, field: &str, message: impl Into<String>) -> RecordError {
    RecordError {
        line,
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Builds a record from `(name, text)` pairs, checking each value against its field's rules.
/// A `None` value is a nested JSON object or array, which no field accepts; a name given
/// twice (a JSON key: a CSV header refuses a column given twice) is refused. A bad record
/// gives every bad value it has, in the order of its fields (never none), so that one run
/// finds them all; the readers hand each over as an error of its own ([`each_error`]).
pub fn record_from_fields(
    line: usize,
    fields: impl IntoIterator<Item = (String, Option<String>)>,
) -> Result<Record, Vec<RecordError>> {
    let mut customer = Customer::default();
    let mut password = PasswordInput::Absent;
    let mut present = FieldSet::default();
    let mut bad = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut repeated: HashSet<String> = HashSet::new();
    for (name, value) in fields {
        if !seen.insert(name.clone()) {
            if repeated.insert(name.clone()) {
                bad.push(record_error(line, &name, "given more than once"));
            }
            continue;
        }
        let Some(value) = value else {
            bad.push(record_error(
                line,
                &name,
                "expected a single value, not a list or object",
            ));
            continue;
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
        let Some(field) = Field::from_name(&name) else {
            bad.push(record_error(line, &name, "unknown field"));
            continue;
        };
        present.insert(field);
        if let Err(message) = field::set_field(&mut customer, field, value) {
            bad.push(record_error(line, &name, message));
        }
    }
    if !present.contains(Field::Clcleunik) {
        bad.push(record_error(
            line,
            "clcleunik",
            "missing (every customer needs its key)",
        ));
    }
    if !bad.is_empty() {
        return Err(bad);
    }
    Ok(Record {
        line,
        customer,
        present,
        password,
    })
}

/// A record as the readers hand it over: the record, or each of its bad values as an error
/// of its own.
pub(crate) fn each_error(
    record: Result<Record, Vec<RecordError>>,
) -> impl Iterator<Item = Result<Record, RecordError>> {
    let (good, bad) = match record {
        Ok(record) => (Some(Ok(record)), Vec::new()),
        Err(bad) => (None, bad),
    };
    good.into_iter().chain(bad.into_iter().map(Err))
}

/// The demo customers shipped in `data/demo-customers.json`, built into the binary so that it
/// seeds from any working directory.
pub const DEMO_JSON: &str = include_str!("../../data/demo-customers.json");

/// Fills an empty store with the demo customers. Returns how many were written.
pub fn seed_demo(conn: &mut Connection, hasher: &PasswordHasher) -> Result<usize, ImportError> {
    let records = parse_json(DEMO_JSON)
        .map_err(|e| ImportError::Other(format!("demo-customers.json:{e}")))?;
    let open = || Ok(Box::new(records.clone().into_iter().map(Ok)) as Records<'_>);
    let summary = import(conn, open, hasher, Options::default(), &Silent)?;
    crate::store::sqlite::import::mark_all_as_demo(conn)
        .map_err(|e| ImportError::Other(e.to_string()))?;
    Ok(summary.inserted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::COLUMNS;
    use rusqlite::Connection;

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
        let key_twice = parse_json(r#"[{"clcleunik":1,"email":"a@x.be","clcleunik":2}]"#);
        let key_twice = key_twice.unwrap_err();
        assert_eq!(key_twice.field, "clcleunik");
        assert_eq!(key_twice.message, "given more than once");
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE customer ({COLUMNS}, password_hash, updated_at);
             CREATE TABLE demo_customer (clcleunik INTEGER PRIMARY KEY);"
        ))
        .unwrap();
        let hasher = PasswordHasher::new(crate::auth::Argon2Config {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        let records = parse_json("[{\"clcleunik\":1},\n{\"clcleunik\":1}]").unwrap();
        let open = || Ok(Box::new(records.clone().into_iter().map(Ok)) as Records<'_>);
        let twice = import(&mut conn, open, &hasher, Options::default(), &Silent).unwrap_err();
        assert!(
            twice
                .to_string()
                .contains("2: clcleunik: 1 appears twice (first on line 1)"),
            "{twice}"
        );
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
    fn streamed_json_reads_what_the_whole_parse_reads_with_the_same_lines() {
        let mut customers: Vec<serde_json::Value> = (1..=5)
            .map(|i| serde_json::json!({"clcleunik": i, "lastName": format!("N{i}"), "webRemise": 2.0}))
            .collect();
        let envelope = |customers: &[serde_json::Value]| {
            serde_json::to_string_pretty(&serde_json::json!(
                {"success": "true", "message": "Customers list", "result": {"customer": customers}}
            ))
            .unwrap()
        };
        let stream = |text: String| read::json_records(std::io::Cursor::new(text.into_bytes()));
        let good = envelope(&customers);
        let whole: Vec<Customer> = parse_json(&good)
            .unwrap()
            .into_iter()
            .map(|r| r.customer)
            .collect();
        let streamed: Vec<Customer> = stream(good).map(|r| r.unwrap().customer).collect();
        assert_eq!(streamed, whole);

        customers[3]["addedDate"] = serde_json::json!("2024-13-01");
        let bad = envelope(&customers);
        let expected = parse_json(&bad).unwrap_err();
        let error = stream(bad).find_map(Result::err).unwrap();
        assert_eq!(error, expected);
        assert!(
            error.line > 15,
            "the fourth customer, not the first line: {error}"
        );

        let array = serde_json::to_string_pretty(&customers).unwrap();
        assert_eq!(
            stream(array.clone()).find_map(Result::err),
            parse_json(&array).err()
        );
        let refused = stream(r#"{"success":"false","message":"no"}"#.into()).find_map(Result::err);
        assert!(refused.unwrap().message.contains("error response"));
        let garbage = stream("<html>".into()).find_map(Result::err).unwrap();
        assert!(garbage.message.contains("not a customer list"), "{garbage}");
    }

    #[test]
    fn the_demo_file_parses() {
        let records = parse_json(DEMO_JSON).unwrap();
        assert!(records.len() >= 20);
        assert_eq!(records[0].customer.login, "jdoe");
    }
}
