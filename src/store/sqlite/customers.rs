//! The customer queries on SQLite: the list (as rows, straight to JSON, or streamed), lookups
//! for login, the writes with their audit rows, and the changes feed.

use rusqlite::{params_from_iter, Connection, ToSql};

use crate::auth::Secret;
use crate::config::Retention;
use crate::customer::{
    ChangesPage, Customer, CustomerJson, Field, FieldSet, Identifier, ListFilter, Page, Totals,
    View, WriteError, COLUMNS,
};
use crate::error::ApiError;

/// The statement that counts the customers matching these filters (`X-Total-Count`),
/// to be run with their parameters. Public so that the index test explains the very
/// statement the server runs.
pub fn count_sql(filter: &ListFilter) -> String {
    format!("SELECT count(*) FROM customer{}", where_clause(filter).0)
}

/// The statement that reads the rows of a list, to be run with the parameters of the
/// filters and the `after` cursor, then the limit and the offset. Public, as
/// [`count_sql`].
pub fn rows_sql(filter: &ListFilter) -> String {
    format!(
        "SELECT {COLUMNS} FROM customer{} ORDER BY clcleunik LIMIT ? OFFSET ?",
        rows_clause(filter).0
    )
}

/// The `WHERE` clause and its parameters for these filters (paging excluded: what
/// `X-Total-Count` counts).
fn where_clause(filter: &ListFilter) -> (String, Vec<&dyn ToSql>) {
    clause(filter, false)
}

/// The `WHERE` clause of the rows sent: the filters and the `after` cursor.
fn rows_clause(filter: &ListFilter) -> (String, Vec<&dyn ToSql>) {
    clause(filter, true)
}

fn clause(filter: &ListFilter, with_cursor: bool) -> (String, Vec<&dyn ToSql>) {
    let mut conditions = Vec::new();
    let mut params: Vec<&dyn ToSql> = Vec::new();
    if let (true, Some(after)) = (with_cursor, &filter.after) {
        conditions.push("clcleunik > ?");
        params.push(after);
    }
    if let Some(id) = &filter.id {
        conditions.push("clcleunik = ?");
        params.push(id);
    }
    if let Some(email) = &filter.email {
        // NOCASE folds ASCII letters only, which is what the contract asks for.
        conditions.push("email = ? COLLATE NOCASE");
        params.push(email);
    }
    if let Some(login) = &filter.login {
        conditions.push("login = ?");
        params.push(login);
    }
    if conditions.is_empty() {
        (String::new(), params)
    } else {
        (format!(" WHERE {}", conditions.join(" AND ")), params)
    }
}

/// The total of `filter` in `conn`'s current snapshot: remembered, or counted now.
fn total(totals: &Totals, conn: &Connection, filter: &ListFilter) -> rusqlite::Result<u64> {
    let seq: i64 = conn
        .prepare_cached("SELECT seq FROM change_log")?
        .query_row([], |row| row.get(0))?;
    if let Some(total) = totals.remembered(filter, seq) {
        return Ok(total);
    }
    let total = count(conn, filter)?;
    totals.remember(filter, seq, total);
    Ok(total)
}

/// How many customers match `filter` before paging.
fn count(conn: &Connection, filter: &ListFilter) -> rusqlite::Result<u64> {
    let (_, params) = where_clause(filter);
    let total: i64 = conn
        .prepare_cached(&count_sql(filter))?
        .query_row(params_from_iter(params.iter()), |row| row.get(0))?;
    Ok(u64::try_from(total).unwrap_or(0))
}

/// Runs the list query: calls `each` with every customer matching `filter`, in ascending
/// `clcleunik`, paged; returns how many match before paging.
fn for_each_customer(
    conn: &Connection,
    filter: &ListFilter,
    each: impl FnMut(Customer) -> rusqlite::Result<()>,
) -> rusqlite::Result<u64> {
    for_each_customer_with_total(conn, filter, None, |_| true, each)
}

