//! Where orders are kept and how they travel, behind small traits.
//!
//! [`ports`] declares what the domain needs from the outside world: an event store with
//! optimistic appends, idempotency records, a change feed, a read model. Each backend
//! implements every port: [`embedded`] on SQLite files in one data directory (the default,
//! one process), and later the AWS adapters. The [`item`] module owns the one on-the-wire
//! shape of a stored event (a DynamoDB item, also what stream records carry).

pub mod aws;
pub mod embedded;
pub mod event_pattern;
pub mod item;
pub mod ports;

pub use ports::*;
