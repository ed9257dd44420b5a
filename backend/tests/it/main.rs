//! The backend's integration tests, one module per suite, in one binary: each test binary
//! links the whole AWS SDK again, so one binary instead of five saves minutes and gigabytes of
//! a clean build.

mod support;

mod audit;
mod aws_bootstrap;
mod contract;
mod embedded;
mod event_pattern;
mod faults;
