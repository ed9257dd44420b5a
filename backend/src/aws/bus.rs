//! The event publisher on an EventBridge bus: `PutEvents` in batches of at most ten entries
//! and 256 KiB (the API's limits, the size counted as EventBridge counts it), each entry's
//! outcome checked: entries refused for a passing reason (throttling, an internal failure)
//! are sent again on their own, the others reported by index so that the projector retries
//! them.

use std::{ops::Range, time::Duration};

use async_trait::async_trait;
use aws_sdk_eventbridge::{primitives::DateTime, types::PutEventsRequestEntry};

use super::dynamo::sdk_error;
use crate::ports::{BusEntry, EventPublisher, StoreError};

/// Entries per `PutEvents` request.
const MAX_ENTRIES: usize = 10;

/// Total entry size per `PutEvents` request, in bytes.
const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// A `Time` parameter counts as this many bytes.
const TIME_BYTES: usize = 14;

/// The size of an entry as EventBridge counts it ("Calculating Amazon EventBridge PutEvents
/// event entry size"): 14 bytes for `Time` when given, the UTF-8 bytes of `Source`,
/// `DetailType` and `Detail`, and of each of `Resources` (none are sent here). The
/// `TraceHeader` does not count ("EventBridge integration with X-Ray").
fn entry_size(entry: &BusEntry) -> usize {
    TIME_BYTES + entry.source.len() + entry.detail_type.len() + entry.detail.len()
}

/// Splits `sizes` (entry sizes, in order) into consecutive ranges of at most `MAX_ENTRIES`
/// entries whose sizes total at most `MAX_REQUEST_BYTES`. An entry larger than the limit on
/// its own goes alone (EventBridge refuses it, and it is reported as failed).
fn batches(sizes: &[usize]) -> Vec<Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut total = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && (i - start == MAX_ENTRIES || total + size > MAX_REQUEST_BYTES) {
            batches.push(start..i);
            start = i;
            total = 0;
        }
        total += size;
    }
    if start < sizes.len() {
        batches.push(start..sizes.len());
    }
    batches
}

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
            .set_trace_header(entry.trace_header.clone())
            .build()
    }
}

/// Per-entry error codes EventBridge documents as retryable (`PutEventsResultEntry`); the
/// others (`MalformedDetail`, `InvalidArgument`, access denied...) fail the same way again.
const RETRYABLE_ENTRY_CODES: [&str; 2] = ["InternalFailure", "ThrottlingException"];

/// Rounds of `PutEvents` for the entries refused with a retryable code. Retrying them here,
/// alone, publishes each entry once; reporting them instead would make the projector's
/// caller retry from the first of them, publishing again the entries after it that went
/// through.
const ENTRY_ATTEMPTS: u32 = 3;

