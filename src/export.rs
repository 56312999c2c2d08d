//! Taking customers out: `clientele export` (JSON that re-imports, or CSV) and
//! `clientele backup` (a consistent copy of the live database).

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::Value;

use crate::customer::{CustomerJson, CustomerList, Field, ListFilter, View};
use crate::error::JsonResponse;
use crate::transfer::Format;

/// How a CSV export is written: its separator and its text encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    /// `,` (the default), `;` (what a European Excel expects) or a tab.
    pub delimiter: u8,
    /// Windows-1252 (what a European Excel reads without asking) instead of UTF-8.
    pub windows_1252: bool,
}

impl Default for CsvOptions {
    fn default() -> CsvOptions {
        CsvOptions {
            delimiter: b',',
            windows_1252: false,
        }
    }
}

/// Why an export wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A value Windows-1252 has no byte for (an emoji, a Greek or Polish letter...).
    #[error(
        "customer {customer} (clcleunik): field {field} holds {character:?} (U+{code:04X}), \
         which Windows-1252 cannot hold; nothing was exported. Export with --encoding utf-8 \
         (Excel opens it with Data > From Text/CSV), or change that value"
    )]
    NotWindows1252 {
        customer: i64,
        field: &'static str,
        character: char,
        code: u32,
    },
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync>),
}

impl From<std::io::Error> for ExportError {
    fn from(error: std::io::Error) -> Self {
        ExportError::Other(error.into())
    }
}

impl From<csv::Error> for ExportError {
    fn from(error: csv::Error) -> Self {
        ExportError::Other(error.into())
    }
}

/// Writes every customer to `out` in `format`, as `view` says (`csv` says how, for CSV);
/// passwords and hashes are never part of a [`customer::Customer`], so they cannot be
/// exported. Returns the count. On an error, `out` may hold part of the export: write it to a
/// buffer, and keep it only on success.
pub fn export(
    conn: &mut dyn crate::store::Backend,
    format: Format,
    view: View,
    csv: CsvOptions,
    out: &mut dyn Write,
) -> Result<usize, ExportError> {
    let page = conn
        .list(&ListFilter::default())
        .map_err(|e| ExportError::Other(e.into()))?;
    match format {
        Format::Json => {
            // Exactly the list endpoint's body, so `clientele import` reads it back.
            let result = CustomerList {
                customers: &page.customers,
                view,
            };
            out.write_all(&JsonResponse::success("Customers list", result).body)?;
            out.write_all(b"\n")?;
        }
        Format::Csv => {
            let columns: Vec<Field> = Field::ALL
                .into_iter()
                .filter(|field| !view.redaction.withholds(*field))
                .collect();
            // Written as UTF-8, every cell checked first when the file is to be Windows-1252,
            // then converted whole: a value it cannot hold is named before anything is kept.
            let mut text = Vec::new();
            {
                let mut writer = csv::WriterBuilder::new()
                    .delimiter(csv.delimiter)
                    .from_writer(&mut text);
                writer.write_record(columns.iter().map(|field| field.name()))?;
                for customer in &page.customers {
                    let json = serde_json::to_value(CustomerJson { customer, view })
                        .map_err(|e| ExportError::Other(e.into()))?;
                    let mut cells = Vec::with_capacity(columns.len());
                    for field in &columns {
                        let cell = match &json[field.name()] {
                            Value::String(text) => spreadsheet_safe(text),
                            other => other.to_string(),
                        };
                        if csv.windows_1252 {
                            check_windows_1252(&cell, customer.clcleunik, field.name())?;
                        }
                        cells.push(cell);
                    }
                    writer.write_record(&cells)?;
                }
                writer.flush()?;
            }
            if csv.windows_1252 {
                let utf8 = String::from_utf8(text).map_err(|e| ExportError::Other(e.into()))?;
                let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&utf8);
                out.write_all(&bytes)?;
            } else {
                out.write_all(&text)?;
            }
        }
    }
    Ok(page.customers.len())
}

/// Refuses a cell holding a character Windows-1252 has no byte for, naming the customer and
/// the field (and the character, not the value).
fn check_windows_1252(cell: &str, customer: i64, field: &'static str) -> Result<(), ExportError> {
    let mut encoder = encoding_rs::WINDOWS_1252.new_encoder();
    let mut buffer = [0u8; 8];
    for character in cell.chars().filter(|c| !c.is_ascii()) {
        let mut one = [0u8; 4];
        let (result, _, _) = encoder.encode_from_utf8_without_replacement(
            character.encode_utf8(&mut one),
            &mut buffer,
            false,
        );
        if matches!(result, encoding_rs::EncoderResult::Unmappable(_)) {
            return Err(ExportError::NotWindows1252 {
                customer,
                field,
                character,
                code: u32::from(character),
            });
        }
    }
    Ok(())
}

