//! Reading customers from files (the old API's saved JSON response, or a spreadsheet's CSV)
//! and writing them to the store in one transaction. The demo data is loaded the same way.
//!
//! Every value is checked before anything is written; an error names the line and the field.
//! Plain-text passwords are hashed (in parallel) before the write transaction opens, so the
//! database is locked for writing only as long as the rows take to write.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};

use rusqlite::{params_from_iter, Connection, OptionalExtension, ToSql};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::auth::{self, PasswordHasher, Secret, Verdict};
use crate::customer::{Customer, Field, FieldSet, COLUMNS};

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
    // Line numbers are counted forward from the previous customer, not from the start of
    // the file each time (which made large single-line files quadratic).
    let (mut counted_to, mut line) = (0, 1);
    let records = items
        .into_iter()
        .map(|raw| {
            // The raw value borrows from `text`, so its address says where it starts.
            let offset = (raw.get().as_ptr() as usize)
                .saturating_sub(text.as_ptr() as usize)
                .clamp(counted_to, text.len());
            line += text[counted_to..offset].matches('\n').count();
            counted_to = offset;
            let object: serde_json::Map<String, Value> = serde_json::from_str(raw.get())
                .map_err(|_| record_error(line, "", "expected a customer object"))?;
            let fields = object
                .into_iter()
                .map(|(name, value)| (name, json_scalar(value)))
                .collect::<Vec<_>>();
            record_from_fields(line, fields)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(records)
}

/// The file formats `clientele import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Csv,
}

impl Format {
    /// The format named by a file's extension, or else guessed from its first character.
    pub fn detect(name: &str, bytes: &[u8]) -> Format {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".json") {
            return Format::Json;
        }
        if lower.ends_with(".csv") || lower.ends_with(".txt") {
            return Format::Csv;
        }
        let start = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        match start.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{' | b'[') => Format::Json,
            _ => Format::Csv,
        }
    }
}

/// How the bytes of a CSV file are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TextEncoding {
    /// UTF-8 when the bytes are valid UTF-8, else Windows-1252 (what Excel writes in Europe).
    Auto,
    #[value(name = "utf-8")]
    Utf8,
    #[value(name = "windows-1252")]
    Windows1252,
}

/// A stream of records read from a file, one at a time.
pub type Records<'a> = Box<dyn Iterator<Item = Result<Record, RecordError>> + 'a>;

/// How many bytes are looked at to tell UTF-8 from Windows-1252 (when there is no BOM).
const SNIFF: usize = 64 * 1024;

/// Turns the raw bytes of a CSV file into UTF-8 with `\n` line ends, streaming. A BOM decides
/// (UTF-8, or UTF-16 as Excel's "Unicode text" writes); otherwise `encoding`, where `auto`
/// reads UTF-8 if the first 64 KiB are UTF-8, else Windows-1252.
fn decoded(
    input: impl Read + 'static,
    encoding: TextEncoding,
) -> Result<Box<dyn Read>, RecordError> {
    let mut input = BufReader::with_capacity(SNIFF, input);
    let start = input
        .fill_buf()
        .map_err(|e| record_error(1, "", format!("unreadable: {e}")))?;
    let bom = start.starts_with(b"\xef\xbb\xbf")
        || start.starts_with(b"\xff\xfe")
        || start.starts_with(b"\xfe\xff");
    let looks_utf8 = match std::str::from_utf8(start) {
        Ok(_) => true,
        // A character cut at the end of the sniffed part is still UTF-8.
        Err(error) => error.error_len().is_none(),
    };
    let chosen = match encoding {
        _ if bom => None,
        TextEncoding::Utf8 => Some(encoding_rs::UTF_8),
        TextEncoding::Windows1252 => Some(encoding_rs::WINDOWS_1252),
        TextEncoding::Auto if looks_utf8 => Some(encoding_rs::UTF_8),
        TextEncoding::Auto => Some(encoding_rs::WINDOWS_1252),
    };
    let text: Box<dyn Read> = if chosen == Some(encoding_rs::UTF_8) {
        // Passed through as it is: invalid bytes further on are reported with their line.
        Box::new(input)
    } else {
        Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(chosen)
                .bom_sniffing(true)
                .build(input),
        )
    };
    Ok(Box::new(UnixLines {
        inner: text,
        pending_cr: false,
    }))
}

