//! The command API's integration tests (authenticated actor, OpenAPI document, repeated
//! placements), in one binary so a clean build links the backend once.

mod support;

mod actor;
mod openapi;
mod placement;
