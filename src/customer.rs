//! Customers: the row type read from the database, the JSON view sent to clients, the list
//! filter parsed from a query string, and the queries behind `GET /CUSTOMER/LIST/`.
//!
//! Redaction is enforced by type. [`Customer`] has no password field at all (the hash lives
//! only in [`crate::auth`]), is not `Serialize`, and reaches the wire only through
//! [`CustomerJson`], which destructures it without `..`: a new column does not compile until
//! someone decides whether it may be sent.

use rusqlite::{params_from_iter, Connection, Row, ToSql};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::auth::Secret;
use crate::error::ApiError;

/// The fields a customer object may carry on the wire, in the contract's order.
///
/// `password` is deliberately absent: it is never sent in any form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Clcleunik,
    CustomerNumber,
    GroupePrice,
    Login,
    LastName,
    FirstName,
    Address,
    Zipcode,
    City,
    Country,
    Phone,
    Cellphone,
    Email,
    Denomination,
    TvaNumber,
    AddedDate,
    AddHour,
    Language,
    ShowPrice,
    WebRemise,
    MegawinappLogin,
    NotificationAccepted,
}

impl Field {
    /// Every sendable field, in wire order.
    pub const ALL: [Field; 22] = [
        Field::Clcleunik,
        Field::CustomerNumber,
        Field::GroupePrice,
        Field::Login,
        Field::LastName,
        Field::FirstName,
        Field::Address,
        Field::Zipcode,
        Field::City,
        Field::Country,
        Field::Phone,
        Field::Cellphone,
        Field::Email,
        Field::Denomination,
        Field::TvaNumber,
        Field::AddedDate,
        Field::AddHour,
        Field::Language,
        Field::ShowPrice,
        Field::WebRemise,
        Field::MegawinappLogin,
        Field::NotificationAccepted,
    ];

    /// The key on the wire, which is also the column name in the database.
    pub const fn name(self) -> &'static str {
        match self {
            Field::Clcleunik => "clcleunik",
            Field::CustomerNumber => "customerNumber",
            Field::GroupePrice => "groupePrice",
            Field::Login => "login",
            Field::LastName => "lastName",
            Field::FirstName => "firstName",
            Field::Address => "address",
            Field::Zipcode => "zipcode",
            Field::City => "city",
            Field::Country => "country",
            Field::Phone => "phone",
            Field::Cellphone => "cellphone",
            Field::Email => "email",
            Field::Denomination => "denomination",
            Field::TvaNumber => "tvaNumber",
            Field::AddedDate => "addedDate",
            Field::AddHour => "addHour",
            Field::Language => "language",
            Field::ShowPrice => "showPrice",
            Field::WebRemise => "webRemise",
            Field::MegawinappLogin => "megawinapp_login",
            Field::NotificationAccepted => "notification_accepted",
        }
    }

    /// The field with this wire name, exactly as the contract spells it.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|field| field.name() == name)
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// A set of [`Field`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldSet(u32);

impl FieldSet {
    pub fn insert(&mut self, field: Field) {
        self.0 |= field.bit();
    }

    pub fn contains(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }
}

/// The set of fields withheld from every customer object (config key `redact`).
///
/// Only built through [`Redaction::from_names`], which refuses `clcleunik` and unknown names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redaction(FieldSet);

impl Redaction {
    /// Parses the `redact` list. `password` is accepted (it is always withheld anyway).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Redaction, String> {
        let mut set = Redaction::default();
        for name in names {
            let name = name.as_ref();
            match Field::from_name(name) {
                Some(Field::Clcleunik) => {
                    return Err(
                        "redact: `clcleunik` is the customer key and cannot be withheld".into(),
                    )
                }
                Some(field) => set.0.insert(field),
                None if name == "password" => {}
                None => {
                    return Err(format!(
                        "redact: unknown field `{name}`; the fields are: {}",
                        Field::ALL.map(Field::name).join(", ")
                    ))
                }
            }
        }
        Ok(set)
    }

    pub fn withholds(self, field: Field) -> bool {
        self.0.contains(field)
    }
}

