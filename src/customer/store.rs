//! The customer queries: the list filter parsed from a query string, the list itself (as
//! rows or straight to JSON), lookups for login, and the writes.

use rusqlite::{params_from_iter, Connection, ToSql};

use super::{Customer, CustomerJson, Field, Redaction, COLUMNS};
use crate::auth::Secret;
use crate::error::ApiError;

/// Longest `email` or `login` accepted as a filter (the longest valid email address).
const MAX_TEXT_FILTER: usize = 254;
/// Largest `limit`.
pub const MAX_LIMIT: u32 = 10_000;

/// The filters and paging of a list request, parsed and validated from its query string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ListFilter {
    pub id: Option<i64>,
    pub email: Option<String>,
    pub login: Option<String>,
    pub limit: Option<u32>,
    pub offset: i64,
}

impl ListFilter {
    /// Parses a raw (still percent-encoded) query string. Unknown parameters are ignored, since
    /// clients send `apikey`, cache busters and the like; known ones must be valid and single.
    pub fn parse(query: Option<&str>) -> Result<ListFilter, ApiError> {
        let mut seen: Vec<&'static str> = Vec::new();
        let mut id_client = None;
        let mut clcleunik = None;
        let mut filter = ListFilter::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let Some(name) = [
                "id_client",
                "clcleunik",
                "email",
                "login",
                "limit",
                "offset",
            ]
            .into_iter()
            .find(|known| *known == name) else {
                continue;
            };
            if seen.contains(&name) {
                return Err(invalid(name, "given more than once"));
            }
            seen.push(name);
            if value.is_empty() {
                return Err(invalid(name, "the value is empty"));
            }
            match name {
                "id_client" => id_client = Some(parse_id(name, &value)?),
                "clcleunik" => clcleunik = Some(parse_id(name, &value)?),
                "email" => filter.email = Some(parse_text(name, &value)?),
                "login" => filter.login = Some(parse_text(name, &value)?),
                "limit" => {
                    let limit = parse_whole(&value)
                        .filter(|limit| (1..=u64::from(MAX_LIMIT)).contains(limit))
                        .ok_or_else(|| {
                            invalid(
                                name,
                                &format!("expected a whole number from 1 to {MAX_LIMIT}"),
                            )
                        })?;
                    filter.limit = u32::try_from(limit).ok();
                }
                _ => {
                    filter.offset = parse_whole(&value)
                        .and_then(|offset| i64::try_from(offset).ok())
                        .ok_or_else(|| invalid(name, "expected a whole number, 0 or more"))?;
                }
            }
        }
        filter.id = match (id_client, clcleunik) {
            (Some(a), Some(b)) if a != b => {
                return Err(invalid(
                    "clcleunik",
                    "it differs from id_client; give one of them",
                ))
            }
            (a, b) => a.or(b),
        };
        Ok(filter)
    }

    /// The `WHERE` clause and its parameters for these filters (paging excluded).
    fn where_clause(&self) -> (String, Vec<&dyn ToSql>) {
        let mut conditions = Vec::new();
        let mut params: Vec<&dyn ToSql> = Vec::new();
        if let Some(id) = &self.id {
            conditions.push("clcleunik = ?");
            params.push(id);
        }
        if let Some(email) = &self.email {
            // NOCASE folds ASCII letters only, which is what the contract asks for.
            conditions.push("email = ? COLLATE NOCASE");
            params.push(email);
        }
        if let Some(login) = &self.login {
            conditions.push("login = ?");
            params.push(login);
        }
        if conditions.is_empty() {
            (String::new(), params)
        } else {
            (format!(" WHERE {}", conditions.join(" AND ")), params)
        }
    }
}

fn invalid(name: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("Invalid {name}: {why}"))
}

/// Digits only: no sign, no spaces, no decimal point.
fn parse_whole(value: &str) -> Option<u64> {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse().ok()
    } else {
        None
    }
}

fn parse_id(name: &str, value: &str) -> Result<i64, ApiError> {
    parse_whole(value)
        .and_then(|id| i64::try_from(id).ok())
        .filter(|id| *id >= 1)
        .ok_or_else(|| invalid(name, "expected a positive whole number"))
}

fn parse_text(name: &str, value: &str) -> Result<String, ApiError> {
    if value.len() > MAX_TEXT_FILTER {
        Err(invalid(
            name,
            &format!("longer than {MAX_TEXT_FILTER} bytes"),
        ))
    } else {
        Ok(value.to_owned())
    }
}

/// One page of customers and how many match the filters before paging.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub customers: Vec<Customer>,
    pub total: u64,
}

