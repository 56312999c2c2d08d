//! Customers: the row type read from the database, its fields and their rules
//! ([`field`]), the JSON view sent to clients ([`view`]), and the queries ([`store`]).
//!
//! Redaction is enforced by type. [`Customer`] has no password field at all (the hash lives
//! only in [`crate::auth`]), is not `Serialize`, and reaches the wire only through
//! [`CustomerJson`], which destructures it without `..`: a new column does not compile until
//! someone decides whether it may be sent.

pub mod field;
pub mod store;
pub mod view;

use rusqlite::{Row, ToSql};

pub use field::{Field, FieldSet, Redaction};
pub use store::*;
pub use view::{CustomerJson, CustomerList, View};

/// One customer as stored, without any password material.
#[derive(Debug, Clone, Default, PartialEq)]
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

    /// Words an attacker would try first against this customer's password: email, login,
    /// names.
    pub fn password_context(&self) -> Vec<String> {
        vec![
            self.email.clone(),
            self.login.clone(),
            self.first_name.clone(),
            self.last_name.clone(),
            self.customer_number.clone(),
        ]
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
