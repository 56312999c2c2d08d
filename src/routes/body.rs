//! Request bodies: a JSON object or a form (`application/x-www-form-urlencoded`), at most
//! 16 KiB, read into `(name, value)` pairs. Every POST endpoint reads its body this way, so
//! the 413, 415 and 400 answers are the same everywhere.

use rocket::data::{ByteUnit, FromData, Outcome};
use rocket::{Data, Request};

use crate::error::ApiError;
use crate::transfer::read::json_scalar;

/// Larger bodies are refused with a 413 before they are read further.
pub const BODY_LIMIT: ByteUnit = ByteUnit::Kibibyte(16);

/// A body's fields in the order sent. A value is `None` when a JSON body has `null`, an
/// object or an array there (no field accepts one); other JSON scalars are read as text
/// (`12`, `true`), as a form would send them. The body as sent is kept too, for forwarding a write
/// to the old API in mirror mode.
#[derive(Debug)]
pub struct Fields(pub Vec<(String, Option<String>)>, pub RawBody);

/// A request body as the client sent it.
#[derive(Debug, Clone, Default)]
pub struct RawBody {
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

impl RawBody {
    /// The body to forward to the old API (mirror mode): as sent, but without clientele's
    /// own `apikey` (never the master's business), and naming the customer as `id_client`
    /// (a string, as the old API's clients send it) when `id` came only in our query string.
    /// JSON stays JSON with its fields in order; a form stays a form. Unchanged when nothing
    /// needs changing.
    pub fn for_master(&self, id: Option<i64>) -> RawBody {
        let is_form = self
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("x-www-form-urlencoded"));
        if is_form {
            let pairs: Vec<(String, String)> =
                form_urlencoded::parse(&self.bytes).into_owned().collect();
            let has_id = pairs.iter().any(|(name, _)| name == "id_client");
            let has_key = pairs.iter().any(|(name, _)| name == "apikey");
            if !has_key && (has_id || id.is_none()) {
                return self.clone();
            }
            let mut form = form_urlencoded::Serializer::new(String::new());
            if let (Some(id), false) = (id, has_id) {
                form.append_pair("id_client", &id.to_string());
            }
            for (name, value) in pairs.iter().filter(|(name, _)| name != "apikey") {
                form.append_pair(name, value);
            }
            return RawBody {
                content_type: self.content_type.clone(),
                bytes: form.finish().into_bytes(),
            };
        }
        let fields = if self.bytes.is_empty() {
            Some(Vec::new())
        } else {
            serde_json::from_slice::<Ordered>(&self.bytes)
                .ok()
                .map(|o| o.0)
        };
        let Some(fields) = fields else {
            // Not read as a JSON object (it was, to be accepted): sent as it came.
            return self.clone();
        };
        let has_id = fields.iter().any(|(name, _)| name == "id_client");
        let has_key = fields.iter().any(|(name, _)| name == "apikey");
        if !has_key && (has_id || id.is_none()) {
            return self.clone();
        }
        let mut parts = Vec::with_capacity(fields.len() + 1);
        if let (Some(id), false) = (id, has_id) {
            parts.push(format!(r#""id_client":"{id}""#));
        }
        for (name, value) in fields.iter().filter(|(name, _)| name != "apikey") {
            let name = serde_json::to_string(name).unwrap_or_default();
            parts.push(format!("{name}:{}", value.get()));
        }
        RawBody {
            content_type: Some(
                self.content_type
                    .clone()
                    .unwrap_or_else(|| "application/json".to_owned()),
            ),
            bytes: format!("{{{}}}", parts.join(",")).into_bytes(),
        }
    }
}

/// A JSON object's members in the order sent, their values untouched.
struct Ordered(Vec<(String, Box<serde_json::value::RawValue>)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Ordered(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

#[rocket::async_trait]
impl<'r> FromData<'r> for Fields {
    type Error = ApiError;

    async fn from_data(request: &'r Request<'_>, mut data: Data<'r>) -> Outcome<'r, Self> {
        let fail = |error: ApiError| Outcome::Error((error.status(), error));
        let content_type = request.content_type();
        let is_json = content_type.is_some_and(|ct| ct.is_json());
        let is_form = content_type.is_some_and(|ct| ct.is_form());
        if content_type.is_none() && data.peek(1).await.is_empty() {
            // No body at all (a POST /CUSTOMER/DELETE/?id_client=12): no fields.
            return Outcome::Success(Fields(Vec::new(), RawBody::default()));
        }
        if !is_json && !is_form {
            return fail(ApiError::UnsupportedBody);
        }
        let body = match data.open(BODY_LIMIT).into_bytes().await {
            Ok(body) if body.is_complete() => body.into_inner(),
            Ok(_) => return fail(ApiError::BodyTooLarge),
            Err(_) => return fail(ApiError::bad_request("Unreadable body")),
        };
        let raw = |bytes: &[u8]| RawBody {
            content_type: content_type.map(|ct| ct.to_string()),
            bytes: bytes.to_vec(),
        };
        if is_form {
            let fields = form_urlencoded::parse(&body)
                .into_owned()
                .map(|(name, value)| (name, Some(value)))
                .collect();
            return Outcome::Success(Fields(fields, raw(&body)));
        }
        // Every pair as sent, a repeated name included (a map would keep the last silently
        // and `{"id_client":3,"id_client":4}` would write customer 4): `check_unique` refuses.
        match serde_json::from_slice::<Pairs>(&body) {
            Ok(Pairs(object)) => Outcome::Success(Fields(
                object
                    .into_iter()
                    .map(|(name, value)| {
                        let value = (!value.is_null()).then(|| json_scalar(value)).flatten();
                        (name, value)
                    })
                    .collect(),
                raw(&body),
            )),
            Err(_) => fail(ApiError::bad_request(
                "Unreadable body: expected a JSON object of fields",
            )),
        }
    }
}

/// A JSON object's members in order, a repeated name included.
struct Pairs(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Pairs, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, serde_json::Value>()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl Fields {
    /// Refuses a name given twice, in a form or a JSON object alike.
    pub fn check_unique(&self) -> Result<(), ApiError> {
        self.check_repeats(|_| true)
    }

    /// Refuses any of `names` given twice (other names, ignored by the route, may repeat).
    pub fn check_unique_of(&self, names: &[&str]) -> Result<(), ApiError> {
        self.check_repeats(|name| names.contains(&name))
    }

    fn check_repeats(&self, counts: impl Fn(&str) -> bool) -> Result<(), ApiError> {
        for (index, (name, _)) in self.0.iter().enumerate() {
            if counts(name) && self.0[..index].iter().any(|(other, _)| other == name) {
                return Err(ApiError::bad_request(format!(
                    "Invalid {name}: given more than once"
                )));
            }
        }
        Ok(())
    }
}

/// A customer id as clients send it: a JSON number or a string of digits.
pub fn parse_id(name: &str, value: Option<&str>) -> Result<i64, ApiError> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|id| *id >= 1)
        .ok_or_else(|| {
            ApiError::bad_request(format!("Invalid {name}: expected a positive whole number"))
        })
}

/// The customer id in a write's query string: `id_client`, or its aliases `clcleunik` and
/// `id` (the list's names). Two that differ, or one given twice, is a 400.
pub fn query_id(query: Option<&str>) -> Result<Option<i64>, ApiError> {
    let mut found: Option<(String, i64)> = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !["id_client", "clcleunik", "id"].contains(&name.as_ref()) {
            continue;
        }
        let id = parse_id(&name, Some(&value))?;
        match &found {
            Some((first, other)) if *other != id || *first == name => {
                return Err(ApiError::bad_request(format!(
                    "Invalid {name}: given more than once, or different from {first}"
                )))
            }
            _ => found = Some((name.into_owned(), id)),
        }
    }
    Ok(found.map(|(_, id)| id))
}

#[cfg(test)]
mod tests {
    use super::RawBody;

    fn body(content_type: Option<&str>, bytes: &str) -> RawBody {
        RawBody {
            content_type: content_type.map(str::to_owned),
            bytes: bytes.as_bytes().to_vec(),
        }
    }

    fn text(raw: &RawBody) -> &str {
        std::str::from_utf8(&raw.bytes).unwrap()
    }

    #[test]
    fn the_master_gets_the_id_and_never_our_key_in_the_bodys_own_format() {
        let json = body(
            Some("application/json"),
            r#"{"city":"Mons","apikey":"OURS","phone":"+32 2"}"#,
        );
        assert_eq!(
            text(&json.for_master(Some(12))),
            r#"{"id_client":"12","city":"Mons","phone":"+32 2"}"#
        );
        let form = body(
            Some("application/x-www-form-urlencoded"),
            "apikey=OURS&city=Li%C3%A8ge",
        );
        let sent = form.for_master(Some(5));
        assert_eq!(text(&sent), "id_client=5&city=Li%C3%A8ge");
        assert_eq!(sent.content_type, form.content_type);
    }

    #[test]
    fn a_body_with_nothing_to_change_goes_as_sent() {
        let json = body(
            Some("application/json"),
            r#"{ "id_client": 3, "b":1,"a":2 }"#,
        );
        assert_eq!(json.for_master(Some(3)).bytes, json.bytes);
        let add = body(Some("application/json"), r#"{"email":"a@b.be"}"#);
        assert_eq!(add.for_master(None).bytes, add.bytes);
        let empty = RawBody::default().for_master(Some(7));
        assert_eq!(text(&empty), r#"{"id_client":"7"}"#);
        assert_eq!(empty.content_type.as_deref(), Some("application/json"));
        assert!(RawBody::default().for_master(None).bytes.is_empty());
    }
}