/// [`for_each_customer`], telling `total` the count (read first, in the same snapshot as the
/// rows) before any row; it returns `false` to stop there.
fn for_each_customer_with_total(
    conn: &Connection,
    filter: &ListFilter,
    totals: Option<&Totals>,
    total_known: impl FnOnce(u64) -> bool,
    mut each: impl FnMut(Customer) -> rusqlite::Result<()>,
) -> rusqlite::Result<u64> {
    if filter.id.is_some() {
        return for_one_customer(conn, filter, total_known, each);
    }
    // One read transaction: the total and the rows see the same snapshot, even while an
    // import commits between the two statements. (Inside a caller's, it is that one.)
    let snapshot = conn.unchecked_transaction();
    let total = match totals {
        Some(totals) => total(totals, conn, filter)?,
        None => count(conn, filter)?,
    };
    if !total_known(total) {
        return Ok(total);
    }
    // SQLite reads LIMIT -1 as "no limit".
    let limit = filter.limit.map_or(-1, i64::from);
    let (_, params) = rows_clause(filter);
    let mut statement = conn.prepare_cached(&rows_sql(filter))?;
    let paging: [&dyn ToSql; 2] = [&limit, &filter.offset];
    let mut rows = statement.query(params_from_iter(params.iter().chain(paging.iter())))?;
    while let Some(row) = rows.next()? {
        each(Customer::from_row(row)?)?;
    }
    drop(rows);
    drop(statement);
    if let Ok(snapshot) = snapshot {
        snapshot.commit()?;
    }
    Ok(total)
}

/// [`for_each_customer_with_total`] for a filter by id: one statement reads the one row
/// that can match, which is the total (0 or 1) and, unless paged past, the page: no count,
/// no transaction (one statement is one snapshot). The commonest request, and the cold path.
fn for_one_customer(
    conn: &Connection,
    filter: &ListFilter,
    total_known: impl FnOnce(u64) -> bool,
    mut each: impl FnMut(Customer) -> rusqlite::Result<()>,
) -> rusqlite::Result<u64> {
    let (clause, params) = where_clause(filter);
    let mut statement = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM customer{clause}"))?;
    let mut rows = statement.query(params_from_iter(params.iter()))?;
    let found = match rows.next()? {
        Some(row) => Some(Customer::from_row(row)?),
        None => None,
    };
    drop(rows);
    let total = u64::from(found.is_some());
    if !total_known(total) {
        return Ok(total);
    }
    if let Some(customer) = found {
        let on_page = filter.offset <= 0
            && filter.limit != Some(0)
            && filter.after.is_none_or(|after| customer.clcleunik > after);
        if on_page {
            each(customer)?;
        }
    }
    Ok(total)
}

/// The customers matching `filter`, and how many match before paging.
pub fn list(conn: &Connection, filter: &ListFilter) -> rusqlite::Result<Page> {
    let mut customers = Vec::new();
    let total = for_each_customer(conn, filter, |customer| {
        customers.push(customer);
        Ok(())
    })?;
    Ok(Page { customers, total })
}

