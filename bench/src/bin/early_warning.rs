//! Early warning from learned normal operation (issue 17): on the example
//! park, models are learned from simulated normal operation, then the
//! simulator's slow incidents (cooling degradation, feed-ratio fault, slow
//! leak) are replayed, once per seed. Prints, per incident, the minutes
//! between the first deviation or multivariate warning and the first limit
//! alarm, and the false warnings per 10 minutes per unit over a separate
//! period of normal operation.
//!
//! `cargo run --release -p hazardwatch-bench --bin early_warning [LEARN_H] [NORMAL_H] [SEEDS]`
//! (defaults 24, 48 and 5).

use hazardwatch::config::EXAMPLE_CONFIG;
use hazardwatch::evaluate::{Setup, evaluate, report};
use hazardwatch_bench::{header, row};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let learn_h: u64 = args.next().map_or(Ok(24), |s| s.parse())?;
    let normal_h: u64 = args.next().map_or(Ok(48), |s| s.parse())?;
    let seeds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;
    header(
        &format!(
            "early warning: learn on {learn_h} h of normal operation, count false warnings in {normal_h} h more, {seeds} runs of the slow incidents"
        ),
        &format!(
            "cargo run --release -p hazardwatch-bench --bin early_warning {learn_h} {normal_h} {seeds}"
        ),
    );
    let dir = tempfile::tempdir()?;
    let setup = Setup {
        learn_h,
        normal_h,
        seeds: (0..seeds).map(|i| 100 + i).collect(),
        workers: 2,
        progress: false,
    };
    let started = std::time::Instant::now();
    let outcome = evaluate(dir.path(), EXAMPLE_CONFIG, &setup)?;
    let n = &outcome.normal;
    row(
        "false learned warnings in normal operation, per 10 min per unit",
        &format!("{:.3}", n.per_10min_per_unit()),
        None,
    );
    if let Some((unit, rate)) = n.worst_unit() {
        row(
            &format!("the same, the unit with most ({unit})"),
            &format!("{rate:.3}"),
            None,
        );
    }
    let mut by_incident: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for i in &outcome.incidents {
        by_incident
            .entry(i.name)
            .or_default()
            .push(i.lead_min().unwrap_or(f64::NAN));
    }
    for (name, mut leads) in by_incident {
        leads.sort_by(f64::total_cmp);
        row(
            &format!(
                "{name}: learned warning before the first limit alarm, median of {} runs [min, max]",
                leads.len()
            ),
            &format!(
                "{:.1} min [{:.1}, {:.1}]",
                leads[leads.len() / 2],
                leads[0],
                leads[leads.len() - 1]
            ),
            None,
        );
    }
    println!();
    print!("{}", report(&outcome));
    println!("(in {:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}
