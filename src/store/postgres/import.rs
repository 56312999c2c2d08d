//! The import's primitives on PostgreSQL (the rules are in [`crate::transfer::import`]):
//! stored customers read a batch at a time (`= ANY($1)`: one round trip per batch, not one
//! per row), and the write pass in one transaction holding the customers' write lock, fast
//! for a million customers: the rows go through binary `COPY` into a temporary staging
//! table, then a few set-based statements write them (`UPDATE ... FROM`, `INSERT ...
//! SELECT` in the file's order, the mirrored digests, and for `replace` one `DELETE` of the
//! customers the file did not name). Change numbers come from the triggers, as for any
//! write (one counter write per statement: see the schema's migration 2).

use std::collections::HashMap;
use std::sync::Arc;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use super::conn::{Begin, Conn, Tx};
use super::customers::{from_pg_row, COLUMNS};
use super::watch::Watch;
use super::{audit, get};
use crate::audit::Action;
use crate::config::Retention;
use crate::customer::Field;
use crate::store::{ImportRow, ImportTx, Result, RowWrite, StoredCustomer};

/// The stored customers among `ids`, with their hashes and (if `digests`) the digests of
/// their mirrored passwords, in one query.
pub fn stored_customers(
    conn: &mut Conn,
    ids: &[i64],
    digests: bool,
) -> Result<HashMap<i64, StoredCustomer>> {
    let digest = match digests {
        true => "(SELECT u.digest FROM upstream_password u WHERE u.clcleunik = customer.clcleunik)",
        false => "NULL::bytea",
    };
    let rows = conn.query(
        &format!(
            "SELECT {COLUMNS}, password_hash, {digest} FROM customer \
             WHERE clcleunik = ANY($1::bigint[])"
        ),
        &[&ids],
    )?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in &rows {
        let customer = from_pg_row(row, 0)?;
        let hash: Option<String> = get(row, Field::ALL.len())?;
        let digest: Option<Vec<u8>> = get(row, Field::ALL.len() + 1)?;
        found.insert(
            customer.clcleunik,
            StoredCustomer {
                customer,
                hash,
                digest: digest.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok()),
            },
        );
    }
    Ok(found)
}

/// The ids of the demo customers still stored.
pub fn demo_ids(conn: &mut Conn) -> Result<Vec<i64>> {
    conn.query("SELECT clcleunik FROM demo_customer", &[])?
        .iter()
        .map(|row| get(row, 0))
        .collect()
}

