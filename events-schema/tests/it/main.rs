//! The core's integration tests (status machine, chain, properties, schema), one module per
//! suite, in one binary so a clean build links it once.

mod support;

mod chain;
mod decide;
mod intake;
mod properties;
mod schema;
