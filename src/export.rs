//! Taking customers out: `clientele export` (JSON that re-imports, or CSV) and
//! `clientele backup` (a consistent copy of the live database).

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::Value;

use crate::customer::{CustomerJson, CustomerList, Field, ListFilter, View};
use crate::error::JsonResponse;
use crate::transfer::Format;

/// Writes every customer to `out` in `format`, as `view` says; passwords and hashes
/// are never part of a [`customer::Customer`], so they cannot be exported. Returns the count.
pub fn export(
    conn: &mut dyn crate::store::Backend,
    format: Format,
    view: View,
    out: &mut dyn Write,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let page = conn.list(&ListFilter::default())?;
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
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(columns.iter().map(|field| field.name()))?;
            for customer in &page.customers {
                let json = serde_json::to_value(CustomerJson { customer, view })?;
                writer.write_record(columns.iter().map(|field| match &json[field.name()] {
                    Value::String(text) => spreadsheet_safe(text),
                    other => other.to_string(),
                }))?;
            }
            writer.flush()?;
        }
    }
    Ok(page.customers.len())
}

/// A text cell a spreadsheet will not run: one starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return is a formula to Excel and LibreOffice (`=HYPERLINK(...)` typed into a
/// registration form would run on the owner's machine), so it gets a leading `'`, which they
/// show as text. `clientele import` takes that `'` off again, so the file round-trips.
fn spreadsheet_safe(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_owned(),
    }
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
        // A copy that is restored one day is another database to the changes feed: a back
        // office's token from the live one (which went on after this copy) must get 410, not
        // go on from a number this copy will give to other changes. The copy's numbers jump
        // ahead by 2^40, and every token from before the jump is "too old".
        copy.execute(
            "UPDATE change_log SET seq = seq + 1099511627776, \
             pruned_through = seq + 1099511627776",
            [],
        )
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
