//! The domain's parsed values: `Sku`, `OrderId`, `BatchRef` and `Quantity`. Each owns its rule, so a
//! value of the type is valid by construction; the edges (HTTP, queues) parse into them, and their
//! errors are the messages clients see (`docs/architecture.md`, "Where each rule lives").

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use super::DomainError;

/// Longest identifier (order id, SKU, batch reference) the domain accepts, in characters (Unicode
/// scalar values, as JSON Schema's `maxLength` counts them): at most 512 bytes of UTF-8.
pub const MAX_IDENTIFIER_LEN: usize = 128;

/// Largest quantity of a batch or a line, so sums can never overflow (a product's allocated total is
/// a `u64`; a batch's purchased quantity a `u32`).
pub const MAX_QUANTITY: u64 = 1_000_000_000;

/// The identifier rule: identifiers that print alike are the same identifier. Not empty or blank, at
/// most [`MAX_IDENTIFIER_LEN`] characters, no control characters, no whitespace at either end, no Unicode
/// format characters (category Cf: zero-width characters, bidi controls, the BOM), no space but the
/// ASCII one (no non-breaking or other Unicode spaces). `field` names the value in the error (`sku`,
/// `orderid`, `ref`). `docs/openapi.yaml` states the same rule as a pattern.
fn check_identifier(field: &'static str, value: &str) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::EmptyIdentifier(field));
    }
    if value.len() > MAX_IDENTIFIER_LEN && value.chars().count() > MAX_IDENTIFIER_LEN {
        return Err(DomainError::IdentifierTooLong {
            field,
            max: MAX_IDENTIFIER_LEN,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(DomainError::InvalidIdentifier(field));
    }
    if value.trim() != value {
        return Err(DomainError::WhitespaceAtEdge(field));
    }
    let code_point = |c: char| format!("U+{:04X}", u32::from(c));
    if let Some(c) = value
        .chars()
        .find(|c| c.general_category() == GeneralCategory::Format)
    {
        return Err(DomainError::FormatCharacter {
            field,
            code_point: code_point(c),
        });
    }
    if let Some(c) = value.chars().find(|c| c.is_whitespace() && *c != ' ') {
        return Err(DomainError::NonAsciiSpace {
            field,
            code_point: code_point(c),
        });
    }
    Ok(())
}

/// An identifier type: a shared string that passed the identifier rule, serialized as a plain string
/// (and parsed on deserialization, so a message with a bad identifier does not parse).
macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The name of the field this value is, in error messages.
            pub const FIELD: &'static str = $field;

            pub fn parse(value: impl AsRef<str>) -> Result<Self, DomainError> {
                let value = value.as_ref();
                check_identifier(Self::FIELD, value)?;
                Ok(Self(value.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The shared string, for records and events that hold it without a copy.
            pub fn shared(&self) -> &Arc<str> {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = DomainError;
            fn from_str(value: &str) -> Result<Self, DomainError> {
                Self::parse(value)
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl From<$name> for Arc<str> {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// A stock-keeping unit: what a product is.
    Sku,
    "sku"
);
identifier!(
    /// A customer order's id.
    OrderId,
    "orderid"
);
identifier!(
    /// A batch's reference.
    BatchRef,
    "ref"
);

/// A quantity of units: `0..=MAX_QUANTITY` (a batch may be empty; a line's quantity is
/// [`Quantity::positive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    /// A batch's quantity: `0..=MAX_QUANTITY`.
    pub fn new(value: u64) -> Result<Self, DomainError> {
        Self::in_range(value, 0)
    }

    /// A line's quantity: `1..=MAX_QUANTITY`.
    pub fn positive(value: u64) -> Result<Self, DomainError> {
        Self::in_range(value, 1)
    }

    fn in_range(value: u64, min: u64) -> Result<Self, DomainError> {
        let max = MAX_QUANTITY;
        (min..=max)
            .contains(&value)
            .then(|| u32::try_from(value).ok().map(Self))
            .flatten()
            .ok_or(DomainError::QuantityOutOfRange { min, max })
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(u64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identifier_is_non_blank_bounded_and_free_of_control_characters() {
        assert_eq!(Sku::parse("RED-CHAIR").unwrap(), "RED-CHAIR");
        assert_eq!(Sku::parse(" "), Err(DomainError::EmptyIdentifier("sku")));
        assert_eq!(
            OrderId::parse("a\u{7}b"),
            Err(DomainError::InvalidIdentifier("orderid"))
        );
        let long = "x".repeat(MAX_IDENTIFIER_LEN + 1);
        assert_eq!(
            BatchRef::parse(&long).map_err(|e| e.to_string()),
            Err(format!(
                "ref must be at most {MAX_IDENTIFIER_LEN} characters long"
            ))
        );
        assert!(BatchRef::parse(&long[1..]).is_ok());
        // Characters, not bytes: 128 of them in 256 bytes.
        assert!(BatchRef::parse("é".repeat(MAX_IDENTIFIER_LEN)).is_ok());
        assert!(BatchRef::parse("é".repeat(MAX_IDENTIFIER_LEN + 1)).is_err());
    }

    #[test]
    fn identifiers_that_print_alike_are_refused() {
        let refused = |text: &str| Sku::parse(text).unwrap_err().to_string();
        assert_eq!(
            refused("LAMP "),
            "sku must not begin or end with whitespace"
        );
        assert_eq!(
            refused(" LAMP"),
            "sku must not begin or end with whitespace"
        );
        assert_eq!(
            refused("LA\u{200b}MP"),
            "sku must not contain invisible format characters (Unicode category Cf), found U+200B"
        );
        for (text, code_point) in [("LAMP\u{202e}", "U+202E"), ("\u{feff}LAMP", "U+FEFF")] {
            assert!(refused(text).ends_with(code_point), "{text:?}");
        }
        assert_eq!(
            refused("SMALL\u{a0}LAMP"),
            "sku must not contain spaces other than the ASCII space, found U+00A0"
        );
        assert!(refused("SMALL\u{3000}LAMP").ends_with("U+3000"));
        // Letters of any script, and ASCII spaces inside, are identifiers.
        for text in ["SMALL LAMP", "LAMPE-ÉTÉ", "ЛАМПА", "灯"] {
            assert_eq!(Sku::parse(text).unwrap(), text);
        }
    }

    #[test]
    fn identifiers_are_plain_json_strings_and_parsed_when_read() {
        let sku = Sku::parse("LAMP").unwrap();
        assert_eq!(serde_json::to_string(&sku).unwrap(), r#""LAMP""#);
        assert_eq!(serde_json::from_str::<Sku>(r#""LAMP""#).unwrap(), sku);
        let error = serde_json::from_str::<Sku>(r#""""#).unwrap_err();
        assert!(
            error.to_string().contains("sku must not be empty"),
            "{error}"
        );
    }

    #[test]
    fn a_quantity_is_bounded_and_a_line_quantity_positive() {
        assert_eq!(Quantity::new(0).map(Quantity::get), Ok(0));
        assert_eq!(
            Quantity::positive(0).map_err(|e| e.to_string()),
            Err(format!("qty must be between 1 and {MAX_QUANTITY}"))
        );
        assert_eq!(
            Quantity::new(MAX_QUANTITY + 1).map_err(|e| e.to_string()),
            Err(format!("qty must be between 0 and {MAX_QUANTITY}"))
        );
        assert!(serde_json::from_str::<Quantity>("1000000001").is_err());
    }
}
