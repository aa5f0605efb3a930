//! Adapters: implementations of the service layer's ports (stores, notifiers).

#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "aws")]
pub mod email;
#[cfg(feature = "local")]
pub mod embedded;
#[cfg(feature = "local")]
pub mod mailbox;
pub mod records;
#[cfg(feature = "aws")]
pub mod sns;
