//! The archive's schemas.
//!
//! ## `readings/date=YYYY-MM-DD/enterprise=E/part-*.parquet`
//!
//! One row per reading, sorted by (`point`, `ts`).
//!
//! | column | type | meaning |
//! | --- | --- | --- |
//! | `point` | utf8 | point id, e.g. `T101.LT` |
//! | `hazard_source` | utf8 | hazard source id |
//! | `unit` | utf8 | unit id (tank, process unit) |
//! | `kind` | utf8 | `temperature`, `level`, `pressure`, `combustible_gas`, `toxic_gas`, `measurement` |
//! | `ts` | timestamp(ms, UTC) | event time: the gateway's timestamp |
//! | `ingest_ts` | timestamp(ms, UTC) | when hazardwatch received the reading |
//! | `value` | float64 | value in the point's engineering unit; NaN in `offline` markers |
//! | `quality` | utf8 | `good`, `uncertain`, `bad`, or `offline`: the gateway announced it went offline (a marker, not a measurement) |
//! | `late` | bool | arrived after the lateness bound: archived, not judged by the rules |
//!
//! ## `alarms/date=YYYY-MM-DD/enterprise=E/part-*.parquet`
//!
//! One row per journaled alarm event (condition changes, operator actions,
//! escalations, risk colour changes), sorted by `seq`; the same fields as
//! the gRPC `AlarmEvent`. Enumerations are their proto names.
//!
//! | column | type | meaning |
//! | --- | --- | --- |
//! | `seq` | uint64 | the event's sequence number (unique, increasing) |
//! | `alarm_id` | utf8 | `{source}/{kind}`, e.g. `T101.LT/HH` |
//! | `hazard_source`, `unit`, `point` | utf8 | where (empty when not a point or unit alarm) |
//! | `kind` | utf8 | e.g. `ALARM_KIND_HIGH_HIGH` |
//! | `priority` | utf8 | e.g. `PRIORITY_HIGH` |
//! | `transition` | utf8 | e.g. `TRANSITION_RAISED`, `TRANSITION_ACKNOWLEDGED` |
//! | `state` | utf8 | the alarm's state afterwards, e.g. `ALARM_STATE_UNACKED_ACTIVE` |
//! | `event_time` | timestamp(ms, UTC) | event time of a condition change; wall time of an action |
//! | `value`, `limit` | float64 | the value and the limit crossed (NaN for actions) |
//! | `eng_unit` | utf8 | unit of `value` and `limit` |
//! | `message` | utf8 | human-readable description |
//! | `actor`, `comment`, `action` | utf8 | who acted, why, and (disposals) what was done |
//! | `predicted_time` | timestamp(ms, UTC), nullable | early warnings: when the trend reaches the limit |
//! | `suppressed`, `latched`, `out_of_service`, `awaiting_disposal` | bool | flags after the event |
//! | `shelved_until` | timestamp(ms, UTC), nullable | shelved until |
//! | `escalation_level` | utf8 | e.g. `ESCALATION_LEVEL_COUNTY` |
//! | `risk_colour` | utf8 | risk changes: the new colour; empty otherwise |
//!
//! In both, `date` (event date, UTC) and `enterprise` are Hive partition
//! columns in the directory names, not columns in the files. Events of no
//! enterprise (none today) would go to `enterprise=__HIVE_DEFAULT_PARTITION__`.

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

/// The alarm events schema (see the module docs).
pub fn alarms_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let text = |name| Field::new(name, DataType::Utf8, false);
        let flag = |name| Field::new(name, DataType::Boolean, false);
        Arc::new(Schema::new(vec![
            Field::new("seq", DataType::UInt64, false),
            text("alarm_id"),
            text("hazard_source"),
            text("unit"),
            text("point"),
            text("kind"),
            text("priority"),
            text("transition"),
            text("state"),
            Field::new("event_time", ts.clone(), false),
            Field::new("value", DataType::Float64, false),
            Field::new("limit", DataType::Float64, false),
            text("eng_unit"),
            text("message"),
            text("actor"),
            text("comment"),
            text("action"),
            Field::new("predicted_time", ts.clone(), true),
            flag("suppressed"),
            flag("latched"),
            flag("out_of_service"),
            flag("awaiting_disposal"),
            Field::new("shelved_until", ts, true),
            text("escalation_level"),
            text("risk_colour"),
        ]))
    });
    SCHEMA.clone()
}
