//! The customer queries on PostgreSQL: the list (as rows, straight to JSON, or streamed in
//! pieces), lookups for login, the writes with their audit rows, and the changes feed. The
//! same answers, byte for byte, as `store/sqlite/customers.rs`.
//!
//! Reads that need a total and rows (or a change number and rows) take them in one
//! REPEATABLE READ, read-only snapshot. Writes that change customers run in READ COMMITTED
//! and first lock the row of `change_log` ([`Begin::CustomerWrite`], as SQLite's
//! `BEGIN IMMEDIATE` takes the write lock): whatever node they run on, they go one at a
//! time, so the checks they make (an email already taken, the next free id) still hold when
//! they commit, and they take their change numbers in commit order.

use postgres::types::ToSql;
use postgres::Row;

use super::conn::{Begin, Conn};
use super::{audit, get, retrying, sessions};
use crate::audit::Action;
use crate::auth::Secret;
use crate::config::Retention;
use crate::customer::{
    ChangesPage, Customer, CustomerJson, Field, FieldSet, Identifier, ListFilter, Page, Totals,
    View, WriteError,
};
use crate::error::ApiError;
use crate::store::{Error, Result};

/// The columns of `customer` that make a [`Customer`], in [`Field::ALL`] order (the wire
/// names; the camelCase ones quoted so that PostgreSQL keeps their case).
pub const COLUMNS: &str = "clcleunik, \"customerNumber\", \"groupePrice\", login, \"lastName\", \
    \"firstName\", address, zipcode, city, country, phone, cellphone, email, denomination, \
    \"tvaNumber\", \"addedDate\", \"addHour\", language, \"showPrice\", \"webRemise\", \
    megawinapp_login, notification_accepted";

type Param<'a> = &'a (dyn ToSql + Sync);

/// Reads a customer from `row`, whose columns from `at` on are [`COLUMNS`].
pub fn from_pg_row(row: &Row, at: usize) -> Result<Customer> {
    Ok(Customer {
        clcleunik: get(row, at)?,
        customer_number: get(row, at + 1)?,
        groupe_price: get(row, at + 2)?,
        login: get(row, at + 3)?,
        last_name: get(row, at + 4)?,
        first_name: get(row, at + 5)?,
        address: get(row, at + 6)?,
        zipcode: get(row, at + 7)?,
        city: get(row, at + 8)?,
        country: get(row, at + 9)?,
        phone: get(row, at + 10)?,
        cellphone: get(row, at + 11)?,
        email: get(row, at + 12)?,
        denomination: get(row, at + 13)?,
        tva_number: get(row, at + 14)?,
        added_date: get(row, at + 15)?,
        add_hour: get(row, at + 16)?,
        language: get(row, at + 17)?,
        show_price: get(row, at + 18)?,
        web_remise: get(row, at + 19)?,
        megawinapp_login: get(row, at + 20)?,
        notification_accepted: get(row, at + 21)?,
    })
}

/// The values to bind for [`COLUMNS`], in order.
fn params(customer: &Customer) -> [Param<'_>; 22] {
    let Customer {
        clcleunik,
        customer_number,
        groupe_price,
        login,
        last_name,
        first_name,
        address,
        zipcode,
        city,
        country,
        phone,
        cellphone,
        email,
        denomination,
        tva_number,
        added_date,
        add_hour,
        language,
        show_price,
        web_remise,
        megawinapp_login,
        notification_accepted,
    } = customer;
    [
        clcleunik,
        customer_number,
        groupe_price,
        login,
        last_name,
        first_name,
        address,
        zipcode,
        city,
        country,
        phone,
        cellphone,
        email,
        denomination,
        tva_number,
        added_date,
        add_hour,
        language,
        show_price,
        web_remise,
        megawinapp_login,
        notification_accepted,
    ]
}

/// `email` equal to `$n` ignoring ASCII case (SQLite's NOCASE): `lower()` of a "C" text
/// folds ASCII letters only, and the index on `lower(email)` answers it.
fn email_matches(n: usize) -> String {
    format!("lower(email) = lower(${n}::text COLLATE \"C\")")
}