/// Appends one customer to a list body being written (a comma before all but the first).
fn push_customer(
    body: &mut Vec<u8>,
    first: &mut bool,
    customer: &Customer,
    view: View,
) -> rusqlite::Result<()> {
    if !std::mem::take(first) {
        body.push(b',');
    }
    serde_json::to_writer(&mut *body, &CustomerJson { customer, view })
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// The whole list response body for `filter`, written row by row as they are read, so a list
/// of 100,000 customers never exists as objects in memory, only as its JSON; and the total.
pub fn list_json(
    conn: &Connection,
    filter: &ListFilter,
    view: View,
    totals: Option<&Totals>,
) -> rusqlite::Result<(Vec<u8>, u64)> {
    // The same bytes `JsonResponse::success("Customers list", CustomerList {..})` writes.
    let mut body = crate::error::success_prefix("Customers list");
    body.extend_from_slice(br#"{"customer":["#);
    let mut first = true;
    let total = for_each_customer_with_total(
        conn,
        filter,
        totals,
        |_| true,
        |customer| push_customer(&mut body, &mut first, &customer, view),
    )?;
    body.extend_from_slice(b"]}}");
    Ok((body, total))
}

/// How many customers a list request would send (after paging), and the change number the
/// data is at: enough to decide whether to stream it, and to tag it, without reading it.
pub fn list_size(
    conn: &Connection,
    filter: &ListFilter,
    totals: &Totals,
) -> rusqlite::Result<(u64, i64)> {
    let snapshot = conn.unchecked_transaction()?;
    let total = total(totals, &snapshot, filter)?;
    let seq: i64 = snapshot.query_row("SELECT seq FROM change_log", [], |row| row.get(0))?;
    snapshot.commit()?;
    let offset = u64::try_from(filter.offset).unwrap_or(0);
    let after_offset = total.saturating_sub(offset);
    let sent = filter
        .limit
        .map_or(after_offset, |limit| after_offset.min(u64::from(limit)));
    Ok((sent, seq))
}

/// Writes the list response for `filter` in pieces of about `chunk` bytes, as rows are read,
/// so that no more than a piece exists at a time: `start` gets the total (before paging) and
/// the change number of the snapshot first, then `piece` each piece in order. Either returns
/// `false` when the reader has gone, which stops the work. One read snapshot throughout.
pub fn stream_list(
    conn: &Connection,
    filter: &ListFilter,
    view: View,
    totals: &Totals,
    chunk: usize,
    start: impl FnOnce(u64, i64) -> bool,
    mut piece: impl FnMut(Vec<u8>) -> bool,
) -> rusqlite::Result<()> {
    // The snapshot is opened by the first read; `for_each_customer` reads the total in it.
    let outer = conn.unchecked_transaction()?;
    let seq: i64 = outer.query_row("SELECT seq FROM change_log", [], |row| row.get(0))?;
    let mut body = crate::error::success_prefix("Customers list");
    body.extend_from_slice(br#"{"customer":["#);
    let mut started = Some(start);
    let mut first = true;
    let mut gone = false;
    let result = for_each_customer_with_total(
        &outer,
        filter,
        Some(totals),
        |total| {
            if let Some(start) = started.take() {
                gone = !start(total, seq);
            }
            !gone
        },
        |customer| {
            push_customer(&mut body, &mut first, &customer, view)?;
            if body.len() >= chunk {
                let full = std::mem::replace(&mut body, Vec::with_capacity(chunk + 1024));
                if !piece(full) {
                    return Err(rusqlite::Error::QueryReturnedNoRows);
                }
            }
            Ok(())
        },
    );
    match result {
        Ok(_) => {
            body.extend_from_slice(b"]}}");
            piece(body);
        }
        // The reader went away: not an error of ours.
        Err(rusqlite::Error::QueryReturnedNoRows) => {}
        Err(error) => return Err(error),
    }
    outer.commit()
}

/// The customer a login names, with their stored password hash (`None`: cannot log in).
/// When several customers share the email or login, the first by `clcleunik` is the one, as
/// old front-ends took `customer[0]`.
pub fn find_for_login(
    conn: &Connection,
    identifier: &Identifier,
) -> rusqlite::Result<Option<(Customer, Option<Secret>)>> {
    let value: &dyn ToSql = match identifier {
        Identifier::Email(email) => email,
        Identifier::Login(login) => login,
        Identifier::Id(id) => id,
    };
    let mut statement = conn.prepare_cached(&login_sql(identifier))?;
    let mut rows = statement.query([value])?;
    match rows.next()? {
        Some(row) => {
            let hash: Option<String> = row.get(Field::ALL.len())?;
            Ok(Some((Customer::from_row(row)?, hash.map(Secret::new))))
        }
        None => Ok(None),
    }
}

/// The statement [`find_for_login`] runs for this kind of identifier (its value is `?1`).
/// Public so that the index test explains the very statement the server runs.
pub fn login_sql(identifier: &Identifier) -> String {
    let condition = match identifier {
        Identifier::Email(_) => "email = ?1 COLLATE NOCASE",
        Identifier::Login(_) => "login = ?1",
        Identifier::Id(_) => "clcleunik = ?1",
    };
    format!(
        "SELECT {COLUMNS}, password_hash FROM customer WHERE {condition} \
         ORDER BY clcleunik LIMIT 1"
    )
}

/// Replaces a password hash, but only if it is still `old` (a concurrent change wins).
///
/// The same password re-hashed is no new password: the customer's sessions, which the
/// trigger on `password_hash` ends, are put back in the same transaction.
pub fn replace_hash(
    conn: &mut Connection,
    id: i64,
    old: &str,
    new: &str,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let sessions = super::sessions::save(&tx, id)?;
    let changed = tx.execute(
        "UPDATE customer SET password_hash = ?3, \
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
         WHERE clcleunik = ?1 AND password_hash = ?2",
        rusqlite::params![id, old, new],
    )?;
    super::sessions::restore(&tx, id, &sessions)?;
    tx.commit()?;
    Ok(changed == 1)
}

/// The customer `id`, if there is one.
pub fn find(conn: &Connection, id: i64) -> rusqlite::Result<Option<Customer>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM customer WHERE clcleunik = ?1"
    ))?
    .query_row([id], Customer::from_row)
    .optional()
}

