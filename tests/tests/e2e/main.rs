//! The end-to-end suites, one module each, in one binary: every test starts the built
//! `orders` binary (or a moto server) and speaks HTTP to it. One binary links once, and the
//! test harness runs the modules' tests side by side.

mod audit;
mod aws;
mod aws_faults;
mod aws_requests;
mod concurrency;
mod console;
mod durability;
mod fanout;
mod hardening;
mod intake;
mod invoice;
mod lambda_edge;
mod lambda_runtime;
mod lifecycle;
mod namespaces;
mod parked;
mod published_schema;
mod reads;
mod seeds;
mod validation;