/// One customer as stored, without any password material.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub clcleunik: i64,
    pub customer_number: String,
    pub groupe_price: String,
    pub login: String,
    pub last_name: String,
    pub first_name: String,
    pub address: String,
    pub zipcode: String,
    pub city: String,
    pub country: String,
    pub phone: String,
    pub cellphone: String,
    pub email: String,
    pub denomination: String,
    pub tva_number: String,
    pub added_date: String,
    pub add_hour: String,
    pub language: String,
    pub show_price: bool,
    pub web_remise: f64,
    pub megawinapp_login: String,
    /// Sent as the string `"1"` or `"0"`, as the original API did.
    pub notification_accepted: bool,
}

/// The columns of the `customer` table that make a [`Customer`], in [`Field::ALL`] order.
pub const COLUMNS: &str = "clcleunik, customerNumber, groupePrice, login, lastName, firstName, \
    address, zipcode, city, country, phone, cellphone, email, denomination, tvaNumber, addedDate, \
    addHour, language, showPrice, webRemise, megawinapp_login, notification_accepted";

impl Customer {
    /// Reads a row selected with [`COLUMNS`].
    pub fn from_row(row: &Row<'_>) -> rusqlite::Result<Customer> {
        Ok(Customer {
            clcleunik: row.get(0)?,
            customer_number: row.get(1)?,
            groupe_price: row.get(2)?,
            login: row.get(3)?,
            last_name: row.get(4)?,
            first_name: row.get(5)?,
            address: row.get(6)?,
            zipcode: row.get(7)?,
            city: row.get(8)?,
            country: row.get(9)?,
            phone: row.get(10)?,
            cellphone: row.get(11)?,
            email: row.get(12)?,
            denomination: row.get(13)?,
            tva_number: row.get(14)?,
            added_date: row.get(15)?,
            add_hour: row.get(16)?,
            language: row.get(17)?,
            show_price: row.get(18)?,
            web_remise: row.get(19)?,
            megawinapp_login: row.get(20)?,
            notification_accepted: row.get(21)?,
        })
    }

    /// Copies the value of `field` from `other` (used to apply a partial update).
    pub fn copy_field(&mut self, other: &Customer, field: Field) {
        match field {
            Field::Clcleunik => self.clcleunik = other.clcleunik,
            Field::CustomerNumber => self.customer_number.clone_from(&other.customer_number),
            Field::GroupePrice => self.groupe_price.clone_from(&other.groupe_price),
            Field::Login => self.login.clone_from(&other.login),
            Field::LastName => self.last_name.clone_from(&other.last_name),
            Field::FirstName => self.first_name.clone_from(&other.first_name),
            Field::Address => self.address.clone_from(&other.address),
            Field::Zipcode => self.zipcode.clone_from(&other.zipcode),
            Field::City => self.city.clone_from(&other.city),
            Field::Country => self.country.clone_from(&other.country),
            Field::Phone => self.phone.clone_from(&other.phone),
            Field::Cellphone => self.cellphone.clone_from(&other.cellphone),
            Field::Email => self.email.clone_from(&other.email),
            Field::Denomination => self.denomination.clone_from(&other.denomination),
            Field::TvaNumber => self.tva_number.clone_from(&other.tva_number),
            Field::AddedDate => self.added_date.clone_from(&other.added_date),
            Field::AddHour => self.add_hour.clone_from(&other.add_hour),
            Field::Language => self.language.clone_from(&other.language),
            Field::ShowPrice => self.show_price = other.show_price,
            Field::WebRemise => self.web_remise = other.web_remise,
            Field::MegawinappLogin => self.megawinapp_login.clone_from(&other.megawinapp_login),
            Field::NotificationAccepted => self.notification_accepted = other.notification_accepted,
        }
    }

    /// The values to bind for [`COLUMNS`], in order.
    pub fn to_params(&self) -> [&dyn ToSql; 22] {
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
        } = self;
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
}

