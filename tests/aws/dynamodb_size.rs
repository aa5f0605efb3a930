//! Item sizes and write units by DynamoDB's sizing rules, to specify (and test) what a commit costs.
//!
//! Rules (DynamoDB developer guide, "Item sizes and formats"): an item's size is the sum over its
//! attributes of the attribute name's UTF-8 bytes plus the value's size: S = UTF-8 bytes; N = 1 byte
//! per two significant digits, rounded up, plus 1 (plus 1 for a negative number); B = raw bytes;
//! BOOL and NULL = 1; SS/NS/BS = the sum of their elements; L and M = 3 bytes plus, per element, its
//! size (and key, for M) plus 1 byte. A standard write costs 1 write unit per started KB (1,024 bytes)
//! of item, at least 1; a write in `TransactWriteItems` costs twice that. A put that replaces an item
//! is sized by the larger of the old and the new item; a delete by the deleted item. A strongly
//! consistent read costs 1 read unit per started 4 KB read (a Query: of all the items it returns),
//! at least 1.

use aws_sdk_dynamodb::types::AttributeValue;

use allocation::adapters::dynamodb::items::Item;

/// Bytes per write unit.
pub const WRITE_UNIT_BYTES: usize = 1024;

/// Bytes per read unit.
pub const READ_UNIT_BYTES: usize = 4096;

/// The size of an item in bytes.
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

/// The size of one attribute value (without its name).
pub fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number_size(number),
        AttributeValue::B(blob) => blob.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(texts) => texts.iter().map(String::len).sum(),
        AttributeValue::Ns(numbers) => numbers.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(blobs) => blobs.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(values) => 3 + values.iter().map(|v| value_size(v) + 1).sum::<usize>(),
        AttributeValue::M(entries) => {
            3 + entries
                .iter()
                .map(|(name, v)| name.len() + value_size(v) + 1)
                .sum::<usize>()
        }
        // A type this SDK does not know: count its debug form, an upper bound of any encoding.
        _ => format!("{value:?}").len(),
    }
}

/// The size of a number given in DynamoDB's string form ("42", "-0.50", "1.5E+3"): its significant
/// digits (leading and trailing zeros trimmed) / 2 rounded up, plus 1, plus 1 if negative.
pub fn number_size(number: &str) -> usize {
    let mantissa = number.split(['e', 'E']).next().unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    let negative = usize::from(mantissa.trim_start().starts_with('-'));
    significant.div_ceil(2) + 1 + negative
}

/// Read units of one strongly consistent read (a GetItem, or one Query page) that returned items of
/// these sizes: 1 per started 4 KB of their total, at least 1 (a read that finds nothing costs 1).
pub fn strong_read_units(item_sizes: impl IntoIterator<Item = usize>) -> u64 {
    item_sizes
        .into_iter()
        .sum::<usize>()
        .div_ceil(READ_UNIT_BYTES)
        .max(1) as u64
}

/// Write units of a standard (non-transactional) write of an item of this size: 1 per started KB, ≥ 1.
pub fn standard_write_units(item_bytes: usize) -> u64 {
    item_bytes.div_ceil(WRITE_UNIT_BYTES).max(1) as u64
}

/// Write units of one write inside `TransactWriteItems`: twice the standard cost.
pub fn transactional_write_units(item_bytes: usize) -> u64 {
    2 * standard_write_units(item_bytes)
}

/// Write units of a transactional put of `new`, replacing `old` if there is one (the larger counts).
pub fn transactional_put_units(new: &Item, old: Option<&Item>) -> u64 {
    transactional_write_units(item_size(new).max(old.map_or(0, item_size)))
}

/// Write units of a transactional delete of the stored item `deleted`.
pub fn transactional_delete_units(deleted: &Item) -> u64 {
    transactional_write_units(item_size(deleted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_cost_by_significant_digits() {
        assert_eq!(number_size("0"), 1);
        assert_eq!(number_size("7"), 2);
        assert_eq!(number_size("42"), 2);
        assert_eq!(number_size("123"), 3);
        assert_eq!(number_size("1000"), 2);
        assert_eq!(number_size("0.0012300"), 3);
        assert_eq!(number_size("-15"), 3);
        assert_eq!(number_size("18446744073709551615"), 11);
        assert_eq!(number_size("1.5E+3"), 2);
    }

    #[test]
    fn items_sum_names_and_values() {
        let item = Item::from([
            ("pk".to_owned(), AttributeValue::S("PRODUCT#é".into())),
            ("n".to_owned(), AttributeValue::N("12345".into())),
            ("ok".to_owned(), AttributeValue::Bool(true)),
            (
                "l".to_owned(),
                AttributeValue::L(vec![
                    AttributeValue::S("ab".into()),
                    AttributeValue::Null(true),
                ]),
            ),
        ]);
        // pk: 2 + 10 (é is 2 bytes); n: 1 + 4; ok: 2 + 1; l: 1 + 3 + (2 + 1) + (1 + 1)
        assert_eq!(item_size(&item), 12 + 5 + 3 + 9);
    }

    #[test]
    fn write_units_round_up_per_kilobyte() {
        assert_eq!(standard_write_units(0), 1);
        assert_eq!(standard_write_units(1024), 1);
        assert_eq!(standard_write_units(1025), 2);
        assert_eq!(transactional_write_units(500), 2);
        assert_eq!(transactional_write_units(2048), 4);
        let small = Item::from([("a".to_owned(), AttributeValue::S("x".repeat(10)))]);
        let large = Item::from([("a".to_owned(), AttributeValue::S("x".repeat(1100)))]);
        assert_eq!(transactional_put_units(&small, Some(&large)), 4);
        assert_eq!(transactional_put_units(&small, None), 2);
        assert_eq!(transactional_delete_units(&large), 4);
    }
}
