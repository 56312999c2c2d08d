//! Reading customer files: the old API's JSON envelope (or a bare array), and CSV in the
//! encodings and separators spreadsheets write, streamed one row at a time.

use std::io::{BufRead, BufReader, Read};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{each_error, record_error, record_from_fields, Record, RecordError};
use crate::customer::Field;

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
        .flat_map(|raw| {
            // The raw value borrows from `text`, so its address says where it starts.
            let offset = (raw.get().as_ptr() as usize)
                .saturating_sub(text.as_ptr() as usize)
                .clamp(counted_to, text.len());
            line += text[counted_to..offset].matches('\n').count();
            counted_to = offset;
            each_error(json_customer(line, raw.get()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(records)
}

/// One customer object of a JSON file, checked (starting on `line`).
fn json_customer(line: usize, text: &str) -> Result<Record, Vec<RecordError>> {
    let Fields(fields) = serde_json::from_str(text)
        .map_err(|_| vec![record_error(line, "", "expected a customer object")])?;
    let fields = fields
        .into_iter()
        .map(|(name, value)| (name, json_scalar(value)));
    record_from_fields(line, fields)
}

/// A customer object's keys and values in the file's order. A key given twice is kept
/// twice, for [`record_from_fields`] to refuse: a map would keep only the last one, and
/// `{"clcleunik":1,"clcleunik":2}` would import customer 2 without a word.
struct Fields(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a customer object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(entry) = map.next_entry::<String, Value>()? {
            fields.push(entry);
        }
        Ok(Fields(fields))
    }
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
    let unknown: Vec<&String> = headers.iter().filter(|name| !known(name)).collect();
    if !unknown.is_empty() {
        return Err(record_error(1, "", unknown_columns(&unknown)));
    }
    for (index, name) in headers.iter().enumerate() {
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
    let rows = std::iter::from_fn(move || loop {
        if failed {
            return None;
        }
        match reader.read_record(&mut row) {
            Ok(false) => return None,
            Err(error) => {
                failed = true;
                return Some(Err(vec![csv_error(error)]));
            }
            Ok(true) if row.iter().all(|cell| cell.trim().is_empty()) => continue,
            Ok(true) => {
                let line = row.position().map_or(0, |p| p.line() as usize);
                let fields = headers
                    .iter()
                    .cloned()
                    .zip(row.iter().map(|cell| Some(unguarded(cell).to_owned())));
                // A bad value ends nothing: the rows after it are read too, so that one
                // run reports every bad value (an unreadable file does end the reading).
                return Some(record_from_fields(line, fields));
            }
        }
    });
    Ok(Box::new(rows.flat_map(each_error)))
}

/// A CSV cell without the `'` that `clientele export` puts before what a spreadsheet would
/// run as a formula (`'=...`, `'+32 ...`, and `''=...` for a value that was `'=...`), so that
/// an export imports back as it was.
pub(crate) fn unguarded(cell: &str) -> &str {
    let guarded = cell
        .trim_start_matches('\'')
        .starts_with(['=', '+', '-', '@', '\t', '\r']);
    match cell.strip_prefix('\'') {
        Some(rest) if guarded => rest,
        _ => cell,
    }
}

/// Every unknown column at once, each with the field it most likely meant, and the names a
/// header may use: one run of the import finds every mistake in the header row.
fn unknown_columns(unknown: &[&String]) -> String {
    let names: Vec<&str> = Field::ALL
        .iter()
        .map(|field| field.name())
        .chain(["password"])
        .collect();
    let described: Vec<String> = unknown
        .iter()
        .map(|name| {
            let closest = names
                .iter()
                .map(|candidate| {
                    let distance = strsim::damerau_levenshtein(
                        &name.to_lowercase(),
                        &candidate.to_lowercase(),
                    );
                    (distance, *candidate)
                })
                .min()
                .filter(|(distance, _)| *distance <= name.chars().count().max(3) / 3);
            match closest {
                Some((_, candidate)) => format!("{name:?} (did you mean {candidate:?}?)"),
                None => format!("{name:?}"),
            }
        })
        .collect();
    format!(
        "unknown column{} {}; the columns are {}",
        if unknown.len() == 1 { "" } else { "s" },
        described.join(", "),
        names.join(", ")
    )
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

/// Reads a file of customers in `format`, one record at a time, never holding the file whole.
pub fn read_records(
    input: impl Read + Send + 'static,
    format: Format,
    encoding: TextEncoding,
    delimiter: Option<u8>,
) -> Result<Records<'static>, RecordError> {
    match format {
        Format::Json => Ok(json_records(input)),
        Format::Csv => csv_records(input, encoding, delimiter),
    }
}

/// Records a JSON parse hands over at a time: a few hundred customers in memory at most.
const JSON_BUFFER: usize = 256;

/// Reads a JSON file of customers as it parses it: the old API's envelope
/// (`{"result":{"customer":[...]}}`, what `clientele export` writes too) or a bare array. The
/// parser runs on a thread of its own and hands each customer over as soon as it is read, so
/// a file of a million customers is never held whole. Errors carry the line where the
/// customer starts, as [`parse_json`]'s do.
pub fn json_records(input: impl Read + Send + 'static) -> Records<'static> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(JSON_BUFFER);
    std::thread::spawn(move || {
        let lines = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let reader = CountLines {
            inner: BufReader::with_capacity(64 * 1024, input),
            lines: std::rc::Rc::clone(&lines),
        };
        let mut parser = serde_json::Deserializer::from_reader(reader);
        let top = TopLevel {
            sender: &sender,
            lines: &lines,
        };
        let outcome =
            serde::de::DeserializeSeed::deserialize(top, &mut parser).and_then(|()| parser.end());
        if let Err(error) = outcome {
            // A stop asked for by the reader (it went away) is no error to report.
            if !error.to_string().starts_with(STOPPED) {
                let _ = sender.send(Err(not_a_list(error)));
            }
        }
    });
    Box::new(receiver.into_iter())
}

const STOPPED: &str = "stopped by the reader";

fn not_a_list(error: serde_json::Error) -> RecordError {
    if error.is_io() {
        return record_error(error.line().max(1), "", format!("unreadable: {error}"));
    }
    let message = error.to_string();
    // Our own messages (a record's error) arrive here only when sending them failed.
    record_error(
        error.line().max(1),
        "",
        format!(
            "not a customer list (expected {{\"result\":{{\"customer\":[...]}}}} or an array \
             of customers): {message}"
        ),
    )
}

/// A reader that counts the line ends it has handed out (serde_json reads a byte at a time
/// from it, so the count is where the parser is).
struct CountLines<R> {
    inner: R,
    lines: std::rc::Rc<std::cell::Cell<usize>>,
}

impl<R: Read> Read for CountLines<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(out)?;
        let newlines = out[..read].iter().filter(|b| **b == b'\n').count();
        self.lines.set(self.lines.get() + newlines);
        Ok(read)
    }
}

type Sender = std::sync::mpsc::SyncSender<Result<Record, RecordError>>;

/// The whole file: an array of customers, or the envelope around one.
struct TopLevel<'a> {
    sender: &'a Sender,
    lines: &'a std::cell::Cell<usize>,
}