/// `\r\n` (and a lone `\r`) read as `\n`, so that every line counts once: the CSV reader
/// numbers the lines of a CRLF file (Excel's default) one short.
struct UnixLines<R> {
    inner: R,
    pending_cr: bool,
}

impl<R: Read> Read for UnixLines<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let read = self.inner.read(out)?;
            if read == 0 {
                return Ok(0);
            }
            let mut kept = 0;
            for index in 0..read {
                let byte = out[index];
                let skip = byte == b'\n' && self.pending_cr;
                self.pending_cr = byte == b'\r';
                if !skip {
                    out[kept] = if byte == b'\r' { b'\n' } else { byte };
                    kept += 1;
                }
            }
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

/// Reads a CSV file whose header row names the contract's fields (any order), one record at
/// a time. Columns may be missing, except `clcleunik`; an unknown column is refused with its
/// name. The separator is `,`, `;` or tab (`None`: whichever the header row uses most).
pub fn csv_records(
    input: impl Read + 'static,
    encoding: TextEncoding,
    delimiter: Option<u8>,
) -> Result<Records<'static>, RecordError> {
    // The header row, read ahead to choose the separator, then read again by the CSV reader.
    let mut text = BufReader::new(decoded(input, encoding)?);
    let mut first_line = Vec::new();
    (&mut text)
        .take(SNIFF as u64)
        .read_until(b'\n', &mut first_line)
        .map_err(|e| record_error(1, "", format!("unreadable: {e}")))?;
    let delimiter = delimiter.unwrap_or_else(|| {
        let count = |separator: u8| first_line.iter().filter(|b| **b == separator).count();
        [b',', b';', b'\t']
            .into_iter()
            .max_by_key(|separator| count(*separator))
            .filter(|separator| count(*separator) > 0)
            .unwrap_or(b',')
    });
    let text = std::io::Cursor::new(first_line).chain(text);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .from_reader(text);
    let headers: Vec<String> = reader
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(|name| name.trim().trim_start_matches('\u{feff}').to_owned())
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(record_error(
            1,
            "",
            "the file is empty (expected a header row of field names)",
        ));
    }
    let known = |name: &String| name == "password" || Field::from_name(name).is_some();
    if !headers.iter().any(known) {
        return Err(record_error(
            1,
            "",
            "not a customer file: expected JSON, or CSV whose first row names the fields \
             (clcleunik, lastName, email, ...)",
        ));
    }
    for (index, name) in headers.iter().enumerate() {
        if !known(name) {
            return Err(record_error(1, name, "unknown column"));
        }
        if headers[..index].contains(name) {
            return Err(record_error(1, name, "column given twice"));
        }
    }
    if !headers.iter().any(|name| name == "clcleunik") {
        return Err(record_error(
            1,
            "clcleunik",
            "missing column (every customer needs its key)",
        ));
    }
    let mut row = csv::StringRecord::new();
    let mut failed = false;
    Ok(Box::new(std::iter::from_fn(move || loop {
        if failed {
            return None;
        }
        match reader.read_record(&mut row) {
            Ok(false) => return None,
            Err(error) => {
                failed = true;
                return Some(Err(csv_error(error)));
            }
            Ok(true) if row.iter().all(|cell| cell.trim().is_empty()) => continue,
            Ok(true) => {
                let line = row.position().map_or(0, |p| p.line() as usize);
                let fields = headers
                    .iter()
                    .cloned()
                    .zip(row.iter().map(|cell| Some(cell.to_owned())));
                let record = record_from_fields(line, fields);
                failed = record.is_err();
                return Some(record);
            }
        }
    })))
}

