//! Fixtures shared by the rules' integration tests: a one-unit park around
//! the points a test declares, and a run of the engine to the end of input.

use hazardwatch_proto::{PointIdx, Quality, Reading, RuleEvent};
use hazardwatch_rules::{EngineConfig, SiteModel, Source, evaluate};
use proptest::prelude::*;

/// A park with one enterprise `E`, hazard source `HS` and unit `T1`, whose
/// points (and any further tables) are `points_toml`.
#[allow(dead_code)]
pub(crate) fn model(points_toml: &str) -> SiteModel {
    parse(&model_text(points_toml))
}

/// The text [`model`] parses.
#[allow(dead_code)]
pub(crate) fn model_text(points_toml: &str) -> String {
    format!(
        r#"
park = {{ id = "P" }}
[[enterprise]]
id = "E"
[[enterprise.hazard_source]]
id = "HS"
grade = 2
[[enterprise.hazard_source.unit]]
id = "T1"
{points_toml}
"#
    )
}

/// Parses and validates a whole configuration text.
#[allow(dead_code)]
pub(crate) fn parse(text: &str) -> SiteModel {
    let src = Source {
        path: "test.toml".into(),
        text: text.into(),
    };
    SiteModel::parse(&src).unwrap()
}

/// Runs the engine over the batches, fed in the order given, to `end_ms`
/// (see [`evaluate`]).
pub(crate) fn run(
    model: &SiteModel,
    workers: usize,
    epoch_ms: u64,
    batches: &[Vec<Reading>],
    end_ms: i64,
) -> Vec<RuleEvent> {
    let config = EngineConfig {
        workers,
        epoch_ms,
        lateness_ms: 0,
        ..EngineConfig::default()
    };
    evaluate(model, &config, batches, end_ms).unwrap()
}

/// A determinism case: readings as (point slot, time, value), an arrival
/// order, a worker count and an epoch length (ms).
pub(crate) type ArrivalCase = (Vec<(u8, i64, f64)>, Vec<usize>, usize, u64);

/// A determinism case: up to `max` readings as (point slot, time, value)
/// drawn from `reading`, an arrival order (a shuffle of them), a worker
/// count of 1, 2 or 4 and epochs of 10, 100 or 1,000 ms.
#[allow(dead_code)]
pub(crate) fn arrival_case(
    reading: impl Strategy<Value = (u8, i64, f64)>,
    max: usize,
) -> impl Strategy<Value = ArrivalCase> {
    prop::collection::vec(reading, 1..max).prop_flat_map(|rs| {
        let n = rs.len();
        (
            Just(rs),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            prop_oneof![Just(1usize), Just(2), Just(4)],
            prop_oneof![Just(10u64), Just(100), Just(1000)],
        )
    })
}

/// The events of a case's readings (slots mapped to `points`, values
/// rounded to whole `1/per_unit` steps as an instrument reports them), to
/// `end_ms`: first sorted on one worker with epochs of `epoch_ms`, the
/// reference; then in the case's arrival order, in batches of `chunk`, on
/// its worker count and with its epochs.
#[allow(dead_code)]
pub(crate) fn reference_and_shuffled(
    model: &SiteModel,
    points: &[PointIdx],
    (rs, order, workers, epoch): &ArrivalCase,
    per_unit: f64,
    epoch_ms: u64,
    chunk: usize,
    end_ms: i64,
) -> (Vec<RuleEvent>, Vec<RuleEvent>) {
    let readings: Vec<Reading> = rs
        .iter()
        .map(|&(p, ts_ms, v)| Reading {
            point: points[p as usize],
            ts_ms,
            value: (v * per_unit).round() / per_unit,
            quality: Quality::Good,
        })
        .collect();
    let mut sorted = readings.clone();
    sorted.sort_by_key(Reading::order_key);
    let reference = run(model, 1, epoch_ms, &[sorted], end_ms);
    let shuffled: Vec<Reading> = order.iter().map(|&i| readings[i]).collect();
    let batches: Vec<Vec<Reading>> = shuffled.chunks(chunk).map(<[Reading]>::to_vec).collect();
    (reference, run(model, *workers, *epoch, &batches, end_ms))
}

/// `n` loopback addresses free a moment ago, for a cluster's processes.
#[allow(dead_code)]
pub(crate) fn loopback_addresses(n: usize) -> Vec<String> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}