/// The pause before the first retry of refused entries; it doubles each round.
const ENTRY_RETRY_PAUSE: Duration = Duration::from_millis(50);

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, entries: &[BusEntry]) -> Result<Vec<usize>, StoreError> {
        let mut failed = Vec::new();
        let mut first_error = None;
        // Indices into `entries` still to send.
        let mut pending: Vec<usize> = (0..entries.len()).collect();
        let mut pause = ENTRY_RETRY_PAUSE;
        for attempt in 1..=ENTRY_ATTEMPTS {
            let mut retry = Vec::new();
            let sizes: Vec<usize> = pending.iter().map(|&i| entry_size(&entries[i])).collect();
            for range in batches(&sizes) {
                let chunk = &pending[range];
                let result = self
                    .client
                    .put_events()
                    .set_entries(Some(
                        chunk.iter().map(|&i| self.entry(&entries[i])).collect(),
                    ))
                    .send()
                    .await;
                match result {
                    Ok(out) if out.failed_entry_count > 0 => {
                        // Results come in the order of the entries; a failed one has an error
                        // code.
                        for (&i, result) in chunk.iter().zip(out.entries()) {
                            let Some(code) = result.error_code() else {
                                continue;
                            };
                            tracing::warn!(code, message = ?result.error_message(), detail_type = %entries[i].detail_type, attempt, "EventBridge refused an entry");
                            if RETRYABLE_ENTRY_CODES.contains(&code) && attempt < ENTRY_ATTEMPTS {
                                retry.push(i);
                            } else {
                                failed.push(i);
                            }
                        }
                        // Fewer results than entries: the missing ones cannot count as sent.
                        failed.extend(chunk.iter().skip(out.entries().len()));
                    }
                    Ok(_) => {}
                    Err(err) => {
                        // The SDK has retried already: this batch failed as a whole; later
                        // batches may still go through, and only the failed entries are
                        // retried.
                        let err = sdk_error("publishing events", err);
                        tracing::warn!(error = %err, "PutEvents failed");
                        first_error.get_or_insert(err);
                        failed.extend(chunk);
                    }
                }
            }
            if retry.is_empty() {
                break;
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
            pending = retry;
        }
        failed.sort_unstable();
        match first_error {
            Some(err) if failed.len() == entries.len() => Err(err),
            _ => Ok(failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    #[test]
    fn ten_entries_per_request() {
        assert_eq!(batches(&[100; 25]), vec![0..10, 10..20, 20..25]);
        assert_eq!(batches(&[100; 10]), vec![0..10]);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn requests_are_split_by_their_total_size() {
        // Three entries of 100 KiB fit ten to a request, but not 256 KiB to a request.
        assert_eq!(batches(&[100 * KIB; 3]), vec![0..2, 2..3]);
        // Exactly 256 KiB fits; one byte more does not.
        assert_eq!(batches(&[128 * KIB, 128 * KIB]), vec![0..2]);
        assert_eq!(batches(&[128 * KIB, 128 * KIB + 1]), vec![0..1, 1..2]);
        // Small entries after a big one share a request while they fit.
        assert_eq!(
            batches(&[200 * KIB, 50 * KIB, 10 * KIB, 1, 1]),
            vec![0..2, 2..5]
        );
    }

    #[test]
    fn an_oversized_entry_goes_alone() {
        assert_eq!(batches(&[1, 300 * KIB, 1]), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn batches_cover_every_index_in_order() {
        let sizes: Vec<usize> = (0..57).map(|i| (i * 37 * KIB) % (260 * KIB) + 1).collect();
        let ranges = batches(&sizes);
        let mut next = 0;
        for range in &ranges {
            assert_eq!(range.start, next);
            assert!(range.len() <= MAX_ENTRIES && !range.is_empty());
            let total: usize = sizes[range.clone()].iter().sum();
            assert!(total <= MAX_REQUEST_BYTES || range.len() == 1);
            next = range.end;
        }
        assert_eq!(next, sizes.len());
    }

    #[test]
    fn entry_size_counts_as_eventbridge_does() {
        let entry = BusEntry {
            source: "orders".to_owned(),
            detail_type: "OrderPlacé".to_owned(),
            detail: r#"{"a":"é"}"#.to_owned(),
            time: chrono::Utc::now(),
            trace_header: Some(TRACE.to_owned()),
        };
        // 14 for Time, 6 + 11 + 10 UTF-8 bytes; the trace header is not counted.
        assert_eq!(entry_size(&entry), 14 + 6 + 11 + 10);
    }

    const TRACE: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

    fn publisher() -> EventBridgePublisher {
        let config = aws_sdk_eventbridge::Config::builder()
            .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
            .build();
        EventBridgePublisher::new(aws_sdk_eventbridge::Client::from_conf(config), "bus".into())
    }

    #[test]
    fn an_entry_carries_the_events_trace_header_to_eventbridge() {
        let mut entry = BusEntry {
            source: "orders".to_owned(),
            detail_type: "OrderPlaced".to_owned(),
            detail: "{}".to_owned(),
            time: chrono::Utc::now(),
            trace_header: Some(TRACE.to_owned()),
        };
        assert_eq!(publisher().entry(&entry).trace_header(), Some(TRACE));
        entry.trace_header = None;
        assert_eq!(publisher().entry(&entry).trace_header(), None);
    }
}
