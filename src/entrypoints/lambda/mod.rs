//! Lambda entrypoints: adapters from Lambda events (API Gateway, SQS, DynamoDB Streams) to the bus.
