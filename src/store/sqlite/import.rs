//! The import's primitives on SQLite (the rules are in [`crate::transfer::import`]): stored
//! customers read by key, and the write pass in one `BEGIN IMMEDIATE` transaction, row by
//! row; the demo customers' bookkeeping; the last good sync's age.

use std::collections::HashMap;

use rusqlite::{params_from_iter, Connection, OptionalExtension, ToSql, Transaction};

use crate::audit::Action;
use crate::config::Retention;
use crate::customer::{Customer, Field, COLUMNS};
use crate::store::{ImportRow, ImportTx, Result, RowWrite, StoredCustomer};

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

/// The digest the last sync stored for customer `id`'s password.
fn stored_digest(conn: &Connection, id: i64) -> rusqlite::Result<Option<[u8; 32]>> {
    let digest: Option<Vec<u8>> = conn
        .prepare_cached("SELECT digest FROM upstream_password WHERE clcleunik = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?;
    Ok(digest.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok()))
}

/// The stored customers among `ids`, each read by its key (SQLite answers in-process: a
/// query per key costs no round trip).
pub fn stored_customers(
    conn: &Connection,
    ids: &[i64],
    digests: bool,
) -> rusqlite::Result<HashMap<i64, StoredCustomer>> {
    let mut found = HashMap::with_capacity(ids.len());
    for &id in ids {
        if let Some((customer, hash)) = stored(conn, id)? {
            let digest = match digests && hash.is_some() {
                true => stored_digest(conn, id)?,
                false => None,
            };
            found.insert(
                id,
                StoredCustomer {
                    customer,
                    hash,
                    digest,
                },
            );
        }
    }
    Ok(found)
}

/// The ids of the demo customers still stored.
pub fn demo_ids(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut statement = conn.prepare_cached("SELECT clcleunik FROM demo_customer")?;
    let ids = statement.query_map([], |row| row.get(0))?;
    ids.collect()
}

/// How many customers are stored, demo customers not counted.
pub fn own_customer_count(conn: &Connection) -> rusqlite::Result<u64> {
    let total: i64 = conn.query_row(
        "SELECT count(*) FROM customer \
         WHERE clcleunik NOT IN (SELECT clcleunik FROM demo_customer)",
        [],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(total).unwrap_or(0))
}

/// How many of `ids` are stored customers, demo customers not counted.
pub fn own_customers_among(conn: &Connection, ids: &[i64]) -> rusqlite::Result<u64> {
    let mut exists = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM customer WHERE clcleunik = ?1 \
         AND clcleunik NOT IN (SELECT clcleunik FROM demo_customer))",
    )?;
    let mut count = 0;
    for &id in ids {
        if exists.query_row([id], |row| row.get::<_, bool>(0))? {
            count += 1;
        }
    }
    Ok(count)
}

/// Removes the demo customers still stored, in one transaction with its audit row; how many.
pub fn remove_demo(
    conn: &mut Connection,
    actor: &str,
    retention: crate::config::Retention,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let removed = tx.execute(
        "DELETE FROM customer WHERE clcleunik IN (SELECT clcleunik FROM demo_customer)",
        [],
    )?;
    if removed > 0 {
        let detail = format!("{removed} demo customers removed");
        super::audit::record(
            &tx,
            actor,
            crate::audit::Action::Delete,
            None,
            &[],
            &detail,
            retention,
        )?;
    }
    tx.commit()?;
    Ok(removed)
}

/// How many demo customers are still stored.
pub fn demo_left(conn: &Connection) -> rusqlite::Result<usize> {
    conn.query_row("SELECT count(*) FROM demo_customer", [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|n| usize::try_from(n).unwrap_or(0))
}

/// Marks every stored customer as a demo customer (after the demo seeding), so that the first
/// import or sync of the shop's own customers removes them.
pub fn mark_all_as_demo(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT OR IGNORE INTO demo_customer (clcleunik) SELECT clcleunik FROM customer",
        [],
    )
}

/// Seconds since the last good sync, from the audit trail (through its partial index
/// `audit_sync`, so that start-up in mirror mode reads no whole table); NULL if none.
pub const LAST_SYNC_AGE_QUERY: &str =
    "SELECT CAST((julianday('now') - julianday(max(at))) * 86400 AS INTEGER)
     FROM audit WHERE action = 'sync' AND actor = 'sync'";

