//! `clientele copy-to URL`: moving a shop from its SQLite file onto PostgreSQL with
//! everything in it, in one PostgreSQL transaction read from one SQLite snapshot: customers
//! with their password hashes, change numbers and update times; API keys (digests, names,
//! scopes, creation times, last uses); the audit trail; the changes feed's counter and tombstones; the
//! id high-water mark; demo marks; live sessions and reset tokens. The same keys then work,
//! the same list bytes are served, and a back office's changes token goes on.
//!
//! The mirror's password digests (`upstream_password`) are not copied: their key lives in a
//! file beside the SQLite database, not in `upstream_key_file`; the first sync on PostgreSQL
//! hashes every password once and keeps digests under that key. Nor are failed logins: a
//! lockout in progress does not move with the shop.

use std::fmt;
use std::io::Write;

use postgres::NoTls;
use rusqlite::types::ValueRef;

use crate::auth::{PasswordHasher, Secret};
use crate::store::sqlite::Db;

/// What was copied, for the tool's last line.
#[derive(Debug, Default)]
pub struct Copied {
    pub customers: u64,
    pub keys: u64,
    pub audit: u64,
    pub tombstones: u64,
    pub sessions: u64,
    pub reset_tokens: u64,
    pub next_change: i64,
}

impl fmt::Display for Copied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} customers, {} API keys, {} audit entries, {} deletions kept for the changes \
             feed, {} sessions, {} reset tokens; change number {}",
            self.customers,
            self.keys,
            self.audit,
            self.tombstones,
            self.sessions,
            self.reset_tokens,
            self.next_change
        )
    }
}

/// A table copied as it is: its SQLite query and its PostgreSQL columns, in the same order.
struct Table {
    name: &'static str,
    select: &'static str,
    columns: &'static str,
}

const CUSTOMERS: Table = Table {
    name: "customer",
    select: "SELECT clcleunik, customerNumber, groupePrice, login, lastName, firstName, \
             address, zipcode, city, country, phone, cellphone, email, denomination, tvaNumber, \
             addedDate, addHour, language, showPrice, webRemise, megawinapp_login, \
             notification_accepted, password_hash, updated_at, change_seq \
             FROM customer ORDER BY clcleunik",
    columns: r#"clcleunik, "customerNumber", "groupePrice", login, "lastName", "firstName",
             address, zipcode, city, country, phone, cellphone, email, denomination,
             "tvaNumber", "addedDate", "addHour", language, "showPrice", "webRemise",
             megawinapp_login, notification_accepted, password_hash, updated_at, change_seq"#,
};

const TABLES: [Table; 6] = [
    CUSTOMERS,
    Table {
        name: "api_key",
        select: "SELECT name, digest, created_at, scope, forwards_client_address FROM api_key",
        columns: "name, digest, created_at, scope, forwards_client_address",
    },
    Table {
        name: "audit",
        select: "SELECT id, at, actor, action, customer, fields, detail FROM audit ORDER BY id",
        columns: "id, at, actor, action, customer, fields, detail",
    },
    Table {
        name: "tombstone",
        select: "SELECT seq, clcleunik, deleted_at FROM tombstone ORDER BY seq",
        columns: "seq, clcleunik, deleted_at",
    },
    Table {
        name: "session",
        select: "SELECT digest, customer, created, expires FROM session \
                 WHERE expires > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
        columns: "digest, customer, created, expires",
    },
    Table {
        name: "reset_token",
        select: "SELECT digest, customer, expires FROM reset_token \
                 WHERE expires > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
        columns: "digest, customer, expires",
    },
];

/// The columns PostgreSQL stores as booleans (SQLite: 0 or 1).
const BOOLEANS: [&str; 3] = [
    "showPrice",
    "notification_accepted",
    "forwards_client_address",
];

