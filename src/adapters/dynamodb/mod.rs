//! The DynamoDB store: single table, conditional TransactWriteItems on the product version.