/// How many customers are stored, demo customers not counted.
pub fn own_customer_count(conn: &mut Conn) -> Result<u64> {
    let n: i64 = get(
        &conn.one(
            "SELECT count(*) FROM customer c \
             WHERE NOT EXISTS (SELECT 1 FROM demo_customer d WHERE d.clcleunik = c.clcleunik)",
            &[],
        )?,
        0,
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// How many of `ids` are stored customers, demo customers not counted.
pub fn own_customers_among(conn: &mut Conn, ids: &[i64]) -> Result<u64> {
    let n: i64 = get(
        &conn.one(
            "SELECT count(*) FROM customer c WHERE c.clcleunik = ANY($1::bigint[]) \
             AND NOT EXISTS (SELECT 1 FROM demo_customer d WHERE d.clcleunik = c.clcleunik)",
            &[&ids],
        )?,
        0,
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Removes the demo customers still stored, in one transaction with its audit row; how many.
pub fn remove_demo(conn: &mut Conn, actor: &str, retention: Retention) -> Result<usize> {
    let mut tx = conn.begin(Begin::CustomerWrite)?;
    audit::prune(&mut tx, retention)?;
    let removed = tx.exec(
        "DELETE FROM customer WHERE clcleunik IN (SELECT clcleunik FROM demo_customer)",
        &[],
    )?;
    let removed = usize::try_from(removed).unwrap_or(usize::MAX);
    if removed > 0 {
        let detail = format!("{removed} demo customers removed");
        audit::record(&mut tx, actor, Action::Delete, None, &[], &detail)?;
    }
    tx.commit()?;
    Ok(removed)
}

/// Seconds since the last good sync, by the database's clock (which also wrote the audit
/// row), through the partial index `audit_sync`; `None` before the first.
pub const LAST_SYNC_AGE_QUERY: &str =
    "SELECT floor(extract(epoch FROM clock_timestamp() - max(at)::timestamptz))::bigint \
     FROM audit WHERE action = 'sync' AND actor = 'sync'";

pub fn last_sync_age(conn: &mut Conn) -> Result<Option<i64>> {
    get(&conn.one(LAST_SYNC_AGE_QUERY, &[])?, 0)
}

/// The temporary table the rows are staged in: `ord` (the row's place in the file),
/// `action`, the customer's columns, the hash to write and the digest to remember.
const STAGING: &str = "clientele_import";

/// What a staged row asks for (`action`).
const KEEP: i16 = 0;
const INSERT: i16 = 1;
const UPDATE: i16 = 2;
const UPDATE_WITH_PASSWORD: i16 = 3;

/// The types of the staged columns, in order: `ord`, `action`, then [`COLUMNS`], then
/// `password_hash` and `digest`.
fn staging_types() -> Vec<Type> {
    let mut types = vec![Type::INT8, Type::INT2, Type::INT8];
    for field in &Field::ALL[1..] {
        types.push(match field {
            Field::ShowPrice | Field::NotificationAccepted => Type::BOOL,
            Field::WebRemise => Type::FLOAT8,
            _ => Type::TEXT,
        });
    }
    types.push(Type::TEXT);
    types.push(Type::BYTEA);
    types
}

/// The SQL type of each column of `types`, for `CREATE TEMP TABLE`.
fn sql_type(ty: &Type) -> &'static str {
    match *ty {
        Type::INT8 => "bigint",
        Type::INT2 => "smallint",
        Type::BOOL => "boolean",
        Type::FLOAT8 => "double precision",
        Type::BYTEA => "bytea",
        _ => "text",
    }
}

/// The columns of the staging table, in [`staging_types`] order.
fn staging_columns() -> Vec<String> {
    let mut columns = vec!["ord".to_owned(), "action".to_owned()];
    columns.extend(COLUMNS.split(", ").map(str::to_owned));
    columns.push("password_hash".to_owned());
    columns.push("digest".to_owned());
    columns
}

/// The write pass on PostgreSQL. The transaction holds the customers' write lock from its
/// first statement ([`Begin::CustomerWrite`]): writers on every node wait for it (and get a
/// 503 after 5 s), readers never do.
pub struct PgImport<'a> {
    tx: Option<Tx<'a>>,
    replace: bool,
    /// Rows staged so far (their order in the file, for the inserts' change numbers).
    staged: i64,
    /// This node's generation, moved on when the import ends (committed or not).
    watch: Arc<Watch>,
}

impl<'a> PgImport<'a> {
    pub fn begin(conn: &'a mut Conn, replace: bool, watch: Arc<Watch>) -> Result<PgImport<'a>> {
        let mut tx = conn.begin(Begin::CustomerWrite)?;
        let columns: Vec<String> = staging_columns()
            .iter()
            .zip(staging_types())
            .map(|(name, ty)| format!("{name} {}", sql_type(&ty)))
            .collect();
        // Simple protocol: nothing prepared refers to a table that goes at the commit.
        tx.batch(&format!(
            "CREATE TEMP TABLE {STAGING} ({}) ON COMMIT DROP",
            columns.join(", ")
        ))?;
        Ok(PgImport {
            tx: Some(tx),
            replace,
            staged: 0,
            watch,
        })
    }

    fn tx(&mut self) -> Result<&mut Tx<'a>> {
        self.tx
            .as_mut()
            .ok_or_else(|| crate::store::Error::Data("the import has ended".into()))
    }

    /// The staged rows written to `customer`, `upstream_password`, and for `replace` the
    /// customers the file did not name deleted; how many were deleted.
    fn apply(&mut self) -> Result<usize> {
        let replace = self.replace;
        let tx = self.tx()?;
        tx.batch(&format!("ANALYZE {STAGING}"))?;
        let fields: Vec<&str> = COLUMNS.split(", ").collect();
        let set = fields[1..]
            .iter()
            .map(|column| format!("{column} = s.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        let from_staging = fields
            .iter()
            .map(|column| format!("s.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE customer c SET {set}, \
                 password_hash = CASE WHEN s.action = {UPDATE_WITH_PASSWORD} \
                                      THEN s.password_hash ELSE c.password_hash END, \
                 updated_at = clientele_utc_ms() \
             FROM {STAGING} s \
             WHERE s.action IN ({UPDATE}, {UPDATE_WITH_PASSWORD}) AND c.clcleunik = s.clcleunik; \
             INSERT INTO customer ({COLUMNS}, password_hash) \
                 SELECT {from_staging}, s.password_hash FROM {STAGING} s \
                 WHERE s.action = {INSERT} ORDER BY s.ord; \
             INSERT INTO upstream_password (clcleunik, digest) \
                 SELECT s.clcleunik, s.digest FROM {STAGING} s WHERE s.digest IS NOT NULL \
                 ON CONFLICT (clcleunik) DO UPDATE SET digest = EXCLUDED.digest;"
        );
        tx.batch(&sql)?;
        if !replace {
            return Ok(0);
        }
        // Through the simple protocol too, but its count is wanted: a statement that returns
        // it. The anti-join reads the staging table once (it was just analysed).
        let rows = {
            let client = tx.client()?;
            client.simple_query(&format!(
                "WITH gone AS (DELETE FROM customer c WHERE NOT EXISTS \
                     (SELECT 1 FROM {STAGING} s WHERE s.clcleunik = c.clcleunik) RETURNING 1) \
                 SELECT count(*) FROM gone"
            ))
        };
        let rows = tx.check(rows)?;
        let deleted = rows.iter().find_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).and_then(|n| n.parse().ok()),
            _ => None,
        });
        deleted.ok_or_else(|| crate::store::Error::Data("no count of deleted customers".into()))
    }
}

impl Drop for PgImport<'_> {
    fn drop(&mut self) {
        // Committed or rolled back: this node's caches must not trust what they hold.
        drop(self.tx.take());
        self.watch.bump();
    }
}

/// The values of one row, in [`staging_types`] order.
type Values<'a> = [&'a (dyn ToSql + Sync)];

