//! End-to-end tests, all in one test binary (one link, shared fixtures in
//! `hazardwatch_tests`).

mod bad_input;
mod config_errors;
mod end_to_end;
mod independent_reader;