/// Copies everything from `db` into the PostgreSQL database at `url` (created tables if
/// missing), which must hold no customers, keys or audit entries. Errors never hold the
/// URL's password (the driver's errors do not carry the connection string).
pub fn from_sqlite(db: &Db, url: &Secret, hasher: &PasswordHasher) -> Result<Copied, String> {
    let shown = super::redact_url(url.expose());
    let config = super::parse_config(url).map_err(|e| format!("{shown}: {e}"))?;
    let mut client = config
        .connect(NoTls)
        .map_err(|e| format!("{shown}: cannot connect: {}", super::describe_error(&e)))?;
    super::schema::prepare(&mut client, hasher).map_err(|e| format!("{shown}: {e}"))?;
    let described = |e: postgres::Error| format!("{shown}: {}", super::describe_error(&e));
    let mut sqlite = db.connection().map_err(|e| e.to_string())?;
    // One snapshot of the file: a server writing meanwhile is copied as of one moment.
    let snapshot = sqlite.transaction().map_err(|e| e.to_string())?;
    let mut tx = client.transaction().map_err(described)?;
    // Nobody else writes these tables until the copy commits (a node or a tool that tries
    // waits), so the database checked empty is the one copied into. ALTER TABLE below
    // would take the customer table's lock anyway.
    tx.batch_execute(
        "LOCK TABLE customer, api_key, audit, session, reset_token, login_failure \
         IN ACCESS EXCLUSIVE MODE",
    )
    .map_err(described)?;
    let occupied: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM customer) + (SELECT count(*) FROM api_key) \
                  + (SELECT count(*) FROM audit)",
            &[],
        )
        .and_then(|row| row.try_get(0))
        .map_err(described)?;
    if occupied > 0 {
        return Err(format!(
            "{shown} is not empty (it has customers, keys or an audit trail): copy-to only \
             moves a shop into a new database. Nothing was changed"
        ));
    }
    // The rows arrive with their change numbers, times and ids: nothing may renumber them.
    tx.batch_execute("ALTER TABLE customer DISABLE TRIGGER USER")
        .map_err(described)?;
    let mut copied = Copied::default();
    for table in &TABLES {
        let rows = copy_table(&snapshot, &mut tx, table).map_err(|e| format!("{shown}: {e}"))?;
        match table.name {
            "customer" => copied.customers = rows,
            "api_key" => copied.keys = rows,
            "audit" => copied.audit = rows,
            "tombstone" => copied.tombstones = rows,
            "session" => copied.sessions = rows,
            _ => copied.reset_tokens = rows,
        }
    }
    // When each key was last used, matched by name: the keys get new ids here.
    let (names, last_used): (Vec<String>, Vec<String>) = snapshot
        .prepare(
            "SELECT api_key.name, api_key_use.last_used FROM api_key_use \
             JOIN api_key ON api_key.rowid = api_key_use.key_id",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(String, String)>>>()
        })
        .map_err(|e| e.to_string())?
        .into_iter()
        .unzip();
    tx.execute(
        "INSERT INTO api_key_use (key_id, last_used) \
         SELECT api_key.id, used.at FROM unnest($1::text[], $2::text[]) AS used (name, at) \
         JOIN api_key ON api_key.name = used.name",
        &[&names, &last_used],
    )
    .map_err(described)?;
    let (seq, pruned_through): (i64, i64) = snapshot
        .query_row("SELECT seq, pruned_through FROM change_log", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .map_err(|e| e.to_string())?;
    let high: i64 = snapshot
        .query_row("SELECT id FROM customer_id_high", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    let demo: Vec<i64> = snapshot
        .prepare("SELECT clcleunik FROM demo_customer")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()
        })
        .map_err(|e| e.to_string())?;
    tx.execute(
        "UPDATE change_log SET seq = $1, pruned_through = $2 WHERE id = 1",
        &[&seq, &pruned_through],
    )
    .map_err(described)?;
    tx.execute("UPDATE customer_id_high SET id = $1", &[&high])
        .map_err(described)?;
    tx.execute(
        "INSERT INTO demo_customer (clcleunik) SELECT unnest($1::bigint[])",
        &[&demo],
    )
    .map_err(described)?;
    tx.batch_execute(
        "SELECT setval(pg_get_serial_sequence('audit', 'id'), \
                       GREATEST((SELECT max(id) FROM audit), 1), \
                       (SELECT max(id) FROM audit) IS NOT NULL);
         ALTER TABLE customer ENABLE TRIGGER USER;
         NOTIFY clientele_changed;",
    )
    .map_err(described)?;
    tx.commit().map_err(described)?;
    drop(snapshot);
    // Fresh statistics: without them the planner scans a million customers where an index
    // answers (start-up's look for plain-text passwords took 0.3 s instead of milliseconds).
    client.batch_execute("ANALYZE").map_err(described)?;
    copied.next_change = seq;
    Ok(copied)
}

