//! The archive's schema.
//!
//! | column | type | meaning |
//! | --- | --- | --- |
//! | `point` | utf8 | point id, e.g. `T101.LT` |
//! | `hazard_source` | utf8 | hazard source id |
//! | `unit` | utf8 | unit id (tank, process unit) |
//! | `kind` | utf8 | `temperature`, `level`, `pressure`, `combustible_gas`, `toxic_gas` |
//! | `ts` | timestamp(ms, UTC) | event time: the gateway's timestamp |
//! | `ingest_ts` | timestamp(ms, UTC) | when hazardwatch received the reading |
//! | `value` | float64 | value in the point's engineering unit; NaN in `offline` markers |
//! | `quality` | utf8 | `good`, `uncertain`, `bad`, or `offline`: the gateway announced it went offline (a marker, not a measurement) |
//! | `late` | bool | arrived after the lateness bound: archived, not judged by the rules |
//!
//! `date` (event date, UTC) and `enterprise` are Hive partition columns in
//! the directory names, not columns in the files.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The readings schema (see the module docs).
pub fn readings_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            Field::new("point", DataType::Utf8, false),
            Field::new("hazard_source", DataType::Utf8, false),
            Field::new("unit", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("ts", ts.clone(), false),
            Field::new("ingest_ts", ts, false),
            Field::new("value", DataType::Float64, false),
            Field::new("quality", DataType::Utf8, false),
            Field::new("late", DataType::Boolean, false),
        ]))
    });
    SCHEMA.clone()
}