/// A text cell a spreadsheet will not run: one starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return is a formula to Excel and LibreOffice (`=HYPERLINK(...)` typed into a
/// registration form would run on the owner's machine), so it gets a leading `'`, which they
/// show as text. `clientele import` takes that `'` off again, so the file round-trips; a value
/// that already starts with `'` before such a character (`'+32...`, as Excel users type to
/// force text) gets one more, so that it comes back with its own.
fn spreadsheet_safe(text: &str) -> String {
    match text.trim_start_matches('\'').chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_owned(),
    }
}

/// Marks a backup as another database to the changes feed, from the moment it is restored:
/// its `pruned_through` is stored negative (`-1 - pruned_through`), which the first open of
/// the file turns into new change numbers ([`crate::store::sqlite::renumber_if_restored`]).
/// Each restore of the same copy then numbers its changes apart, and a back office's token
/// from any earlier life of the data gets 410.
fn mark_as_backup(copy: &Connection) -> rusqlite::Result<()> {
    copy.execute(
        "UPDATE change_log SET pruned_through = -1 - pruned_through WHERE pruned_through >= 0",
        [],
    )
    .map(drop)
}

/// Writes a consistent copy of the database to `dest` while the server may be running
/// (`VACUUM INTO` reads one snapshot). The copy is made beside `dest`, checked with
/// `PRAGMA integrity_check`, then renamed into place, so `dest` is never half-written.
pub fn backup(conn: &Connection, dest: &Path, force: bool) -> Result<(), String> {
    if dest.exists() && !force {
        return Err(format!(
            "{}: already exists; pass --force to overwrite it",
            dest.display()
        ));
    }
    if dest.is_dir() {
        return Err(format!("{}: is a folder; give a file name", dest.display()));
    }
    let folder = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !folder.is_dir() {
        return Err(format!(
            "{}: the folder {} does not exist",
            dest.display(),
            folder.display()
        ));
    }
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let path_text = partial
        .to_str()
        .ok_or_else(|| format!("{}: the path is not valid UTF-8", dest.display()))?;
    let result = (|| {
        // The copy holds customer data and password hashes: this user's alone (0600), made
        // empty first, which `VACUUM INTO` accepts and keeps.
        crate::store::sqlite::create_private_file(&partial).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => format!(
                "{}: this user may not write in the folder {}",
                dest.display(),
                folder.display()
            ),
            _ => format!("{}: {e}", dest.display()),
        })?;
        conn.execute("VACUUM INTO ?1", [path_text])
            .map_err(|e| format!("{}: could not write the copy: {e}", dest.display()))?;
        let copy = Connection::open(&partial).map_err(|e| e.to_string())?;
        mark_as_backup(&copy)
            .map_err(|e| format!("{}: could not write the copy: {e}", dest.display()))?;
        let check: String = copy
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .map_err(|e| e.to_string())?;
        if check != "ok" {
            return Err(format!(
                "{}: the copy failed its integrity check: {check}",
                dest.display()
            ));
        }
        drop(copy);
        std::fs::rename(&partial, dest).map_err(|e| format!("{}: {e}", dest.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spreadsheet_guard_round_trips_even_on_values_that_start_with_a_quote() {
        for value in [
            "=1",
            "'=1",
            "''+32 2",
            "+32 2 555",
            "'abc",
            "plain",
            "-",
            "'",
        ] {
            let exported = spreadsheet_safe(value);
            assert_eq!(
                crate::transfer::read::unguarded(&exported),
                value,
                "{exported}"
            );
            let first = exported.trim_start_matches('\'').chars().next();
            if matches!(first, Some('=' | '+' | '-' | '@')) {
                assert!(exported.starts_with('\''), "{exported} is guarded");
            }
        }
    }

    #[test]
    fn windows_1252_holds_western_accents_and_the_euro_but_not_greek_or_emoji() {
        for fine in [
            "Zoé Lefèvre",
            "Müller",
            "Garçon",
            "€ 12,50",
            "Œuvre",
            "plain",
        ] {
            assert!(check_windows_1252(fine, 1, "lastName").is_ok(), "{fine}");
        }
        for (refused, character) in [("Ωmega", 'Ω'), ("Łódź", 'Ł'), ("shop 🛒", '🛒')] {
            match check_windows_1252(refused, 7, "city") {
                Err(ExportError::NotWindows1252 {
                    customer: 7,
                    field: "city",
                    character: found,
                    ..
                }) => assert_eq!(found, character),
                other => panic!("{refused}: {other:?}"),
            }
        }
    }
}
