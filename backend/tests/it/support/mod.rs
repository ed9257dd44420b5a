//! Helpers shared by the integration tests of this crate.

#![allow(dead_code)]

pub mod faults;
pub mod moto;
