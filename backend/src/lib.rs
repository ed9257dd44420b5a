//! Where orders are kept and how they travel, behind small traits.
//!
//! [`ports`] declares what the domain needs from the outside world: an event store with
//! optimistic appends, idempotency records and handler ledgers, a change feed, a read model,
//! an event bus, queues, a document store ([`ledger_key`] keeps the idempotency records and
//! handler ledgers in namespaces that cannot collide). Each backend implements every port:
//! [`embedded`] on SQLite files in one data directory (the default, one process) and [`aws`] on
//! DynamoDB, DynamoDB Streams, EventBridge, SQS and S3. [`item`] owns the one stored shape
//! of an event (a DynamoDB item, also what stream records carry); [`event_pattern`] is
//! EventBridge's rule matching, for the embedded bus. [`emf`] writes CloudWatch metrics
//! in the embedded metric format, in Lambda.

pub mod audit;
pub mod aws;
pub mod embedded;
pub mod emf;
pub mod event_pattern;
pub mod item;
pub mod ledger_key;
pub mod ports;
pub mod telemetry;

pub use ledger_key::{IdempotencyKey, InvalidIdempotencyKey, LedgerKey};
pub use ports::*;