pub fn last_sync_age(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(LAST_SYNC_AGE_QUERY, [], |row| row.get(0))
}

/// The write pass on SQLite: `BEGIN IMMEDIATE` (the write lock from the start), each row
/// written as it comes; with `replace`, the keys kept in a temporary table, and the others
/// deleted at the end.
pub struct SqliteImport<'a> {
    tx: Transaction<'a>,
    replace: bool,
    insert: String,
    update: String,
    update_password: String,
}

impl SqliteImport<'_> {
    pub fn begin(conn: &mut Connection, replace: bool) -> rusqlite::Result<SqliteImport<'_>> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if replace {
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS import_keys (clcleunik INTEGER PRIMARY KEY); \
                 DELETE FROM import_keys;",
            )?;
        }
        let set_columns = COLUMNS
            .split(", ")
            .skip(1)
            .map(|column| format!("{column} = ?"))
            .collect::<Vec<_>>()
            .join(", ");
        let now = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
        Ok(SqliteImport {
            tx,
            replace,
            insert: format!(
                "INSERT INTO customer ({COLUMNS}, password_hash) VALUES ({}, ?)",
                vec!["?"; Field::ALL.len()].join(", ")
            ),
            update: format!(
                "UPDATE customer SET {set_columns}, updated_at = {now} WHERE clcleunik = ?"
            ),
            update_password: format!(
                "UPDATE customer SET {set_columns}, password_hash = ?, updated_at = {now} \
                 WHERE clcleunik = ?"
            ),
        })
    }
}

impl ImportTx for SqliteImport<'_> {
    fn remove_demo(&mut self) -> Result<usize> {
        let removed = self.tx.execute(
            "DELETE FROM customer WHERE clcleunik IN (SELECT clcleunik FROM demo_customer)",
            [],
        )?;
        self.tx.execute("DELETE FROM demo_customer", [])?;
        Ok(removed)
    }

    fn stored(&mut self, ids: &[i64]) -> Result<HashMap<i64, StoredCustomer>> {
        Ok(stored_customers(&self.tx, ids, false)?)
    }

    fn write(&mut self, rows: &[ImportRow]) -> Result<()> {
        let tx = &self.tx;
        for row in rows {
            let id = row.customer.clcleunik;
            let params = row.customer.to_params();
            match &row.write {
                RowWrite::Insert(hash) => {
                    tx.prepare_cached(&self.insert)?.execute(params_from_iter(
                        params.iter().copied().chain([hash as &dyn ToSql]),
                    ))?;
                }
                RowWrite::Update => {
                    tx.prepare_cached(&self.update)?.execute(params_from_iter(
                        params[1..].iter().copied().chain([&id as &dyn ToSql]),
                    ))?;
                }
                RowWrite::UpdateWithPassword(hash) => {
                    let tail: [&dyn ToSql; 2] = [hash, &id];
                    tx.prepare_cached(&self.update_password)?
                        .execute(params_from_iter(params[1..].iter().copied().chain(tail)))?;
                }
                RowWrite::Unchanged => {}
            }
            if self.replace {
                tx.prepare_cached("INSERT OR IGNORE INTO temp.import_keys VALUES (?)")?
                    .execute([id])?;
            }
            if let Some(digest) = &row.digest {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO upstream_password (clcleunik, digest) VALUES (?1, ?2)",
                )?
                .execute(rusqlite::params![id, digest.as_slice()])?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<usize> {
        if !self.replace {
            return Ok(0);
        }
        let deleted = self.tx.execute(
            "DELETE FROM customer WHERE clcleunik NOT IN (SELECT clcleunik FROM import_keys)",
            [],
        )?;
        self.tx.execute_batch("DROP TABLE import_keys;")?;
        Ok(deleted)
    }

    fn audit(
        &mut self,
        actor: &str,
        action: Action,
        detail: &str,
        retention: Retention,
    ) -> Result<()> {
        Ok(super::audit::record(
            &self.tx,
            actor,
            action,
            None,
            &[],
            detail,
            retention,
        )?)
    }

    fn commit(self: Box<Self>) -> Result<()> {
        Ok(self.tx.commit()?)
    }
}
