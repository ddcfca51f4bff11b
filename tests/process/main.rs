//! Tests of the real `hazardwatch` binary as a process: killed with SIGKILL
//! mid-stream, it loses nothing a gateway was told was received (crash,
//! and chaos: random kills with reloads, broker restarts and a full disk);
//! started with overrides that would expose it, it refuses; its health
//! probe and JSON logs work as operations tooling expects.
//!
//! Built by the root package so that Cargo builds the binary for it
//! (`CARGO_BIN_EXE_hazardwatch`); the fixtures are the end-to-end tests'.

mod chaos;
mod cluster;
mod crash;
mod federation;
mod harness;
mod operations;
mod overrides;
mod powercut;