/// How many customers there are.
pub fn count_all(conn: &Connection) -> rusqlite::Result<u64> {
    let n: i64 = conn.query_row("SELECT count(*) FROM customer", [], |row| row.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The stored bcrypt hash of highest cost, if any.
pub fn slowest_hash(conn: &Connection) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT password_hash FROM customer WHERE password_hash LIKE '$2_$%' \
         ORDER BY substr(password_hash, 5, 2) DESC LIMIT 1",
        [],
        |row| row.get(0),
    )
    .optional()
}

/// Whether another customer than `id` has this email (ignoring case) or login.
fn taken(conn: &Connection, field: Field, value: &str, id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached(&taken_sql(field))?
        .query_row(rusqlite::params![value, id], |row| row.get(0))
}

/// The statement [`taken`] runs for `field` (the email, or else the login). Public so that
/// the index test explains the very statement the server runs.
pub fn taken_sql(field: Field) -> String {
    let condition = match field {
        Field::Email => "email = ?1 COLLATE NOCASE",
        _ => "login = ?1",
    };
    format!("SELECT EXISTS (SELECT 1 FROM customer WHERE {condition} AND clcleunik != ?2)")
}

/// Refuses an email or login another customer already has (empty ones are never "taken").
fn check_unique(conn: &Connection, customer: &Customer) -> Result<(), WriteError> {
    for (field, value) in [
        (Field::Email, &customer.email),
        (Field::Login, &customer.login),
    ] {
        if !value.is_empty() && taken(conn, field, value, customer.clcleunik)? {
            return Err(WriteError::Taken(field));
        }
    }
    Ok(())
}

const UPDATED_NOW: &str = "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Applies the `present` fields of `changes` to customer `id` in one transaction, with its
/// audit row. Returns the customer as stored now. Only fields whose value differs are
/// written and recorded (by name).
pub fn update(
    conn: &mut Connection,
    id: i64,
    changes: &Customer,
    present: FieldSet,
    actor: &str,
    retention: Retention,
) -> Result<Customer, WriteError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current = find(&tx, id)?.ok_or(WriteError::NotFound(id))?;
    let mut updated = current.clone();
    let mut changed = Vec::new();
    for field in Field::ALL.into_iter().filter(|f| present.contains(*f)) {
        if field == Field::Clcleunik {
            continue;
        }
        let mut probe = current.clone();
        probe.copy_field(changes, field);
        if probe != current {
            changed.push(field.name());
        }
        updated.copy_field(changes, field);
    }
    if updated != current {
        let email_or_login_changed =
            updated.email != current.email || updated.login != current.login;
        if email_or_login_changed {
            check_unique(&tx, &updated)?;
        }
        let set = COLUMNS
            .split(", ")
            .skip(1)
            .map(|column| format!("{column} = ?"))
            .collect::<Vec<_>>()
            .join(", ");
        let params = updated.to_params();
        tx.prepare_cached(&format!(
            "UPDATE customer SET {set}, {UPDATED_NOW} WHERE clcleunik = ?"
        ))?
        .execute(params_from_iter(
            params[1..].iter().copied().chain([&id as &dyn ToSql]),
        ))?;
    }
    super::audit::record(
        &tx,
        actor,
        crate::audit::Action::Update,
        Some(id),
        &changed,
        "",
        retention,
    )?;
    tx.commit()?;
    Ok(updated)
}

/// The id a registration without `clcleunik` gets: one past the largest id ever given, so a
/// deleted customer's id is never handed to someone else. Once an id of 2^63-1 was given (an
/// ADD may name any id), the smallest id neither in use nor remembered as deleted.
fn next_free_id(conn: &Connection) -> Result<i64, WriteError> {
    let highest: i64 = conn.query_row("SELECT id FROM customer_id_high", [], |row| row.get(0))?;
    if let Some(next) = highest.checked_add(1) {
        return Ok(next);
    }
    let gap: Option<i64> = conn.query_row(
        "WITH used(id) AS (SELECT clcleunik FROM customer UNION SELECT clcleunik FROM tombstone) \
         SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM used WHERE id = 1) THEN 1 ELSE \
           (SELECT MIN(u.id) + 1 FROM used u WHERE u.id < 9223372036854775807 \
             AND NOT EXISTS (SELECT 1 FROM used v WHERE v.id = u.id + 1)) END",
        [],
        |row| row.get(0),
    )?;
    gap.ok_or(WriteError::Taken(Field::Clcleunik))
}