impl<'de> serde::de::DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TopLevel<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object with result.customer, or an array of customers")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Customers {
            sender: self.sender,
            lines: self.lines,
        }
        .visit_seq(seq)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let (mut found, mut success) = (false, false);
        while let Some(key) = map.next_key::<String>()? {
            let twice = match key.as_str() {
                "success" => std::mem::replace(&mut success, true),
                "result" => found,
                _ => false,
            };
            if twice {
                return Err(given_twice(self.sender, self.lines, &key));
            }
            match key.as_str() {
                "success" => {
                    let value: Value = map.next_value()?;
                    if value == Value::String("false".into()) {
                        let error = record_error(1, "success", "the file is an error response");
                        let _ = self.sender.send(Err(error));
                        return Err(A::Error::custom(STOPPED));
                    }
                }
                "result" => {
                    map.next_value_seed(Result_ {
                        sender: self.sender,
                        lines: self.lines,
                    })?;
                    found = true;
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        if found {
            Ok(())
        } else {
            Err(A::Error::missing_field("result"))
        }
    }
}

/// The envelope's own key given twice (`result`, `customer`, `success`): refused, naming it,
/// rather than reading the customers of both (or keeping the last). Sends the error and
/// stops the parse.
fn given_twice<E: serde::de::Error>(
    sender: &Sender,
    lines: &std::cell::Cell<usize>,
    key: &str,
) -> E {
    // The parser has just read the key: the line ends counted so far are before it.
    let error = record_error(lines.get() + 1, key, "given more than once");
    let _ = sender.send(Err(error));
    E::custom(STOPPED)
}

/// `"result": {"customer": [...]}`.
struct Result_<'a> {
    sender: &'a Sender,
    lines: &'a std::cell::Cell<usize>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Result_<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Result_<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object with a customer array")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "customer" && found {
                return Err(given_twice(self.sender, self.lines, &key));
            }
            if key == "customer" {
                map.next_value_seed(Customers {
                    sender: self.sender,
                    lines: self.lines,
                })?;
                found = true;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        if found {
            Ok(())
        } else {
            Err(serde::de::Error::missing_field("customer"))
        }
    }
}

/// The customer array: each element checked and handed over as it is read.
struct Customers<'a> {
    sender: &'a Sender,
    lines: &'a std::cell::Cell<usize>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Customers<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Customers<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of customers")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            // The parser has just read the element's last byte: its first line is that line
            // less the line ends inside it.
            let inside = raw.get().matches('\n').count();
            let line = (self.lines.get() + 1).saturating_sub(inside).max(1);
            let record = json_customer(line, raw.get());
            // A bad value ends nothing (see `csv_records`); a reader that stopped listening does.
            for outcome in each_error(record) {
                if self.sender.send(outcome).is_err() {
                    return Err(A::Error::custom(STOPPED));
                }
            }
        }
        Ok(())
    }
}

/// A JSON scalar as the text a spreadsheet would hold; objects and arrays stay `None`.
pub fn json_scalar(value: Value) -> Option<String> {
    match value {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        // `12.0` is the whole number 12 (JSON does not tell them apart).
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                format!("{}", f as i64)
            }
            _ => n.to_string(),
        }),
        Value::String(s) => Some(s),
        Value::Array(_) | Value::Object(_) => None,
    }
}
