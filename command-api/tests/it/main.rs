//! The command API's integration tests (authenticated actor, OpenAPI document, `/metrics`,
//! repeated placements), in one binary so a clean build links the backend once.

mod support;

mod actor;
mod hardening;
mod metrics;
mod openapi;
mod placement;
mod trace;