/// Runs the list query: calls `each` with every customer matching `filter`, in ascending
/// `clcleunik`, paged; returns how many match before paging.
fn for_each_customer(
    conn: &Connection,
    filter: &ListFilter,
    mut each: impl FnMut(Customer) -> rusqlite::Result<()>,
) -> rusqlite::Result<u64> {
    let (clause, params) = filter.where_clause();
    // One read transaction: the total and the rows see the same snapshot, even while an
    // import commits between the two statements.
    let snapshot = conn.unchecked_transaction()?;
    let total: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM customer{clause}"))?
        .query_row(params_from_iter(params.iter()), |row| row.get(0))?;
    // SQLite reads LIMIT -1 as "no limit".
    let limit = filter.limit.map_or(-1, i64::from);
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM customer{clause} ORDER BY clcleunik LIMIT ? OFFSET ?"
    ))?;
    let paging: [&dyn ToSql; 2] = [&limit, &filter.offset];
    let mut rows = statement.query(params_from_iter(params.iter().chain(paging.iter())))?;
    while let Some(row) = rows.next()? {
        each(Customer::from_row(row)?)?;
    }
    drop(rows);
    drop(statement);
    snapshot.commit()?;
    Ok(u64::try_from(total).unwrap_or(0))
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

/// The whole list response body for `filter`, written row by row as they are read, so a list
/// of 100,000 customers never exists as objects in memory, only as its JSON; and the total.
pub fn list_json(
    conn: &Connection,
    filter: &ListFilter,
    redaction: Redaction,
) -> rusqlite::Result<(Vec<u8>, u64)> {
    // The same bytes `JsonResponse::success("Customers list", CustomerList {..})` writes.
    let mut body =
        br#"{"success":"true","message":"Customers list","result":{"customer":["#.to_vec();
    let mut first = true;
    let total = for_each_customer(conn, filter, |customer| {
        if !first {
            body.push(b',');
        }
        first = false;
        serde_json::to_writer(
            &mut body,
            &CustomerJson {
                customer: &customer,
                redaction,
            },
        )
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    })?;
    body.extend_from_slice(b"]}}");
    Ok((body, total))
}

/// How a login names the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    /// Matched ignoring ASCII case, as the list's `email` filter.
    Email(String),
    /// Matched exactly, as the list's `login` filter.
    Login(String),
}

impl Identifier {
    /// A stable name for counting failed attempts against this identifier.
    pub fn subject(&self) -> String {
        match self {
            Identifier::Email(email) => format!("email:{}", email.to_ascii_lowercase()),
            Identifier::Login(login) => format!("login:{login}"),
        }
    }
}

/// The customer a login names, with their stored password hash (`None`: cannot log in).
/// When several customers share the email or login, the first by `clcleunik` is the one, as
/// old front-ends took `customer[0]`.
pub fn find_for_login(
    conn: &Connection,
    identifier: &Identifier,
) -> rusqlite::Result<Option<(Customer, Option<Secret>)>> {
    let (condition, value) = match identifier {
        Identifier::Email(email) => ("email = ?1 COLLATE NOCASE", email),
        Identifier::Login(login) => ("login = ?1", login),
    };
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, password_hash FROM customer WHERE {condition} \
         ORDER BY clcleunik LIMIT 1"
    ))?;
    let mut rows = statement.query([value])?;
    match rows.next()? {
        Some(row) => {
            let hash: Option<String> = row.get(Field::ALL.len())?;
            Ok(Some((Customer::from_row(row)?, hash.map(Secret::new))))
        }
        None => Ok(None),
    }
}

/// Replaces a password hash, but only if it is still `old` (a concurrent change wins).
pub fn replace_hash(conn: &Connection, id: i64, old: &str, new: &str) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE customer SET password_hash = ?3, \
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
         WHERE clcleunik = ?1 AND password_hash = ?2",
        rusqlite::params![id, old, new],
    )?;
    Ok(changed == 1)
}

/// Sets a customer's password hash; `false` when no customer has that key.
pub fn set_hash(conn: &Connection, id: i64, hash: &str) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE customer SET password_hash = ?2, \
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE clcleunik = ?1",
        rusqlite::params![id, hash],
    )?;
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::CustomerList;
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
        let redaction = Redaction::from_names(&["phone"]).unwrap();
        let (body, total) = list_json(&conn, &ListFilter::default(), redaction).unwrap();
        let page = list(&conn, &ListFilter::default()).unwrap();
        let envelope = crate::error::JsonResponse::success(
            "Customers list",
            CustomerList {
                customers: &page.customers,
                redaction,
            },
        );
        assert_eq!(total, 1);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            String::from_utf8(envelope.body).unwrap()
        );
    }
}