/// Writes one row into the binary `COPY` of the staging table (`write`: the writer's).
fn copy_row(
    write: &mut dyn FnMut(&Values<'_>) -> std::result::Result<(), postgres::Error>,
    ord: i64,
    row: &ImportRow,
) -> std::result::Result<(), postgres::Error> {
    let (action, hash) = match &row.write {
        RowWrite::Unchanged => (KEEP, None),
        RowWrite::Insert(hash) => (INSERT, hash.as_deref()),
        RowWrite::Update => (UPDATE, None),
        RowWrite::UpdateWithPassword(hash) => (UPDATE_WITH_PASSWORD, hash.as_deref()),
    };
    // A row that stays as it is carries its key (and a digest) only.
    let full = action != KEEP;
    let c = &row.customer;
    let text = |value| full.then_some(value);
    let texts: [Option<&String>; 17] = [
        text(&c.customer_number),
        text(&c.groupe_price),
        text(&c.login),
        text(&c.last_name),
        text(&c.first_name),
        text(&c.address),
        text(&c.zipcode),
        text(&c.city),
        text(&c.country),
        text(&c.phone),
        text(&c.cellphone),
        text(&c.email),
        text(&c.denomination),
        text(&c.tva_number),
        text(&c.added_date),
        text(&c.add_hour),
        text(&c.language),
    ];
    let show_price = full.then_some(c.show_price);
    let web_remise = full.then_some(c.web_remise);
    let megawinapp_login = text(&c.megawinapp_login);
    let notification_accepted = full.then_some(c.notification_accepted);
    let digest = row.digest.as_ref().map(|d| d.as_slice());
    let mut values: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(26);
    values.push(&ord);
    values.push(&action);
    values.push(&c.clcleunik);
    for value in &texts {
        values.push(value);
    }
    values.push(&show_price);
    values.push(&web_remise);
    values.push(&megawinapp_login);
    values.push(&notification_accepted);
    values.push(&hash);
    values.push(&digest);
    write(&values)
}

impl ImportTx for PgImport<'_> {
    fn remove_demo(&mut self) -> Result<usize> {
        let tx = self.tx()?;
        let removed = tx.exec(
            "DELETE FROM customer WHERE clcleunik IN (SELECT clcleunik FROM demo_customer)",
            &[],
        )?;
        tx.exec("DELETE FROM demo_customer", &[])?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    fn stored(&mut self, ids: &[i64]) -> Result<HashMap<i64, StoredCustomer>> {
        stored_customers(self.tx()?, ids, false)
    }

    fn write(&mut self, rows: &[ImportRow]) -> Result<()> {
        let replace = self.replace;
        // Unchanged rows matter only to say which customers stay, or to bring a digest.
        let staged: Vec<&ImportRow> = rows
            .iter()
            .filter(|row| replace || row.digest.is_some() || row.write != RowWrite::Unchanged)
            .collect();
        if staged.is_empty() {
            return Ok(());
        }
        let first = self.staged;
        self.staged += i64::try_from(staged.len()).unwrap_or(i64::MAX);
        let tx = self.tx()?;
        let copied = {
            let client = tx.client()?;
            let sql = format!(
                "COPY {STAGING} ({}) FROM STDIN (FORMAT binary)",
                staging_columns().join(", ")
            );
            client.copy_in(sql.as_str()).and_then(|sink| {
                let mut writer = BinaryCopyInWriter::new(sink, &staging_types());
                let mut write = |values: &[&(dyn ToSql + Sync)]| writer.write(values);
                for (n, row) in (first..).zip(&staged) {
                    copy_row(&mut write, n, row)?;
                }
                writer.finish()
            })
        };
        tx.check(copied)?;
        Ok(())
    }

    fn finish(&mut self) -> Result<usize> {
        self.apply()
    }

    fn audit(
        &mut self,
        actor: &str,
        action: Action,
        detail: &str,
        retention: Retention,
    ) -> Result<()> {
        let tx = self.tx()?;
        audit::prune(tx, retention)?;
        audit::record(tx, actor, action, None, &[], detail)
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        match self.tx.take() {
            Some(tx) => tx.commit(),
            None => Err(crate::store::Error::Data("the import has ended".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::Customer;

    #[test]
    fn the_staging_table_has_one_type_per_column_and_a_row_one_value_of_each_type() {
        let (columns, types) = (staging_columns(), staging_types());
        assert_eq!(columns.len(), types.len());
        assert_eq!(
            &columns[2..2 + Field::ALL.len()],
            COLUMNS.split(", ").collect::<Vec<_>>()
        );
        for (field, ty) in Field::ALL.iter().zip(&types[2..]) {
            let expected = match field {
                Field::Clcleunik => Type::INT8,
                Field::ShowPrice | Field::NotificationAccepted => Type::BOOL,
                Field::WebRemise => Type::FLOAT8,
                _ => Type::TEXT,
            };
            assert_eq!(*ty, expected, "{field:?}");
        }
        // What `copy_row` hands the writer: one value per type, each one that type takes
        // (the binary writer panics on a wrong count, and refuses a wrong type).
        for write in [
            RowWrite::Insert(Some("$argon2id$x".into())),
            RowWrite::Update,
            RowWrite::UpdateWithPassword(None),
            RowWrite::Unchanged,
        ] {
            let row = ImportRow {
                customer: Customer::default(),
                write,
                digest: Some([7; 32]),
            };
            let mut rows = 0;
            copy_row(
                &mut |values| {
                    assert_eq!(values.len(), types.len());
                    for (value, ty) in values.iter().zip(&types) {
                        let mut buffer = bytes::BytesMut::new();
                        value
                            .to_sql_checked(ty, &mut buffer)
                            .expect("the right type");
                    }
                    rows += 1;
                    Ok(())
                },
                1,
                &row,
            )
            .unwrap();
            assert_eq!(rows, 1);
        }
    }
}
