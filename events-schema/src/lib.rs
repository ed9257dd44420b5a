//! The order event vocabulary, and nothing that does I/O.
//!
//! This crate owns what an order *is* and how it changes: the validated value types
//! ([`OrderId`], [`Status`], ...), the five events and their [`Envelope`], the status
//! machine, [`decide`] (command → events) and [`fold`] (events → state), the tamper-evident
//! hash chain and the auditor's verdicts on stored events ([`audit`]), the EventBridge
//! detail published for every event (with its JSON Schema), the route table that fans
//! statuses out to queues, and the intake queue's message (with its JSON Schema). Every
//! backend and entrypoint builds on these types; none of them redefines them.

pub mod audit;
mod chain;
mod command;
mod detail;
mod event;
mod intake;
mod order;
mod routes;
mod values;

pub use chain::{
    ChainBreak, ChainHash, GENESIS_HASH, canonical, hash_of, hash_of_canonical, verify_chain,
};
pub use command::{
    Command, MAX_DETAIL_BYTES, MAX_EVENTS_PER_ORDER, PlaceOrder, Rejection, UpdateOrder,
    check_size, decide, transitions_left,
};
pub use detail::{EventDetail, EventDetailRef, detail_schema};
pub use event::{
    Envelope, EventContext, Metadata, OrderCanceled, OrderDetailsRevised, OrderEvent, OrderPlaced,
    Recorded, SCHEMA_VERSION, record,
};
pub use intake::{Channel, IntakeCommand, IntakeMessage, RequestId, intake_message_schema};
pub use order::{NotPlaced, Order, evolve, fold};
pub use routes::{DeclaredQueue, IntakeQueue, Route, RouteTable, route_table};
pub use values::{
    CustomerId, DeliveryDate, Description, INVISIBLE, InvalidValue, MAX_FRACTION_DIGITS,
    MAX_INSTANT_CHARS, OrderId, Reason, Status, UnknownStatus, parse_instant,
};