/// Adds a customer (registration) in one transaction with its audit row: the given
/// `clcleunik`, or the next free one when it is 0; `addedDate` and `addHour` default to now
/// (the server's local time). Returns the customer as stored.
pub fn insert(
    conn: &mut Connection,
    mut customer: Customer,
    present: FieldSet,
    password_hash: Option<String>,
    actor: &str,
    retention: Retention,
) -> Result<Customer, WriteError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if customer.clcleunik == 0 {
        customer.clcleunik = next_free_id(&tx)?;
    } else if find(&tx, customer.clcleunik)?.is_some() {
        return Err(WriteError::Taken(Field::Clcleunik));
    }
    check_unique(&tx, &customer)?;
    if customer.added_date.is_empty() || customer.add_hour.is_empty() {
        let (date, hour): (String, String) = tx.query_row(
            "SELECT strftime('%Y-%m-%d', 'now', 'localtime'), \
                    strftime('%H:%M:%S', 'now', 'localtime')",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        if customer.added_date.is_empty() {
            customer.added_date = date;
        }
        if customer.add_hour.is_empty() {
            customer.add_hour = hour;
        }
    }
    let params = customer.to_params();
    tx.prepare_cached(&format!(
        "INSERT INTO customer ({COLUMNS}, password_hash) VALUES ({}, ?)",
        vec!["?"; Field::ALL.len()].join(", ")
    ))?
    .execute(params_from_iter(
        params.iter().copied().chain([&password_hash as &dyn ToSql]),
    ))?;
    let mut fields: Vec<&str> = Field::ALL
        .into_iter()
        .filter(|f| present.contains(*f))
        .map(Field::name)
        .collect();
    if password_hash.is_some() {
        fields.push("password");
    }
    super::audit::record(
        &tx,
        actor,
        crate::audit::Action::Add,
        Some(customer.clcleunik),
        &fields,
        "",
        retention,
    )?;
    tx.commit()?;
    Ok(customer)
}

/// Deletes customer `id` in one transaction with its audit row.
pub fn delete(
    conn: &mut Connection,
    id: i64,
    actor: &str,
    retention: Retention,
) -> Result<(), WriteError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if tx.execute("DELETE FROM customer WHERE clcleunik = ?1", [id])? == 0 {
        return Err(WriteError::NotFound(id));
    }
    super::audit::record(
        &tx,
        actor,
        crate::audit::Action::Delete,
        Some(id),
        &[],
        "",
        retention,
    )?;
    tx.commit()?;
    Ok(())
}

/// Sets a customer's password hash, with its audit row (the field's name, never a value);
/// `false` when no customer has that key.
pub fn set_password(
    conn: &mut Connection,
    id: i64,
    hash: &str,
    actor: &str,
    action: crate::audit::Action,
    retention: Retention,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let changed = tx.execute(
        &format!("UPDATE customer SET password_hash = ?2, {UPDATED_NOW} WHERE clcleunik = ?1"),
        rusqlite::params![id, hash],
    )?;
    if changed == 1 {
        super::audit::record(&tx, actor, action, Some(id), &["password"], "", retention)?;
    }
    tx.commit()?;
    Ok(changed == 1)
}

/// The changes after `?1`, at most `?2` of them, as (seq, deleted, id): the statement
/// [`changes_since`] runs. Public so that the index test explains it.
pub const CHANGES_SQL: &str = "SELECT seq, deleted, id FROM (
         SELECT change_seq AS seq, 0 AS deleted, clcleunik AS id FROM customer
         WHERE change_seq > ?1
         UNION ALL
         SELECT t.seq, 1, t.clcleunik FROM tombstone t
         WHERE t.seq > ?1
           AND NOT EXISTS (SELECT 1 FROM customer c WHERE c.clcleunik = t.clcleunik)
     ) ORDER BY seq LIMIT ?2";

