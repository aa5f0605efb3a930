//! The subscribers of the local topic: the reallocation queue's handler, the mailbox (the local
//! stand-in for the out-of-stock email subscription) and the event log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use tracing::info;

use super::worker::Consumer;
use crate::domain::{Event, EventEnvelope};
use crate::service::{out_of_stock_message, Bus, Store};

/// The reallocation queue's handler: the bus runs the event (`AllocationRequired` → reallocate).
pub struct Reallocator<S: Store> {
    pub bus: Arc<Bus<S>>,
}

impl<S: Store> Consumer for Reallocator<S> {
    async fn consume(&self, envelope: &EventEnvelope) -> Result<(), String> {
        self.bus
            .handle_delivered_event(envelope)
            .await
            .map_err(|error| error.to_string())
    }
}

/// Published for other systems: logging the delivery is all there is to do.
pub struct EventLog;

impl Consumer for EventLog {
    async fn consume(&self, _envelope: &EventEnvelope) -> Result<(), String> {
        Ok(())
    }
}

/// Separates mailbox entries.
pub const MAILBOX_SEPARATOR: &str =
    "----------------------------------------------------------------------";

/// Appends one readable email per `OutOfStock` event to a text file, fsynced before it counts as sent.
pub struct Mailbox {
    path: PathBuf,
}

impl Mailbox {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The text of one mailbox entry.
    pub fn entry(envelope: &EventEnvelope, sku: &str, now: chrono::DateTime<Utc>) -> String {
        format!(
            "Date: {date}\nTo: purchasing\nSubject: Out of stock for SKU {sku}\nEvent-Id: {id}\n\
             Correlation-Id: {correlation}\n\n{body}\n{MAILBOX_SEPARATOR}\n",
            date = now.to_rfc3339_opts(SecondsFormat::Secs, true),
            id = envelope.id,
            correlation = envelope.correlation_id.as_deref().unwrap_or("-"),
            body = out_of_stock_message(sku),
        )
    }

    fn append(path: &Path, text: &str) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()
    }
}

impl Consumer for Mailbox {
    async fn consume(&self, envelope: &EventEnvelope) -> Result<(), String> {
        let Event::OutOfStock { sku, .. } = &envelope.event else {
            return Ok(());
        };
        let entry = Self::entry(envelope, sku, Utc::now());
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || Self::append(&path, &entry))
            .await
            .map_err(|e| format!("mailbox task failed: {e}"))?
            .map_err(|e| format!("cannot write mailbox {}: {e}", self.path.display()))?;
        info!(sku = %sku, mailbox = %self.path.display(), event_id = %envelope.id,
            "email: Out of stock for SKU {sku}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_out_of_stock_email_is_appended_readably() {
        let dir = std::env::temp_dir().join(format!("mailbox-test-{}", fastrand::u64(..)));
        let mailbox = Mailbox::new(dir.join("sub").join("mailbox.txt"));
        let envelope = EventEnvelope {
            id: "SMALL-TABLE:3:0".into(),
            correlation_id: Some("req-7".into()),
            event: Event::OutOfStock {
                sku: "SMALL-TABLE".into(),
                orderid: Some("order-9".into()),
                qty: Some(2),
            },
        };
        mailbox.consume(&envelope).await.unwrap();
        mailbox.consume(&envelope).await.unwrap();
        let text = std::fs::read_to_string(mailbox.path()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            text.matches("Subject: Out of stock for SKU SMALL-TABLE\n")
                .count(),
            2
        );
        assert_eq!(text.matches(MAILBOX_SEPARATOR).count(), 2);
        assert!(text.contains(&out_of_stock_message("SMALL-TABLE")));
        assert!(text.contains("Event-Id: SMALL-TABLE:3:0\nCorrelation-Id: req-7\n"));
    }
}