/// Copies one table with `COPY ... FROM STDIN` (CSV): the rows of `table.select`, as they
/// are. Returns how many.
fn copy_table(
    sqlite: &rusqlite::Connection,
    tx: &mut postgres::Transaction<'_>,
    table: &Table,
) -> Result<u64, String> {
    let mut statement = sqlite.prepare(table.select).map_err(|e| e.to_string())?;
    let names: Vec<String> = statement
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut rows = statement.query([]).map_err(|e| e.to_string())?;
    let mut writer = tx
        .copy_in(&format!(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv)",
            table.name, table.columns
        ))
        .map_err(|e| super::describe_error(&e))?;
    let mut line = Vec::with_capacity(1024);
    let mut count = 0u64;
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        line.clear();
        for (index, name) in names.iter().enumerate() {
            if index > 0 {
                line.push(b',');
            }
            let value = row.get_ref(index).map_err(|e| e.to_string())?;
            csv_field(&mut line, value, BOOLEANS.contains(&name.as_str()))
                .map_err(|why| format!("{}.{name}: {why}", table.name))?;
        }
        line.push(b'\n');
        writer
            .write_all(&line)
            .map_err(|e| format!("copying {}: {e}", table.name))?;
        count += 1;
    }
    writer.finish().map_err(|e| super::describe_error(&e))?;
    Ok(count)
}

/// One CSV field as PostgreSQL's COPY reads it: NULL unquoted and empty, everything else
/// quoted (so an empty text stays empty), blobs as `\x` hex (bytea's text form).
fn csv_field(out: &mut Vec<u8>, value: ValueRef<'_>, boolean: bool) -> Result<(), String> {
    let quoted = |out: &mut Vec<u8>, text: &[u8]| {
        out.push(b'"');
        for &byte in text {
            if byte == b'"' {
                out.push(b'"');
            }
            out.push(byte);
        }
        out.push(b'"');
    };
    match value {
        ValueRef::Null => {}
        ValueRef::Integer(n) if boolean => {
            out.extend_from_slice(if n != 0 { b"true" } else { b"false" });
        }
        ValueRef::Integer(n) => out.extend_from_slice(n.to_string().as_bytes()),
        // Rust writes the shortest text that reads back as the same double.
        ValueRef::Real(x) if x.is_finite() => out.extend_from_slice(format!("{x:?}").as_bytes()),
        ValueRef::Real(x) => return Err(format!("{x} is not a finite number")),
        ValueRef::Text(text) => {
            std::str::from_utf8(text).map_err(|_| "is not UTF-8 text".to_owned())?;
            if text.contains(&0) {
                return Err("holds a NUL character, which PostgreSQL text cannot".into());
            }
            quoted(out, text);
        }
        ValueRef::Blob(bytes) => {
            let mut hex = String::with_capacity(2 + bytes.len() * 2);
            hex.push_str("\\x");
            for byte in bytes {
                hex.push_str(&format!("{byte:02x}"));
            }
            quoted(out, hex.as_bytes());
        }
    }
    Ok(())
}