fn csv_error(error: csv::Error) -> RecordError {
    let line = error.position().map_or(1, |p| p.line() as usize);
    if let csv::ErrorKind::Utf8 { .. } = error.kind() {
        return record_error(
            line,
            "",
            "not valid UTF-8 (for a Windows spreadsheet export, try --encoding windows-1252)",
        );
    }
    record_error(line, "", format!("unreadable CSV: {error}"))
}

/// Reads a file of customers in `format`, one record at a time. JSON is parsed whole (it is
/// one value); CSV streams.
pub fn read_records(
    input: impl Read + 'static,
    format: Format,
    encoding: TextEncoding,
    delimiter: Option<u8>,
) -> Result<Records<'static>, RecordError> {
    match format {
        Format::Json => {
            let mut bytes = Vec::new();
            let mut input = input;
            input
                .read_to_end(&mut bytes)
                .map_err(|e| record_error(1, "", format!("unreadable: {e}")))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| record_error(1, "", "a JSON file must be UTF-8"))?;
            Ok(Box::new(parse_json(&text)?.into_iter().map(Ok)))
        }
        Format::Csv => csv_records(input, encoding, delimiter),
    }
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
    let mut present = FieldSet::default();
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
        present.insert(field);
        set_field(&mut customer, field, value)
            .map_err(|message| record_error(line, &name, message))?;
    }
    if !present.contains(Field::Clcleunik) {
        return Err(record_error(
            line,
            "clcleunik",
            "missing (every customer needs its key)",
        ));
    }
    Ok(Record {
        line,
        customer,
        present,
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

/// What a write did (or, in a dry run, would do), for the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub rows: usize,
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deleted: usize,
}

/// Progress callbacks, so the command line can draw bars; the library draws nothing.
pub trait Progress: Sync {
    /// A phase starts with `total` steps: "checking passwords", "writing".
    fn phase(&self, name: &'static str, total: usize);
    /// One more step of the current phase is done.
    fn step(&self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: &'static str, _: usize) {}
    fn step(&self) {}
}

/// How an import treats the customers already stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Also delete the customers that are not in the file.
    pub replace: bool,
    /// With `replace`, accept a file with no customers (it deletes them all).
    pub allow_empty: bool,
    /// Check and count, write nothing.
    pub dry_run: bool,
}

/// Why an import stopped. Nothing was written in either case.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A value in the file: `LINE: field: what is wrong`.
    #[error("{0}")]
    Record(#[from] RecordError),
    /// Anything else (the store, hashing, a refused `--replace`).
    #[error("{0}")]
    Other(String),
}

impl From<rusqlite::Error> for ImportError {
    fn from(error: rusqlite::Error) -> Self {
        ImportError::Other(error.to_string())
    }
}

/// What to do with the stored password of one record.
enum PasswordWrite {
    /// Leave the stored value (or NULL for a new customer) as it is.
    Keep,
    Set(Option<String>),
}

/// The customer stored under `id`, with their hash.
fn stored(conn: &Connection, id: i64) -> rusqlite::Result<Option<(Customer, Option<String>)>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, password_hash FROM customer WHERE clcleunik = ?"
    ))?
    .query_row([id], |row| {
        Ok((
            Customer::from_row(row)?,
            row.get::<_, Option<String>>(Field::ALL.len())?,
        ))
    })
    .optional()
}

/// The first pass over a file: every value checked, each key once, counted; and the plain-text
/// passwords hashed (in parallel, before any lock is taken), keyed by their row.
struct Checked {
    rows: usize,
    passwords: HashMap<usize, PasswordWrite>,
    summary: Summary,
}

