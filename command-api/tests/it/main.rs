//! The command API's integration tests (authenticated actor, OpenAPI document, `/metrics`,
//! repeated placements, reads of one stored event), in one binary so a clean build links the backend once.

mod support;

mod actor;
mod console;
mod hardening;
mod idempotency;
mod intake;
mod metrics;
mod openapi;
mod placement;
mod reads;
mod trace;
