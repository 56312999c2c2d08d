//! What the customer queries take and give, whichever database answers them: the list
//! filter parsed from a query string, a page, the totals memo, how a login names an account,
//! why a write is refused, a page of the changes feed. The queries themselves live with
//! each backend (`store/sqlite/customers.rs`, `store/postgres/customers.rs`).

use super::{Customer, Field};
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
    /// Keyset paging: only customers whose `clcleunik` is greater (`?after=ID`, the last id
    /// of the previous page). Unlike `offset`, the database skips nothing to get there.
    pub after: Option<i64>,
}

impl ListFilter {
    /// Parses a raw (still percent-encoded) query string. Unknown parameters are ignored, since
    /// clients send `apikey`, cache busters and the like; known ones must be valid and single.
    pub fn parse(query: Option<&str>) -> Result<ListFilter, ApiError> {
        let mut seen: Vec<&'static str> = Vec::new();
        let mut ids: Vec<(&'static str, i64)> = Vec::new();
        let mut filter = ListFilter::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let Some(name) = [
                "id_client",
                "clcleunik",
                "id",
                "email",
                "login",
                "limit",
                "offset",
                "after",
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
                "id_client" | "clcleunik" | "id" => ids.push((name, parse_id(name, &value)?)),
                // No email has a space; a `+` sent unencoded arrives as one.
                "email" => filter.email = Some(parse_text(name, &value)?.replace(' ', "+")),
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
                "after" => {
                    filter.after = Some(
                        parse_whole(&value)
                            .and_then(|after| i64::try_from(after).ok())
                            .ok_or_else(|| invalid(name, "expected a whole number, 0 or more"))?,
                    );
                }
                _ => {
                    filter.offset = parse_whole(&value)
                        .and_then(|offset| i64::try_from(offset).ok())
                        .ok_or_else(|| invalid(name, "expected a whole number, 0 or more"))?;
                }
            }
        }
        if let Some((name, _)) = ids.iter().skip(1).find(|(_, id)| *id != ids[0].1) {
            return Err(invalid(
                name,
                &format!("it differs from {}; give one of them", ids[0].0),
            ));
        }
        filter.id = ids.first().map(|(_, id)| *id);
        Ok(filter)
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

/// Totals (`X-Total-Count`) already counted, by filter (paging left out) and the change
/// number they were counted at: walking a large list page by page counts it once, not once a
/// page (a count of a million rows takes tens of milliseconds). The change number is read in
/// the same snapshot as the rows, so a remembered total always agrees with them; it moves
/// with every insert and delete (and with other changes, which only costs a recount).
#[derive(Debug, Default)]
pub struct Totals(std::sync::Mutex<std::collections::HashMap<ListFilter, (i64, u64)>>);

/// Filters whose totals are remembered at most: beyond, the memo starts afresh.
const TOTALS_KEPT: usize = 1024;

impl Totals {
    /// The total of `filter` counted at change number `seq`, if remembered.
    pub fn remembered(&self, filter: &ListFilter, seq: i64) -> Option<u64> {
        let memo = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match memo.get(&Totals::key(filter)) {
            Some((at, total)) if *at == seq => Some(*total),
            _ => None,
        }
    }

    /// Remembers the total of `filter` counted at change number `seq`.
    pub fn remember(&self, filter: &ListFilter, seq: i64, total: u64) {
        let mut memo = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if memo.len() >= TOTALS_KEPT {
            memo.clear();
        }
        memo.insert(Totals::key(filter), (seq, total));
    }

    /// The filter with its paging left out: pages of one list share a total.
    fn key(filter: &ListFilter) -> ListFilter {
        ListFilter {
            limit: None,
            offset: 0,
            after: None,
            ..filter.clone()
        }
    }
}

/// How a login (or a password change) names the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    /// Matched ignoring ASCII case, as the list's `email` filter.
    Email(String),
    /// Matched exactly, as the list's `login` filter.
    Login(String),
    /// The customer's `clcleunik`.
    Id(i64),
}

impl Identifier {
    /// A stable name for counting failed attempts against this identifier.
    pub fn subject(&self) -> String {
        match self {
            Identifier::Email(email) => format!("email:{}", email.to_ascii_lowercase()),
            Identifier::Login(login) => format!("login:{login}"),
            Identifier::Id(id) => format!("customer:{id}"),
        }
    }
}

/// Why a write was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("No customer with id_client {0}")]
    NotFound(i64),
    /// Another customer has this email, login or id.
    #[error("{} is already used by another customer", .0.name())]
    Taken(Field),
    #[error(transparent)]
    Db(#[from] crate::store::Error),
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::NotFound(_) => ApiError::NotFound(error.to_string()),
            WriteError::Taken(field) => ApiError::Conflict(format!(
                "This {} is already used by another customer",
                field.name()
            )),
            WriteError::Db(error) => error.into(),
        }
    }
}

/// One page of the changes feed: customers added or changed after the token (current state,
/// in change order), ids deleted after it, and the token for the next poll.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangesPage {
    pub customers: Vec<Customer>,
    pub deleted: Vec<i64>,
    pub next: i64,
}

impl From<rusqlite::Error> for WriteError {
    fn from(error: rusqlite::Error) -> Self {
        WriteError::Db(error.into())
    }
}

impl From<::postgres::Error> for WriteError {
    fn from(error: ::postgres::Error) -> Self {
        WriteError::Db(error.into())
    }
}