/// The `WHERE` clause (paging excluded unless `with_cursor`, which adds `after`) and its
/// parameters, numbered from `$1`.
fn clause(filter: &ListFilter, with_cursor: bool) -> (String, Vec<Param<'_>>) {
    let mut conditions = Vec::new();
    let mut params: Vec<Param<'_>> = Vec::new();
    if let (true, Some(after)) = (with_cursor, &filter.after) {
        params.push(after);
        conditions.push(format!("clcleunik > ${}", params.len()));
    }
    if let Some(id) = &filter.id {
        params.push(id);
        conditions.push(format!("clcleunik = ${}", params.len()));
    }
    // PostgreSQL text cannot hold a NUL character, so no stored email or login has one: a
    // filter with one matches nothing (as on SQLite), and is never sent (it would be an
    // encoding error).
    if let Some(email) = &filter.email {
        if email.contains('\0') {
            conditions.push("FALSE".to_owned());
        } else {
            params.push(email);
            conditions.push(email_matches(params.len()));
        }
    }
    if let Some(login) = &filter.login {
        if login.contains('\0') {
            conditions.push("FALSE".to_owned());
        } else {
            params.push(login);
            conditions.push(format!("login = ${}", params.len()));
        }
    }
    if conditions.is_empty() {
        (String::new(), params)
    } else {
        (format!(" WHERE {}", conditions.join(" AND ")), params)
    }
}

/// The statement that counts the customers matching `filter` before paging, and its
/// parameters.
pub fn count_sql(filter: &ListFilter) -> (String, Vec<Param<'_>>) {
    let (clause, params) = clause(filter, false);
    (format!("SELECT count(*) FROM customer{clause}"), params)
}

/// The statement that reads the rows of a list (filters, `after`, then LIMIT and OFFSET;
/// a NULL limit is no limit), and its parameters.
pub fn rows_sql<'f>(filter: &'f ListFilter, limit: &'f Option<i64>) -> (String, Vec<Param<'f>>) {
    let (clause, mut params) = clause(filter, true);
    params.push(limit);
    params.push(&filter.offset);
    let sql = format!(
        "SELECT {COLUMNS} FROM customer{clause} ORDER BY clcleunik LIMIT ${} OFFSET ${}",
        params.len() - 1,
        params.len()
    );
    (sql, params)
}

/// How many customers match `filter` before paging.
fn count(conn: &mut Conn, filter: &ListFilter) -> Result<u64> {
    let (sql, params) = count_sql(filter);
    let total: i64 = get(&conn.one(&sql, &params)?, 0)?;
    Ok(u64::try_from(total).unwrap_or(0))
}

/// The total of `filter` at change number `seq` (read in the same snapshot): remembered, or
/// counted now and remembered.
fn total(conn: &mut Conn, filter: &ListFilter, totals: Option<&Totals>, seq: i64) -> Result<u64> {
    if let Some(total) = totals.and_then(|totals| totals.remembered(filter, seq)) {
        return Ok(total);
    }
    let total = count(conn, filter)?;
    if let Some(totals) = totals {
        totals.remember(filter, seq, total);
    }
    Ok(total)
}

