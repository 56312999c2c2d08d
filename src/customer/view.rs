//! A customer as it goes on the wire: the only way a [`Customer`] can be serialized, with the
//! configured fields withheld.

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{Customer, Field, Redaction};

/// How customers go on the wire, as configured: the fields withheld (`redact`) and whether
/// `clcleunik` is sent as a string (`clcleunik_type = "string"`, for front-ends that compare
/// it with `===` to a string they kept).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct View {
    pub redaction: Redaction,
    pub string_ids: bool,
}

/// A customer as it goes on the wire, with the configured fields withheld.
pub struct CustomerJson<'a> {
    pub customer: &'a Customer,
    pub view: View,
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
        let redaction = self.view.redaction;
        let mut map = serializer.serialize_map(None)?;
        // `clcleunik` can never be withheld (see `Redaction::from_names`).
        if self.view.string_ids {
            map.serialize_entry(Field::Clcleunik.name(), &clcleunik.to_string())?;
        } else {
            map.serialize_entry(Field::Clcleunik.name(), clcleunik)?;
        }
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
    pub view: View,
}

impl CustomerList<'_> {
    /// The `[...]` alone, for results that hold more than the customers (the changes feed).
    pub fn array(&self) -> impl Serialize + '_ {
        struct Items<'a>(&'a CustomerList<'a>);
        impl Serialize for Items<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.customers.iter().map(|customer| CustomerJson {
                    customer,
                    view: self.0.view,
                }))
            }
        }
        Items(self)
    }
}

impl Serialize for CustomerList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("customer", &self.array())?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_percentages_have_no_decimal_point() {
        assert_eq!(serde_json::to_string(&Percent(10.0)).unwrap(), "10");
        assert_eq!(serde_json::to_string(&Percent(12.5)).unwrap(), "12.5");
    }
}