fn check(
    conn: &Connection,
    records: Records<'_>,
    hasher: &PasswordHasher,
    options: Options,
    progress: &dyn Progress,
) -> Result<Checked, ImportError> {
    // Key -> line, to name the first occurrence of a repeated key.
    let mut lines: HashMap<i64, usize> = HashMap::new();
    let mut plain: Vec<(usize, Secret, Option<String>)> = Vec::new();
    let mut summary = Summary::default();
    let mut existing = 0;
    for (index, record) in records.enumerate() {
        let record = record?;
        let id = record.customer.clcleunik;
        if let Some(first) = lines.insert(id, record.line) {
            return Err(record_error(
                record.line,
                "clcleunik",
                format!("{id} appears twice (first on line {first})"),
            )
            .into());
        }
        let current = stored(conn, id)?;
        existing += usize::from(current.is_some());
        match &current {
            None => summary.inserted += 1,
            Some((customer, _)) if *customer == record.merged(Some(customer)) => {
                summary.unchanged += 1
            }
            Some(_) => summary.updated += 1,
        }
        if let PasswordInput::Plain(secret) = record.password {
            plain.push((index, secret, current.and_then(|(_, hash)| hash)));
        }
    }
    summary.rows = lines.len();
    if options.replace {
        let total: i64 = conn.query_row("SELECT count(*) FROM customer", [], |row| row.get(0))?;
        summary.deleted = usize::try_from(total).unwrap_or(0).saturating_sub(existing);
        if summary.rows == 0 && summary.deleted > 0 && !options.allow_empty {
            return Err(ImportError::Other(format!(
                "the file has no customers, and --replace would delete all {} stored ones; \
                 add --allow-empty if that is what you want",
                summary.deleted
            )));
        }
    }
    if options.dry_run {
        // Passwords are not checked in a dry run: that costs as much as hashing.
        return Ok(Checked {
            rows: summary.rows,
            passwords: HashMap::new(),
            summary,
        });
    }
    progress.phase("hashing passwords", plain.len());
    // A plain-text password that already matches the stored hash keeps it, so re-importing a
    // file changes nothing.
    let outcomes = crate::auth::parallel_map(&plain, hasher.concurrency(), |(_, secret, hash)| {
        let result = match hash {
            Some(hash) if matches!(hasher.verify(secret, Some(hash)), Verdict::Valid { .. }) => {
                Ok(PasswordWrite::Keep)
            }
            _ => hasher
                .hash(secret)
                .map(|hash| PasswordWrite::Set(Some(hash))),
        };
        progress.step();
        result
    });
    let mut passwords = HashMap::with_capacity(plain.len());
    for ((index, _, _), outcome) in plain.iter().zip(outcomes) {
        passwords.insert(
            *index,
            outcome.map_err(|e| ImportError::Other(e.to_string()))?,
        );
    }
    Ok(Checked {
        rows: summary.rows,
        passwords,
        summary,
    })
}