/// Calls `each` with every customer of the page `filter` asks for, in ascending
/// `clcleunik`, as the rows arrive (a large list never sits in memory as rows).
fn for_each_customer(
    conn: &mut Conn,
    filter: &ListFilter,
    mut each: impl FnMut(Customer) -> Result<()>,
) -> Result<()> {
    let limit = filter.limit.map(i64::from);
    let (sql, params) = rows_sql(filter, &limit);
    let statement = conn.statement(&sql)?;
    let mut failure = None;
    {
        let client = conn.client()?;
        match client.query_raw(&statement, params.iter().copied()) {
            Ok(mut rows) => loop {
                match postgres::fallible_iterator::FallibleIterator::next(&mut rows) {
                    Ok(Some(row)) => from_pg_row(&row, 0).and_then(&mut each)?,
                    Ok(None) => break,
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            },
            Err(error) => failure = Some(error),
        }
    }
    match failure {
        Some(error) => conn.check(Err(error)),
        None => Ok(()),
    }
}

/// The customers matching `filter`, and how many match before paging.
pub fn list(conn: &mut Conn, filter: &ListFilter) -> Result<Page> {
    let mut tx = conn.begin(Begin::Snapshot)?;
    let total = count(&mut tx, filter)?;
    let mut customers = Vec::new();
    for_each_customer(&mut tx, filter, |customer| {
        customers.push(customer);
        Ok(())
    })?;
    tx.commit()?;
    Ok(Page { customers, total })
}

/// Appends one customer to a list body being written (a comma before all but the first).
fn push_customer(
    body: &mut Vec<u8>,
    first: &mut bool,
    customer: &Customer,
    view: View,
) -> Result<()> {
    if !std::mem::take(first) {
        body.push(b',');
    }
    serde_json::to_writer(&mut *body, &CustomerJson { customer, view })
        .map_err(|e| Error::Data(format!("a customer could not be written as JSON: {e}")))
}

/// The start of a list response body: the same bytes
/// `JsonResponse::success("Customers list", CustomerList {..})` writes.
fn list_prefix() -> Vec<u8> {
    let mut body = crate::error::success_prefix("Customers list");
    body.extend_from_slice(br#"{"customer":["#);
    body
}

/// The whole list response body for `filter`, written row by row as they arrive; and the
/// total before paging (from `totals` when it has it at this change number).
pub fn list_json(
    conn: &mut Conn,
    filter: &ListFilter,
    view: View,
    totals: Option<&Totals>,
) -> Result<(Vec<u8>, u64)> {
    let (mut tx, seq) = conn.snapshot_at_seq()?;
    let total = total(&mut tx, filter, totals, seq)?;
    let mut body = list_prefix();
    let mut first = true;
    for_each_customer(&mut tx, filter, |customer| {
        push_customer(&mut body, &mut first, &customer, view)
    })?;
    tx.commit()?;
    body.extend_from_slice(b"]}}");
    Ok((body, total))
}

/// How many customers a list request would send (after paging), and the change number the
/// data is at, from one snapshot.
pub fn list_size(conn: &mut Conn, filter: &ListFilter, totals: &Totals) -> Result<(u64, i64)> {
    let (mut tx, seq) = conn.snapshot_at_seq()?;
    let total = total(&mut tx, filter, Some(totals), seq)?;
    tx.commit()?;
    let offset = u64::try_from(filter.offset).unwrap_or(0);
    let after_offset = total.saturating_sub(offset);
    let sent = filter
        .limit
        .map_or(after_offset, |limit| after_offset.min(u64::from(limit)));
    Ok((sent, seq))
}

/// Rows fetched at a time from the cursor of a streamed list.
const FETCH: usize = 500;

/// Writes the list response for `filter` in pieces of about `chunk` bytes, from one
/// snapshot: `start` gets the total (before paging) and the change number first, then
/// `piece` each piece in order. Either returns `false` when the reader has gone, which ends
/// the work there. The rows come through a cursor, [`FETCH`] at a time, so that a reader who
/// leaves half-way costs nothing more.
pub fn stream_list(
    conn: &mut Conn,
    filter: &ListFilter,
    view: View,
    totals: &Totals,
    chunk: usize,
    start: &mut dyn FnMut(u64, i64) -> bool,
    piece: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<()> {
    let (mut tx, seq) = conn.snapshot_at_seq()?;
    let total = total(&mut tx, filter, Some(totals), seq)?;
    if !start(total, seq) {
        return Ok(());
    }
    let limit = filter.limit.map(i64::from);
    let (sql, params) = rows_sql(filter, &limit);
    tx.exec(
        &format!("DECLARE clientele_list NO SCROLL CURSOR FOR {sql}"),
        &params,
    )?;
    let fetch = format!("FETCH {FETCH} FROM clientele_list");
    let mut body = list_prefix();
    let mut first = true;
    loop {
        let rows = tx.query(&fetch, &[])?;
        for row in &rows {
            push_customer(&mut body, &mut first, &from_pg_row(row, 0)?, view)?;
            if body.len() >= chunk {
                let full = std::mem::replace(&mut body, Vec::with_capacity(chunk + 1024));
                if !piece(full) {
                    // The reader went away: not an error of ours.
                    return Ok(());
                }
            }
        }
        if rows.len() < FETCH {
            break;
        }
    }
    body.extend_from_slice(b"]}}");
    piece(body);
    tx.commit()
}

/// How many customers there are.
pub fn count_all(conn: &mut Conn) -> Result<u64> {
    let n: i64 = get(&conn.one("SELECT count(*) FROM customer", &[])?, 0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The stored bcrypt hash of highest cost, if any.
pub fn slowest_hash(conn: &mut Conn) -> Result<Option<String>> {
    conn.opt(
        "SELECT password_hash FROM customer WHERE password_hash LIKE '$2_$%' \
         ORDER BY substr(password_hash, 5, 2) DESC LIMIT 1",
        &[],
    )?
    .map(|row| get(&row, 0))
    .transpose()
}

/// How many demo customers are still stored.
pub fn demo_left(conn: &mut Conn) -> Result<usize> {
    let n: i64 = get(&conn.one("SELECT count(*) FROM demo_customer", &[])?, 0)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// The customer `id`, if there is one.
pub fn find(conn: &mut Conn, id: i64) -> Result<Option<Customer>> {
    conn.opt(
        &format!("SELECT {COLUMNS} FROM customer WHERE clcleunik = $1"),
        &[&id],
    )?
    .map(|row| from_pg_row(&row, 0))
    .transpose()
}

/// The statement [`find_for_login`] runs for this kind of identifier (its value is `$1`).
pub fn login_sql(identifier: &Identifier) -> String {
    let condition = match identifier {
        Identifier::Email(_) => email_matches(1),
        Identifier::Login(_) => "login = $1".to_owned(),
        Identifier::Id(_) => "clcleunik = $1".to_owned(),
    };
    format!(
        "SELECT {COLUMNS}, password_hash FROM customer WHERE {condition} \
         ORDER BY clcleunik LIMIT 1"
    )
}

/// The customer a login names, with their stored password hash; the first by `clcleunik`
/// when several share the email or login.
pub fn find_for_login(
    conn: &mut Conn,
    identifier: &Identifier,
) -> Result<Option<(Customer, Option<Secret>)>> {
    let value: Param<'_> = match identifier {
        // No stored email or login holds a NUL (PostgreSQL text cannot): nobody.
        Identifier::Email(text) | Identifier::Login(text) if text.contains('\0') => {
            return Ok(None)
        }
        Identifier::Email(email) => email,
        Identifier::Login(login) => login,
        Identifier::Id(id) => id,
    };
    let Some(row) = conn.opt(&login_sql(identifier), &[value])? else {
        return Ok(None);
    };
    let hash: Option<String> = get(&row, Field::ALL.len())?;
    Ok(Some((from_pg_row(&row, 0)?, hash.map(Secret::new))))
}

/// The statement that says whether another customer than `$2` has this email (ignoring
/// ASCII case), or else this login.
pub fn taken_sql(field: Field) -> String {
    let condition = match field {
        Field::Email => email_matches(1),
        _ => "login = $1".to_owned(),
    };
    format!("SELECT EXISTS (SELECT 1 FROM customer WHERE {condition} AND clcleunik <> $2)")
}

/// Refuses an email or login another customer already has (empty ones are never "taken").
fn check_unique(conn: &mut Conn, customer: &Customer) -> Result<(), WriteError> {
    for (field, value) in [
        (Field::Email, &customer.email),
        (Field::Login, &customer.login),
    ] {
        if value.is_empty() {
            continue;
        }
        let taken: bool = get(
            &conn.one(&taken_sql(field), &[value, &customer.clcleunik])?,
            0,
        )?;
        if taken {
            return Err(WriteError::Taken(field));
        }
    }
    Ok(())
}

/// Applies the `present` fields of `changes` to customer `id` in one transaction, with its
/// audit row; the customer as stored now. Only fields whose value differs are written and
/// recorded (by name).
pub fn update(
    conn: &mut Conn,
    id: i64,
    changes: &Customer,
    present: FieldSet,
    actor: &str,
    retention: Retention,
) -> Result<Customer, WriteError> {
    retrying(conn, |conn| {
        let mut tx = conn.begin(Begin::CustomerWrite)?;
        audit::prune(&mut tx, retention)?;
        let current = find(&mut tx, id)?.ok_or(WriteError::NotFound(id))?;
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
            if updated.email != current.email || updated.login != current.login {
                check_unique(&mut tx, &updated)?;
            }
            let set = COLUMNS
                .split(", ")
                .enumerate()
                .skip(1)
                .map(|(i, column)| format!("{column} = ${}", i + 1))
                .collect::<Vec<_>>()
                .join(", ");
            let values = params(&updated);
            let mut bound: Vec<Param<'_>> = vec![&id];
            bound.extend_from_slice(&values[1..]);
            tx.exec(
                &format!(
                    "UPDATE customer SET {set}, updated_at = clientele_utc_ms() \
                     WHERE clcleunik = $1"
                ),
                &bound,
            )?;
        }
        audit::record(&mut tx, actor, Action::Update, Some(id), &changed, "")?;
        tx.commit()?;
        Ok(updated)
    })
}

/// The id a registration without `clcleunik` gets: one past the largest id ever given, so a
/// deleted customer's id is never handed to someone else. Once an id of 2^63-1 was given,
/// the smallest id neither in use nor remembered as deleted.
fn next_free_id(conn: &mut Conn) -> Result<i64, WriteError> {
    let highest: i64 = get(&conn.one("SELECT id FROM customer_id_high", &[])?, 0)?;
    if let Some(next) = highest.checked_add(1) {
        return Ok(next);
    }
    let gap: Option<i64> = get(
        &conn.one(
            "WITH used(id) AS (SELECT clcleunik FROM customer UNION SELECT clcleunik FROM tombstone) \
             SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM used WHERE id = 1) THEN 1 ELSE \
               (SELECT min(u.id) + 1 FROM used u WHERE u.id < 9223372036854775807 \
                 AND NOT EXISTS (SELECT 1 FROM used v WHERE v.id = u.id + 1)) END",
            &[],
        )?,
        0,
    )?;
    gap.ok_or(WriteError::Taken(Field::Clcleunik))
}

/// Today's date (`YYYY-MM-DD`) and the time (`HH:MM:SS`) in this server's local time zone,
/// exactly as SQLite's `'localtime'` gives them on the same machine (SQLite itself is asked:
/// the PostgreSQL server's time zone may be another).
fn local_date_and_hour() -> Result<(String, String)> {
    let sqlite = rusqlite::Connection::open_in_memory()?;
    Ok(sqlite.query_row(
        "SELECT strftime('%Y-%m-%d', 'now', 'localtime'), strftime('%H:%M:%S', 'now', 'localtime')",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?)
}

/// Adds a customer (registration) in one transaction with its audit row: the given
/// `clcleunik`, or the next free one when it is 0; `addedDate` and `addHour` default to now
/// (the server's local time). The customer as stored.
pub fn insert(
    conn: &mut Conn,
    customer: Customer,
    present: FieldSet,
    password_hash: Option<String>,
    actor: &str,
    retention: Retention,
) -> Result<Customer, WriteError> {
    retrying(conn, |conn| {
        let mut customer = customer.clone();
        let mut tx = conn.begin(Begin::CustomerWrite)?;
        audit::prune(&mut tx, retention)?;
        if customer.clcleunik == 0 {
            customer.clcleunik = next_free_id(&mut tx)?;
        } else if find(&mut tx, customer.clcleunik)?.is_some() {
            return Err(WriteError::Taken(Field::Clcleunik));
        }
        check_unique(&mut tx, &customer)?;
        if customer.added_date.is_empty() || customer.add_hour.is_empty() {
            let (date, hour) = local_date_and_hour()?;
            if customer.added_date.is_empty() {
                customer.added_date = date;
            }
            if customer.add_hour.is_empty() {
                customer.add_hour = hour;
            }
        }
        let values = params(&customer);
        let mut bound: Vec<Param<'_>> = values.to_vec();
        bound.push(&password_hash);
        let placeholders = (1..=bound.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        tx.exec(
            &format!("INSERT INTO customer ({COLUMNS}, password_hash) VALUES ({placeholders})"),
            &bound,
        )?;
        let mut fields: Vec<&str> = Field::ALL
            .into_iter()
            .filter(|f| present.contains(*f))
            .map(Field::name)
            .collect();
        if password_hash.is_some() {
            fields.push("password");
        }
        audit::record(
            &mut tx,
            actor,
            Action::Add,
            Some(customer.clcleunik),
            &fields,
            "",
        )?;
        tx.commit()?;
        Ok(customer)
    })
}

/// Deletes customer `id` in one transaction with its audit row.
pub fn delete(
    conn: &mut Conn,
    id: i64,
    actor: &str,
    retention: Retention,
) -> Result<(), WriteError> {
    retrying(conn, |conn| {
        let mut tx = conn.begin(Begin::CustomerWrite)?;
        audit::prune(&mut tx, retention)?;
        if tx.exec("DELETE FROM customer WHERE clcleunik = $1", &[&id])? == 0 {
            return Err(WriteError::NotFound(id));
        }
        audit::record(&mut tx, actor, Action::Delete, Some(id), &[], "")?;
        tx.commit()?;
        Ok(())
    })
}

/// Sets a customer's password hash, with its audit row (the field's name, never a value);
/// `false` when no customer has that key.
pub fn set_password(
    conn: &mut Conn,
    id: i64,
    hash: &str,
    actor: &str,
    action: Action,
    retention: Retention,
) -> Result<bool> {
    retrying(conn, |conn| {
        let mut tx = conn.begin(Begin::Write)?;
        audit::prune(&mut tx, retention)?;
        let changed = tx.exec(
            "UPDATE customer SET password_hash = $2, updated_at = clientele_utc_ms() \
             WHERE clcleunik = $1",
            &[&id, &hash],
        )?;
        if changed == 1 {
            audit::record(&mut tx, actor, action, Some(id), &["password"], "")?;
        }
        tx.commit()?;
        Ok(changed == 1)
    })
}

/// Replaces a password hash, but only if it is still `old` (a concurrent change wins). The
/// same password re-hashed is no new password: the customer's sessions, which the trigger
/// on `password_hash` ends, are put back in the same transaction.
pub fn replace_hash(conn: &mut Conn, id: i64, old: &str, new: &str) -> Result<bool> {
    retrying(conn, |conn| {
        let mut tx = conn.begin(Begin::Write)?;
        let saved = sessions::save(&mut tx, id)?;
        let changed = tx.exec(
            "UPDATE customer SET password_hash = $3, updated_at = clientele_utc_ms() \
             WHERE clcleunik = $1 AND password_hash = $2",
            &[&id, &old, &new],
        )?;
        sessions::restore(&mut tx, id, &saved)?;
        tx.commit()?;
        Ok(changed == 1)
    })
}

/// The changes after `$1`, at most `$2` of them, as (seq, deleted, id, then the customer's
/// [`COLUMNS`] for those not deleted): SQLite's UNION, with the rows it names joined in.
pub const CHANGES_SQL: &str =
    "SELECT e.seq, e.deleted, e.id, c.clcleunik, c.\"customerNumber\", c.\"groupePrice\", \
     c.login, c.\"lastName\", c.\"firstName\", c.address, c.zipcode, c.city, c.country, \
     c.phone, c.cellphone, c.email, c.denomination, c.\"tvaNumber\", c.\"addedDate\", \
     c.\"addHour\", c.language, c.\"showPrice\", c.\"webRemise\", c.megawinapp_login, \
     c.notification_accepted FROM (
         SELECT seq, deleted, id FROM (
             SELECT change_seq AS seq, false AS deleted, clcleunik AS id FROM customer
             WHERE change_seq > $1
             UNION ALL
             SELECT t.seq, true, t.clcleunik FROM tombstone t
             WHERE t.seq > $1
               AND NOT EXISTS (SELECT 1 FROM customer c WHERE c.clcleunik = t.clcleunik)
         ) events ORDER BY seq LIMIT $2
     ) e LEFT JOIN customer c ON NOT e.deleted AND c.clcleunik = e.id
     ORDER BY e.seq";

/// The changes after `since`, at most `limit` of them (customers and deletions together),
/// read in one snapshot. Change numbers are taken in commit order (see the schema), so a
/// poll that goes on from `next` neither misses nor repeats a change. A token from before
/// the kept deletions, or from the future (a restored database), is `Gone`.
pub fn changes_since(conn: &mut Conn, since: i64, limit: u32) -> Result<ChangesPage, ApiError> {
    let mut tx = conn.begin(Begin::Snapshot)?;
    let row = tx.one(
        "SELECT seq, pruned_through FROM change_log WHERE id = 1",
        &[],
    )?;
    let (current, pruned_through): (i64, i64) = (get(&row, 0)?, get(&row, 1)?);
    if since > current || (since != 0 && since < pruned_through) {
        return Err(ApiError::Gone(
            "This changes token is too old (or from another database): start again from \
             since=0 and replace your copy"
                .into(),
        ));
    }
    let rows = tx.query(CHANGES_SQL, &[&since, &i64::from(limit)])?;
    tx.commit()?;
    let mut page = ChangesPage {
        customers: Vec::new(),
        deleted: Vec::new(),
        // A full page goes on from its last change; a short one saw everything up to now.
        next: match rows.last() {
            Some(last) if rows.len() == limit as usize => get(last, 0)?,
            _ => current,
        },
    };
    for row in &rows {
        let deleted: bool = get(row, 1)?;
        if deleted {
            page.deleted.push(get(row, 2)?);
        } else if get::<Option<i64>>(row, 3)?.is_some() {
            page.customers.push(from_pg_row(row, 3)?);
        }
    }
    Ok(page)
}
