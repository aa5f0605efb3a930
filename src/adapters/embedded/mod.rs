//! The embedded store: a durable file-backed store with the same guarantees as DynamoDB.
