//! The mailbox: local mode's out-of-stock emails, appended to a text file (the notifications port,
//! as `EmailNotifications` is on AWS). One readable entry per `OutOfStock` event id.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use tracing::info;

use crate::domain::{Event, EventEnvelope, OutOfStock};
use crate::service::{out_of_stock_message, NotificationError, Notifications, NotifyFuture};

/// The header line of a mailbox entry that carries its event id.
const EVENT_ID_HEADER: &str = "Event-Id: ";

/// Separates mailbox entries.
pub const MAILBOX_SEPARATOR: &str =
    "----------------------------------------------------------------------";

/// Appends one readable email per `OutOfStock` event to a text file, fsynced before it counts as
/// sent. Idempotent by event id: an event delivered again (redelivery, replay) whose email is in the
/// file already is not sent twice. The ids sent are read from the file once, at the first delivery.
pub struct Mailbox {
    path: PathBuf,
    sent: tokio::sync::Mutex<Option<HashSet<String>>>,
}

impl Mailbox {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            sent: tokio::sync::Mutex::new(None),
        }
    }

    /// The event ids of the emails already in the file (none if there is no file yet).
    fn read_sent(path: &Path) -> std::io::Result<HashSet<String>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(text
                .lines()
                .filter_map(|line| line.strip_prefix(EVENT_ID_HEADER))
                .map(str::to_owned)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
            Err(e) => Err(e),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The text of one mailbox entry.
    pub fn entry(envelope: &EventEnvelope, sku: &str, now: chrono::DateTime<Utc>) -> String {
        format!(
            "Date: {date}\nTo: purchasing\nSubject: Out of stock for SKU {sku}\n{EVENT_ID_HEADER}{id}\n\
             Correlation-Id: {correlation}\n\n{body}\n{MAILBOX_SEPARATOR}\n",
            date = now.to_rfc3339_opts(SecondsFormat::Secs, true),
            id = envelope.id,
            correlation = envelope.correlation_id.as_deref().unwrap_or("-"),
            body = out_of_stock_message(envelope),
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

    /// Appends the event's email unless the file has it already.
    async fn append_once(&self, envelope: &EventEnvelope) -> Result<(), String> {
        let Event::OutOfStock(OutOfStock { sku, .. }) = &envelope.event else {
            return Ok(());
        };
        // Held across the append: two deliveries of one event never both write it.
        let mut sent = self.sent.lock().await;
        if sent.is_none() {
            let path = self.path.clone();
            *sent = Some(
                tokio::task::spawn_blocking(move || Self::read_sent(&path))
                    .await
                    .map_err(|e| format!("mailbox task failed: {e}"))?
                    .map_err(|e| format!("cannot read mailbox {}: {e}", self.path.display()))?,
            );
        }
        let sent = sent.get_or_insert_with(HashSet::new);
        if sent.contains(&envelope.id) {
            info!(sku = %sku, event_id = %envelope.id, "email already sent for this event");
            return Ok(());
        }
        let entry = Self::entry(envelope, sku, Utc::now());
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || Self::append(&path, &entry))
            .await
            .map_err(|e| format!("mailbox task failed: {e}"))?
            .map_err(|e| format!("cannot write mailbox {}: {e}", self.path.display()))?;
        sent.insert(envelope.id.clone());
        info!(sku = %sku, mailbox = %self.path.display(), event_id = %envelope.id,
            "email: Out of stock for SKU {sku}");
        Ok(())
    }
}

impl Notifications for Mailbox {
    fn out_of_stock<'a>(&'a self, envelope: &'a EventEnvelope) -> NotifyFuture<'a> {
        Box::pin(async move { self.append_once(envelope).await.map_err(NotificationError) })
    }
}
