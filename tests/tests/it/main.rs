//! End-to-end tests, all in one test binary (one link, shared fixtures in
//! `hazardwatch_tests`).

// Test helpers panic on a broken fixture; that is the failure report.
#![allow(clippy::unwrap_used)]

mod access;
mod backfill;
mod bad_input;
mod clock;
mod config_errors;
mod console;
mod durability;
mod early_warning;
mod end_to_end;
mod escalation;
mod federation;
mod gateway_status;
mod health;
mod import;
mod independent_reader;
mod journal;
mod learn;
mod lifecycle;
mod notify;
mod reload;
mod replay;
mod risk;
mod scenarios;
mod subscribers;
mod telemetry;
mod tls;
mod trusted_edge;
mod unit_state;
