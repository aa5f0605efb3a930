//! Input validation of the HTTP API: every malformed request becomes a 400 with a precise message,
//! before anything reaches the bus.

use std::str::FromStr;

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::{HttpRequest, HttpResponse};
use crate::domain::{Allocate, ChangeBatchQuantity, CreateBatch, DomainError, OrderId, Quantity};

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

fn bad(message: impl Into<String>) -> HttpResponse {
    HttpResponse::message(400, message)
}

/// The fields of a JSON object body, taken one by one; unknown fields are rejected at the end.
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(request: &HttpRequest<'_>, allowed: &[&str]) -> Result<Self, HttpResponse> {
        let is_json = request
            .content_type
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(bad("Content-Type must be application/json"));
        }
        if request.body.len() > MAX_BODY_BYTES {
            return Err(bad(format!("body must be at most {MAX_BODY_BYTES} bytes")));
        }
        let value: Value = serde_json::from_slice(request.body)
            .map_err(|e| bad(format!("body is not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(bad("body must be a JSON object"));
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad(format!(
                "unknown field {unknown:?}; expected only {}",
                allowed.join(", ")
            )));
        }
        Ok(Self(map))
    }

    /// A string field, parsed into one of the domain's identifier types.
    fn identifier<T: FromStr<Err = DomainError>>(&self, name: &str) -> Result<T, HttpResponse> {
        match self.0.get(name) {
            None | Some(Value::Null) => Err(bad(format!("missing field {name}"))),
            Some(Value::String(s)) => s.parse().map_err(rejected),
            Some(_) => Err(bad(format!("{name} must be a string"))),
        }
    }

    /// `qty`: a whole number, parsed by `parse` (`Quantity::new`, or `Quantity::positive` for a line).
    fn quantity(
        &self,
        parse: fn(u64) -> Result<Quantity, DomainError>,
    ) -> Result<Quantity, HttpResponse> {
        let value = self
            .0
            .get("qty")
            .filter(|v| !v.is_null())
            .ok_or_else(|| bad("missing field qty"))?;
        let Value::Number(number) = value else {
            return Err(bad("qty must be a number"));
        };
        // A JSON number is its value: `5`, `5.0` and `0.5e1` are the same whole number (as JSON
        // Schema's `integer` has it); `5.5` is not one.
        let whole = number.as_u64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
                .map(|f| f as u64)
        });
        let out_of_range = || parse(u64::MAX).map_or_else(rejected, |_| bad("qty is out of range"));
        match whole {
            Some(n) => parse(n).map_err(rejected),
            // A negative or huge whole number is out of range: the domain's message for any
            // out-of-range value.
            None if number.as_i64().is_some() => Err(out_of_range()),
            None if number.as_f64().is_some_and(|f| f.fract() == 0.0) => Err(out_of_range()),
            None => Err(bad("qty must be an integer")),
        }
    }

    /// An optional `YYYY-MM-DD` date (absent or null: none).
    fn date(&self, name: &'static str) -> Result<Option<NaiveDate>, HttpResponse> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .filter(|_| s.len() == 10)
                .map(Some)
                .ok_or_else(|| bad(format!("{name} must be a date as YYYY-MM-DD, or null"))),
            Some(_) => Err(bad(format!("{name} must be a date as YYYY-MM-DD, or null"))),
        }
    }
}

/// A value the domain refused: its error is the 400's message.
fn rejected(error: DomainError) -> HttpResponse {
    bad(error.to_string())
}

/// `POST /add_batch {"ref", "sku", "qty" >= 0, "eta"?}`.
pub fn create_batch(request: &HttpRequest<'_>) -> Result<CreateBatch, HttpResponse> {
    let fields = Fields::parse(request, &["ref", "sku", "qty", "eta"])?;
    Ok(CreateBatch {
        reference: fields.identifier("ref")?,
        sku: fields.identifier("sku")?,
        qty: fields.quantity(Quantity::new)?,
        eta: fields.date("eta")?,
    })
}

/// `POST /allocate {"orderid", "sku", "qty" > 0}`.
pub fn allocate(request: &HttpRequest<'_>) -> Result<Allocate, HttpResponse> {
    let fields = Fields::parse(request, &["orderid", "sku", "qty"])?;
    Ok(Allocate {
        orderid: fields.identifier("orderid")?,
        sku: fields.identifier("sku")?,
        qty: fields.quantity(Quantity::positive)?,
    })
}

/// `POST /change_batch_quantity {"ref", "qty" >= 0}`.
pub fn change_batch_quantity(
    request: &HttpRequest<'_>,
) -> Result<ChangeBatchQuantity, HttpResponse> {
    let fields = Fields::parse(request, &["ref", "qty"])?;
    Ok(ChangeBatchQuantity {
        reference: fields.identifier("ref")?,
        qty: fields.quantity(Quantity::new)?,
    })
}

/// The `{orderid}` path segment: percent-decoded (UTF-8), then parsed like a body's `orderid`.
pub fn path_order_id(raw: &str) -> Result<OrderId, HttpResponse> {
    let decoded =
        percent_decode(raw).ok_or_else(|| bad("orderid is not valid percent-encoded UTF-8"))?;
    OrderId::parse(decoded).map_err(rejected)
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Exactly two hex digits (`from_str_radix` alone would also take a sign, as in "%+1").
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MAX_IDENTIFIER_LEN;

    #[test]
    fn percent_decoding_takes_exactly_two_hex_digits() {
        assert_eq!(percent_decode("a%2Fb%C3%A9").as_deref(), Some("a/bé"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        for bad in ["%", "%4", "%ZZ", "%+1", "%-1", "% 1", "%C3", "%é1", "%FF"] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_path_order_id_is_decoded_then_parsed_like_a_body_order_id() {
        assert_eq!(
            path_order_id("order%201").map(|id| id.to_string()),
            Ok("order 1".to_owned())
        );
        for bad in ["%+41", "%20%20", "%00", "%0A", "", "%ZZ"] {
            let answer = path_order_id(bad).expect_err(bad);
            assert_eq!(answer.status, 400, "{bad:?}");
        }
        let long = "a".repeat(MAX_IDENTIFIER_LEN + 1);
        assert_eq!(path_order_id(&long).map_err(|r| r.status), Err(400));
        let longest = "a".repeat(MAX_IDENTIFIER_LEN);
        assert_eq!(
            path_order_id(&longest).map(|id| id.to_string()),
            Ok(longest.clone())
        );
    }
}