/// The changes after `since`, at most `limit` of them (customers and deletions together), read
/// in one snapshot. Writes are serialised and each takes the next number inside its own
/// transaction, so numbers appear in commit order: a poll that goes on from `next` neither
/// misses nor repeats a change. A token from before the kept deletions, or from the future (a
/// restored database), is `Gone`.
pub fn changes_since(conn: &Connection, since: i64, limit: u32) -> Result<ChangesPage, ApiError> {
    let snapshot = conn.unchecked_transaction()?;
    let (current, pruned_through): (i64, i64) =
        snapshot.query_row("SELECT seq, pruned_through FROM change_log", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    if since > current || (since != 0 && since < pruned_through) {
        return Err(ApiError::Gone(
            "This changes token is too old (or from another database): start again from \
             since=0 and replace your copy"
                .into(),
        ));
    }
    let events: Vec<(i64, bool, i64)> = snapshot
        .prepare_cached(CHANGES_SQL)?
        .query_map(rusqlite::params![since, limit], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut page = ChangesPage {
        customers: Vec::new(),
        deleted: Vec::new(),
        // A full page goes on from its last change; a short one saw everything up to now.
        next: match events.last() {
            Some((seq, _, _)) if events.len() == limit as usize => *seq,
            _ => current,
        },
    };
    for (_, deleted, id) in events {
        if deleted {
            page.deleted.push(id);
        } else if let Some(customer) = find(&snapshot, id)? {
            page.customers.push(customer);
        }
    }
    snapshot.commit()?;
    Ok(page)
}

/// Forgets deletions older than `keep_days`; tokens from before them get 410 from then on.
pub fn prune_tombstones(conn: &Connection, keep_days: u32) -> rusqlite::Result<usize> {
    let cutoff = format!("-{keep_days} days");
    conn.execute(
        "UPDATE change_log SET pruned_through = MAX(pruned_through, COALESCE(
             (SELECT MAX(seq) FROM tombstone
              WHERE deleted_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)), 0))",
        [&cutoff],
    )?;
    conn.execute(
        "DELETE FROM tombstone WHERE deleted_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)",
        [&cutoff],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::CustomerList;
    #[test]
    fn after_pages_by_key_and_the_total_ignores_it() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("CREATE TABLE customer ({COLUMNS})"))
            .unwrap();
        for id in 1..=10 {
            let mut values = vec!["'x'".to_owned(); 22];
            values[0] = id.to_string();
            (values[18], values[19], values[21]) = ("1".into(), "0".into(), "0".into());
            conn.execute(
                &format!("INSERT INTO customer VALUES ({})", values.join(", ")),
                [],
            )
            .unwrap();
        }
        let filter = ListFilter::parse(Some("after=4&limit=3")).unwrap();
        let page = list(&conn, &filter).unwrap();
        let ids: Vec<i64> = page.customers.iter().map(|c| c.clcleunik).collect();
        assert_eq!(ids, [5, 6, 7]);
        assert_eq!(page.total, 10);
        assert!(ListFilter::parse(Some("after=-1")).is_err());
    }

    #[test]
    fn id_aliases_agree_and_a_space_in_an_email_is_a_plus() {
        assert_eq!(ListFilter::parse(Some("id=5")).unwrap().id, Some(5));
        assert_eq!(
            ListFilter::parse(Some("id=5&id_client=5")).unwrap().id,
            Some(5)
        );
        assert!(ListFilter::parse(Some("id=5&clcleunik=6")).is_err());
        assert_eq!(
            ListFilter::parse(Some("email=a+b@x.be"))
                .unwrap()
                .email
                .as_deref(),
            Some("a+b@x.be")
        );
    }

    #[test]
    fn filter_rejects_signs_and_accepts_leading_zeros() {
        assert!(ListFilter::parse(Some("id_client=+1")).is_err());
        assert!(ListFilter::parse(Some("id_client=%201")).is_err());
        assert_eq!(
            ListFilter::parse(Some("id_client=007")).unwrap().id,
            Some(7)
        );
        assert_eq!(
            ListFilter::parse(Some("email=a%2Bb%40x.be"))
                .unwrap()
                .email
                .as_deref(),
            Some("a+b@x.be")
        );
    }

    #[test]
    fn the_streamed_list_is_byte_identical_to_the_envelope() {
        let conn = Connection::open_in_memory().unwrap();
        let mut values = vec!["'x'"; 22];
        (values[0], values[18], values[19], values[21]) = ("7", "1", "2.5", "0");
        conn.execute_batch(&format!(
            "CREATE TABLE customer ({COLUMNS}); INSERT INTO customer VALUES ({});",
            values.join(", ")
        ))
        .unwrap();
        let view = View {
            redaction: crate::customer::Redaction::from_names(&["phone"]).unwrap(),
            string_ids: true,
        };
        let (body, total) = list_json(&conn, &ListFilter::default(), view, None).unwrap();
        let page = list(&conn, &ListFilter::default()).unwrap();
        let envelope = crate::error::JsonResponse::success(
            "Customers list",
            CustomerList {
                customers: &page.customers,
                view,
            },
        );
        assert_eq!(total, 1);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            String::from_utf8(envelope.body).unwrap()
        );
    }
}