/// Imports a file in two passes over `open()`'s records: the first checks every value and
/// hashes the plain-text passwords without any lock; the second writes everything in one
/// transaction (inserted or updated by `clcleunik`; with `replace`, customers not in the file
/// deleted). Nothing is written if anything fails, and a crash or kill before the commit
/// leaves the store exactly as it was. Memory stays flat in the number of rows for CSV: rows
/// are read, checked and written one at a time.
pub fn import<'a>(
    conn: &mut Connection,
    mut open: impl FnMut() -> Result<Records<'a>, RecordError>,
    hasher: &PasswordHasher,
    options: Options,
    progress: &dyn Progress,
) -> Result<Summary, ImportError> {
    let mut checked = check(conn, open()?, hasher, options, progress)?;
    if options.dry_run {
        return Ok(checked.summary);
    }

    progress.phase("writing", checked.rows);
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut summary = Summary {
        rows: checked.rows,
        ..Summary::default()
    };
    {
        let set_columns = COLUMNS
            .split(", ")
            .skip(1)
            .map(|column| format!("{column} = ?"))
            .collect::<Vec<_>>()
            .join(", ");
        let now = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
        let mut insert = tx.prepare(&format!(
            "INSERT INTO customer ({COLUMNS}, password_hash) VALUES ({}, ?)",
            vec!["?"; Field::ALL.len()].join(", ")
        ))?;
        let mut update = tx.prepare(&format!(
            "UPDATE customer SET {set_columns}, updated_at = {now} WHERE clcleunik = ?"
        ))?;
        let mut update_password = tx.prepare(&format!(
            "UPDATE customer SET {set_columns}, password_hash = ?, updated_at = {now} \
             WHERE clcleunik = ?"
        ))?;
        if options.replace {
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS import_keys (clcleunik INTEGER PRIMARY KEY); \
                 DELETE FROM import_keys;",
            )?;
        }
        let mut keep = match options.replace {
            true => Some(tx.prepare("INSERT OR IGNORE INTO temp.import_keys VALUES (?)")?),
            false => None,
        };
        for (index, record) in open()?.enumerate() {
            let record = record?;
            let password = match &record.password {
                PasswordInput::Absent => PasswordWrite::Keep,
                PasswordInput::Empty => PasswordWrite::Set(None),
                PasswordInput::Hashed(hash) => PasswordWrite::Set(Some(hash.clone())),
                PasswordInput::Plain(_) => checked
                    .passwords
                    .remove(&index)
                    .unwrap_or(PasswordWrite::Keep),
            };
            let id = record.customer.clcleunik;
            // Read again inside the transaction: the store may have changed while we hashed.
            let current = stored(&tx, id)?;
            let customer = record.merged(current.as_ref().map(|(customer, _)| customer));
            let params = customer.to_params();
            match (current, &password) {
                (None, PasswordWrite::Keep) => {
                    let none: Option<String> = None;
                    insert.execute(params_from_iter(
                        params.iter().copied().chain([&none as &dyn ToSql]),
                    ))?;
                    summary.inserted += 1;
                }
                (None, PasswordWrite::Set(hash)) => {
                    insert.execute(params_from_iter(
                        params.iter().copied().chain([hash as &dyn ToSql]),
                    ))?;
                    summary.inserted += 1;
                }
                (Some((current, _)), PasswordWrite::Keep) if current == customer => {
                    summary.unchanged += 1;
                }
                (Some((current, stored)), PasswordWrite::Set(hash))
                    if current == customer && stored == *hash =>
                {
                    summary.unchanged += 1;
                }
                (Some(_), PasswordWrite::Keep) => {
                    update.execute(params_from_iter(
                        params[1..].iter().copied().chain([&id as &dyn ToSql]),
                    ))?;
                    summary.updated += 1;
                }
                (Some(_), PasswordWrite::Set(hash)) => {
                    let tail: [&dyn ToSql; 2] = [hash, &id];
                    update_password
                        .execute(params_from_iter(params[1..].iter().copied().chain(tail)))?;
                    summary.updated += 1;
                }
            }
            if let Some(keep) = keep.as_mut() {
                keep.execute([id])?;
            }
            progress.step();
        }
        drop(keep);
        if options.replace {
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
pub fn seed_demo(conn: &mut Connection, hasher: &PasswordHasher) -> Result<usize, ImportError> {
    let records = parse_json(DEMO_JSON)
        .map_err(|e| ImportError::Other(format!("demo-customers.json:{e}")))?;
    let open = || Ok(Box::new(records.clone().into_iter().map(Ok)) as Records<'_>);
    let summary = import(conn, open, hasher, Options::default(), &Silent)?;
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
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE customer ({COLUMNS}, password_hash, updated_at)"
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
    fn the_demo_file_parses() {
        let records = parse_json(DEMO_JSON).unwrap();
        assert!(records.len() >= 20);
        assert_eq!(records[0].customer.login, "jdoe");
    }
}
