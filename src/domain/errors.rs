//! Errors raised by the domain's rules.

/// A rule of the domain was broken by the caller's input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0} must not be empty")]
    EmptyIdentifier(&'static str),
    #[error("{field} must be at most {max} characters long")]
    IdentifierTooLong { field: &'static str, max: usize },
    #[error("{0} must not contain control characters")]
    InvalidIdentifier(&'static str),
    #[error("{0} must not begin or end with whitespace")]
    WhitespaceAtEdge(&'static str),
    /// An invisible character that changes how text prints (zero-width space, bidi control, BOM).
    #[error("{field} must not contain invisible format characters (Unicode category Cf), found {code_point}")]
    FormatCharacter {
        field: &'static str,
        /// `U+XXXX`.
        code_point: String,
    },
    #[error("{field} must not contain spaces other than the ASCII space, found {code_point}")]
    NonAsciiSpace {
        field: &'static str,
        /// `U+XXXX`.
        code_point: String,
    },
    #[error("qty must be between {min} and {max}")]
    QuantityOutOfRange { min: u64, max: u64 },
    #[error("batch {reference} is for sku {batch_sku}, not {product_sku}")]
    SkuMismatch {
        reference: String,
        batch_sku: String,
        product_sku: String,
    },
    #[error("order line for sku {line_sku} cannot be allocated in product {product_sku}")]
    LineSkuMismatch {
        line_sku: String,
        product_sku: String,
    },
    #[error("Batch {0} already exists")]
    DuplicateBatch(String),
    /// The order already has a line of this SKU with another quantity: a request under an existing
    /// key that is not the same request (the same one is answered as before).
    #[error(
        "order {orderid} already has a line of {qty} {sku}; this request asks for {requested}"
    )]
    OrderLineDiffers {
        orderid: String,
        sku: String,
        qty: u32,
        requested: u32,
    },
    /// A batch with this reference exists and is not the one asked for.
    #[error("batch {reference} already exists with {differences}")]
    BatchDiffers {
        reference: String,
        /// Each difference, `<field> <stored>, not <requested>`, joined by `; `.
        differences: String,
    },
    #[error("Unknown batch {0}")]
    UnknownBatch(String),
    /// The product was loaded without this order's line, so it cannot tell whether it is allocated.
    #[error("the line of order {0} was not loaded")]
    LineNotLoaded(String),
    /// Batch `{0}` must give up lines the product was loaded without.
    #[error("batch {0} must deallocate lines that were not loaded")]
    LinesNotLoaded(String),
}
