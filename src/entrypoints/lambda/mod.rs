//! Lambda entrypoints: adapters from Lambda events (API Gateway, SQS, DynamoDB Streams) to the bus.
//!
//! Each adapter is a plain async function over the bus (or the publisher) and the Lambda event, so
//! the binaries in `src/bin/` run it under the Lambda runtime and the tests call the very same function
//! with a store on DynamoDB Local. `init` is what every binary does once at cold start.

pub mod http;
pub mod init;
pub mod metrics;
pub mod republish;
pub mod sqs;
pub mod streams;