/// A customer as it goes on the wire, with the configured fields withheld.
pub struct CustomerJson<'a> {
    pub customer: &'a Customer,
    pub redaction: Redaction,
}

/// `webRemise` is a number that may be fractional; whole values are written without `.0`,
/// as the original API did (`"webRemise": 10`).
struct Percent(f64);

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.0;
        if value.fract() == 0.0 && value.abs() < 9.0e15 {
            serializer.serialize_i64(value as i64)
        } else {
            serializer.serialize_f64(value)
        }
    }
}

impl Serialize for CustomerJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // No `..`: every column must be classified here before it can compile.
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
        } = self.customer;
        let redaction = self.redaction;
        let mut map = serializer.serialize_map(None)?;
        // `clcleunik` can never be withheld (see `Redaction::from_names`).
        map.serialize_entry(Field::Clcleunik.name(), clcleunik)?;
        let strings: [(Field, &String); 18] = [
            (Field::CustomerNumber, customer_number),
            (Field::GroupePrice, groupe_price),
            (Field::Login, login),
            (Field::LastName, last_name),
            (Field::FirstName, first_name),
            (Field::Address, address),
            (Field::Zipcode, zipcode),
            (Field::City, city),
            (Field::Country, country),
            (Field::Phone, phone),
            (Field::Cellphone, cellphone),
            (Field::Email, email),
            (Field::Denomination, denomination),
            (Field::TvaNumber, tva_number),
            (Field::AddedDate, added_date),
            (Field::AddHour, add_hour),
            (Field::Language, language),
            (Field::MegawinappLogin, megawinapp_login),
        ];
        for (field, value) in strings {
            // Keep the contract's key order: the two non-strings sit before megawinapp_login.
            if field == Field::MegawinappLogin {
                if !redaction.withholds(Field::ShowPrice) {
                    map.serialize_entry(Field::ShowPrice.name(), show_price)?;
                }
                if !redaction.withholds(Field::WebRemise) {
                    map.serialize_entry(Field::WebRemise.name(), &Percent(*web_remise))?;
                }
            }
            if !redaction.withholds(field) {
                map.serialize_entry(field.name(), value)?;
            }
        }
        if !redaction.withholds(Field::NotificationAccepted) {
            let flag = if *notification_accepted { "1" } else { "0" };
            map.serialize_entry(Field::NotificationAccepted.name(), flag)?;
        }
        map.end()
    }
}

/// The `result` of a list response: `{"customer": [...]}`.
pub struct CustomerList<'a> {
    pub customers: &'a [Customer],
    pub redaction: Redaction,
}

impl Serialize for CustomerList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Items<'a>(&'a CustomerList<'a>);
        impl Serialize for Items<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.customers.iter().map(|customer| CustomerJson {
                    customer,
                    redaction: self.0.redaction,
                }))
            }
        }
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("customer", &Items(self))?;
        map.end()
    }
}

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

    #[test]
    fn every_field_name_round_trips_and_is_unique() {
        for field in Field::ALL {
            assert_eq!(Field::from_name(field.name()), Some(field));
        }
        assert_eq!(COLUMNS.split(", ").count(), Field::ALL.len());
        for (column, field) in COLUMNS.split(", ").zip(Field::ALL) {
            assert_eq!(column.trim(), field.name());
        }
    }

    #[test]
    fn redaction_refuses_the_key_and_unknown_names() {
        assert!(Redaction::from_names(&["clcleunik"]).is_err());
        let error = Redaction::from_names(&["phone", "nope"]).unwrap_err();
        assert!(error.contains("`nope`"), "{error}");
        let set = Redaction::from_names(&["phone", "password"]).unwrap();
        assert!(set.withholds(Field::Phone));
        assert!(!set.withholds(Field::Email));
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

    #[test]
    fn whole_percentages_have_no_decimal_point() {
        assert_eq!(serde_json::to_string(&Percent(10.0)).unwrap(), "10");
        assert_eq!(serde_json::to_string(&Percent(12.5)).unwrap(), "12.5");
    }
}
