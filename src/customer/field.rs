//! The customer fields: their wire names (which are also the column names), sets of them,
//! the operator's redaction, and the one set of rules every incoming value is checked by,
//! whether it comes from a file (import), the API (ADD, UPDATE) or the old API (sync).

use super::Customer;

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

/// The longest `email` or `login` (the longest valid email address).
pub const MAX_IDENTIFIER: usize = 254;
/// The longest value of any other text field.
pub const MAX_TEXT: usize = 1000;

/// Checks `value` against the rules of `field` and stores it: the contract's types, dates as
/// `YYYY-MM-DD`, times as `HH:MM:SS`, `webRemise` from 0 to 100, flags as 1/0/true/false,
/// texts of at most 254 bytes (`email`, `login`) or 1,000 (others) with no control characters.
/// The error says what is wrong, for a message that names the field.
pub fn set_field(customer: &mut Customer, field: Field, value: String) -> Result<(), String> {
    let text = |value: String| {
        let max = match field {
            Field::Email | Field::Login => MAX_IDENTIFIER,
            _ => MAX_TEXT,
        };
        if value.len() > max {
            Err(format!("longer than {max} bytes"))
        } else if value.chars().any(char::is_control) {
            Err("contains a control character (a line break, a tab...)".into())
        } else {
            Ok(value)
        }
    };
    match field {
        Field::Clcleunik => {
            customer.clcleunik = value
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|id| *id >= 1 && value.trim().bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("expected a positive whole number, found {value:?}"))?;
        }
        Field::ShowPrice => customer.show_price = parse_flag(&value)?,
        Field::NotificationAccepted => customer.notification_accepted = parse_flag(&value)?,
        Field::WebRemise => {
            let trimmed = value.trim().replace(',', ".");
            customer.web_remise = if trimmed.is_empty() {
                0.0
            } else {
                trimmed
                    .parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite() && (0.0..=100.0).contains(p))
                    .ok_or_else(|| {
                        format!("expected a percentage from 0 to 100, found {value:?}")
                    })?
            };
        }
        Field::AddedDate => {
            if !value.is_empty() && !is_date(&value) {
                return Err(format!("expected a date as YYYY-MM-DD, found {value:?}"));
            }
            customer.added_date = value;
        }
        Field::AddHour => {
            if !value.is_empty() && !is_time(&value) {
                return Err(format!("expected a time as HH:MM:SS, found {value:?}"));
            }
            customer.add_hour = value;
        }
        Field::CustomerNumber => customer.customer_number = text(value)?,
        Field::GroupePrice => customer.groupe_price = text(value)?,
        Field::Login => customer.login = text(value)?,
        Field::LastName => customer.last_name = text(value)?,
        Field::FirstName => customer.first_name = text(value)?,
        Field::Address => customer.address = text(value)?,
        Field::Zipcode => customer.zipcode = text(value)?,
        Field::City => customer.city = text(value)?,
        Field::Country => customer.country = text(value)?,
        Field::Phone => customer.phone = text(value)?,
        Field::Cellphone => customer.cellphone = text(value)?,
        Field::Email => customer.email = text(value)?,
        Field::Denomination => customer.denomination = text(value)?,
        Field::TvaNumber => customer.tva_number = text(value)?,
        Field::Language => customer.language = text(value)?,
        Field::MegawinappLogin => customer.megawinapp_login = text(value)?,
    }
    Ok(())
}

/// `true`/`false`, `1`/`0` (any case); empty is false.
fn parse_flag(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        _ => Err(format!("expected 1, 0, true or false, found {value:?}")),
    }
}

fn digits(value: &str, lengths: &[usize], separator: u8) -> Option<Vec<u32>> {
    let parts: Vec<&str> = value.split(separator as char).collect();
    if parts.len() != lengths.len() {
        return None;
    }
    parts
        .iter()
        .zip(lengths)
        .map(|(part, len)| {
            (part.len() == *len && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse().ok())
                .flatten()
        })
        .collect()
}

/// A calendar date that exists: `2024-02-29` yes, `2023-02-29`, `2024-02-30` and year 0 no.
fn is_date(value: &str) -> bool {
    let Some([year, month, day]) = digits(value, &[4, 2, 2], b'-')
        .as_deref()
        .map(|d| [d[0], d[1], d[2]])
    else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1 && (1..=days).contains(&day)
}

fn is_time(value: &str) -> bool {
    matches!(digits(value, &[2, 2, 2], b':').as_deref(),
        Some([h, m, s]) if *h < 24 && *m < 60 && *s < 60)
}

/// Whether `value` looks like an email address: one `@`, something before it, a domain with
/// a dot after it, no spaces and no invisible characters. Registration asks this much;
/// imports take what the old system held.
pub fn looks_like_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !value.chars().any(char::is_whitespace)
        // Mail headers' punctuation: `<x@evil.be>`, `a"b@x.be`, `x@[127.0.0.1]` are not
        // plain addresses, and a message to them may go somewhere else than it looks.
        && !value.contains(['<', '>', '"', '(', ')', ',', ';', ':', '[', ']', '\\'])
        && invisible_char(value).is_none()
}

/// The first character of `value` that shows nothing on screen (a zero-width space, a
/// byte-order mark, a direction mark, a soft hyphen...), if any. Two emails or logins that
/// differ only by one look the same to people and to the shop, but not to a uniqueness check.
pub fn invisible_char(value: &str) -> Option<char> {
    value.chars().find(|&c| {
        c.is_control()
            || matches!(c,
                '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
                | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}'
                | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::COLUMNS;
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
    fn only_dates_that_exist_are_dates() {
        for good in ["2024-02-29", "2000-02-29", "2023-12-31", "0001-01-01"] {
            assert!(is_date(good), "{good}");
        }
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-02-30",
            "2024-04-31",
            "0000-01-01",
            "2024-13-01",
            "2024-1-01",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }

    #[test]
    fn an_email_has_one_at_and_nothing_invisible() {
        for good in ["a@b.be", "a.b+c@shop.example", "jos\u{e9}@exemple.fr"] {
            assert!(looks_like_email(good), "{good}");
        }
        for bad in [
            "two@@example.org",
            "a@b@c.be",
            "@b.be",
            "a@b",
            "a@.b.be",
            "a@b..be",
            "a b@c.be",
            "a\u{200B}@b.be",
            "\u{FEFF}a@b.be",
            "a@b.be\u{2060}",
            "a\u{00AD}b@c.be",
            "x@evil.be>",
            "<x@evil.be>",
            "x@[127.0.0.1]",
            "a\"b@x.be",
            "<script>alert(1)</script>@x.be",
        ] {
            assert!(!looks_like_email(bad), "{bad:?}");
        }
        assert_eq!(invisible_char("jdoe\u{200D}"), Some('\u{200D}'));
        assert_eq!(invisible_char("Zo\u{e9}"), None);
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
}
