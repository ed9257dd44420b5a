//! The event publisher on an EventBridge bus: `PutEvents` in chunks of ten entries (the
//! API's limit), each entry's outcome checked, the failed ones reported by index so that
//! the projector retries them.

use async_trait::async_trait;
use aws_sdk_eventbridge::{primitives::DateTime, types::PutEventsRequestEntry};

use super::dynamo::sdk_error;
use crate::ports::{BusEntry, EventPublisher, StoreError};

/// Entries per `PutEvents` request.
const CHUNK: usize = 10;

pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        Self { client, bus }
    }

    fn entry(&self, entry: &BusEntry) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(&entry.source)
            .detail_type(&entry.detail_type)
            .detail(&entry.detail)
            .time(DateTime::from_millis(entry.time.timestamp_millis()))
            .build()
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, entries: &[BusEntry]) -> Result<Vec<usize>, StoreError> {
        let mut failed = Vec::new();
        let mut first_error = None;
        for (chunk_index, chunk) in entries.chunks(CHUNK).enumerate() {
            let offset = chunk_index * CHUNK;
            let result = self
                .client
                .put_events()
                .set_entries(Some(chunk.iter().map(|e| self.entry(e)).collect()))
                .send()
                .await;
            match result {
                Ok(out) if out.failed_entry_count > 0 => {
                    // Results come in the order of the entries; a failed one has an error code.
                    for (i, result) in out.entries().iter().enumerate() {
                        if let Some(code) = result.error_code() {
                            tracing::warn!(code, message = ?result.error_message(), detail_type = %chunk[i].detail_type, "EventBridge refused an entry");
                            failed.push(offset + i);
                        }
                    }
                    // Fewer results than entries: the missing ones cannot count as sent.
                    failed.extend((offset + out.entries().len())..(offset + chunk.len()));
                }
                Ok(_) => {}
                Err(err) => {
                    // The SDK has retried already: this chunk failed as a whole; later chunks
                    // may still go through, and only the failed entries are retried.
                    let err = sdk_error("publishing events", err);
                    tracing::warn!(error = %err, "PutEvents failed");
                    first_error.get_or_insert(err);
                    failed.extend(offset..offset + chunk.len());
                }
            }
        }
        match first_error {
            Some(err) if failed.len() == entries.len() => Err(err),
            _ => Ok(failed),
        }
    }
}
