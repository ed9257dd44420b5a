//! The command API's integration tests (authenticated actor, OpenAPI document), in one binary
//! so a clean build links the backend once.

mod support;

mod actor;
mod openapi;
