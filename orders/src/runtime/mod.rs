//! The local stand-in for Lambda's event source mappings: a poller on the change feed that
//! drives the projector, and pollers on each route's queue that drive its handler, with
//! the same payloads, batching, checkpointing and batch-item-failure handling.

pub mod queue;
pub mod stream;
