//! Statistical process monitoring trained on normal operation (issue 17):
//! the statistics a `learn` run fits and the deviation and multivariate
//! rules score against.
//!
//! - [`Robust`]: a point's centre and spread from a period of normal
//!   operation, by median and scaled median absolute deviation, so that
//!   the outliers a normal period still holds (a spike, a short upset) do
//!   not widen the band.
//! - [`Cusum`]: a two-sided tabular CUSUM on the standardised value, with
//!   its decision interval `h` chosen for an in-control average run length
//!   (the mean number of samples between false alarms), from Siegmund's
//!   approximation.
//! - [`Pca`]: a principal component model of a unit's standardised points,
//!   with Hotelling's T² (movement inside the model: the unit's usual
//!   relations, at unusual values) and the squared prediction error SPE
//!   (movement outside it: the relations broken), each with a control
//!   limit at a chosen confidence, and each variable's contribution, which
//!   names the points behind an alarm.
//!
//! Choices, with their sources: the MAD's 1.4826 makes it the standard
//! deviation of normal data; Siegmund (1985) for the CUSUM's run length;
//! the number of components is the fewest that explain `variance` (90 %
//! by default) of the standardised data, at least one and leaving at least
//! one out (so that SPE has a residual); the T² limit is the F-based limit
//! for a new observation (Tracy, Young and Mason 1992), the SPE limit
//! Jackson and Mudholkar's (1979). The linear algebra is nalgebra's
//! (symmetric eigendecomposition of the correlation matrix), the
//! distributions statrs': both maintained, pure Rust, no system library.

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, FisherSnedecor, Normal};

/// Scales the median absolute deviation to a standard deviation for
/// normally distributed data.
const MAD_TO_SD: f64 = 1.4826;

/// A centre and a spread, robust to outliers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Robust {
    /// The median.
    pub centre: f64,
    /// 1.4826 times the median absolute deviation from the median.
    pub spread: f64,
}

impl Robust {
    /// The median and scaled MAD of the finite values (reordered in
    /// place); `None` when there are fewer than two, or the spread is zero
    /// (a constant signal has no deviation to judge).
    pub fn of(values: &mut Vec<f64>) -> Option<Robust> {
        values.retain(|v| v.is_finite());
        if values.len() < 2 {
            return None;
        }
        let centre = median(values);
        let mut deviations: Vec<f64> = values.iter().map(|v| (v - centre).abs()).collect();
        let spread = MAD_TO_SD * median(&mut deviations);
        (spread > 0.0 && spread.is_finite()).then_some(Robust { centre, spread })
    }

    /// `value` in spreads from the centre.
    pub fn standardise(&self, value: f64) -> f64 {
        (value - self.centre) / self.spread
    }
}

/// The median of finite values (reordered in place); the mean of the two
/// middle ones for an even count.
fn median(values: &mut [f64]) -> f64 {
    let n = values.len();
    let mid = n / 2;
    let (_, upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        upper
    } else {
        let lower = values[..mid].iter().copied().fold(f64::MIN, f64::max);
        (lower + upper) / 2.0
    }
}

/// A two-sided tabular CUSUM on a standardised signal: `S+ = max(0, S+ +
/// z - k)`, `S- = max(0, S- - z - k)`, signalling when either passes `h`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cusum {
    /// The reference value (allowance), in standard deviations: half the
    /// shift the chart is tuned to detect fastest.
    pub k: f64,
    /// The decision interval, in standard deviations.
    pub h: f64,
}

impl Cusum {
    /// The chart with reference value `k` whose two-sided in-control
    /// average run length is `arl0` samples (found by bisection on
    /// [`Cusum::arl`]).
    pub fn for_arl(k: f64, arl0: f64) -> Cusum {
        let (mut lo, mut hi) = (0.0f64, 50.0f64);
        for _ in 0..100 {
            let mid = (lo + hi) / 2.0;
            if (Cusum { k, h: mid }).arl(0.0) < arl0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Cusum { k, h: hi }
    }

    /// The two-sided average run length when the mean has shifted by
    /// `shift` standard deviations, from Siegmund's approximation of each
    /// side (`1/ARL = 1/ARL+ + 1/ARL-`).
    pub fn arl(&self, shift: f64) -> f64 {
        let one_side = |delta: f64| {
            let b = self.h + 1.166;
            if delta.abs() < 1e-9 {
                b * b
            } else {
                ((-2.0 * delta * b).exp() + 2.0 * delta * b - 1.0) / (2.0 * delta * delta)
            }
        };
        let up = one_side(shift - self.k);
        let down = one_side(-shift - self.k);
        1.0 / (1.0 / up + 1.0 / down)
    }

    /// One step: the statistics after standardised value `z`.
    pub fn step(&self, (up, down): (f64, f64), z: f64) -> (f64, f64) {
        ((up + z - self.k).max(0.0), (down - z - self.k).max(0.0))
    }

    /// True when either statistic is past the decision interval.
    pub fn signals(&self, (up, down): (f64, f64)) -> bool {
        up > self.h || down > self.h
    }
}

/// A `learn` run's result: what normal operation looked like, per point
/// and per unit, and what it was fitted from. Written as JSON
/// (`hazardwatch learn --out`); `format` and `version` say what reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Models {
    /// Always [`Models::FORMAT`].
    pub format: String,
    /// [`Models::VERSION`] when written; a reader refuses another.
    pub version: u32,
    /// What the models were fitted from.
    pub trained: Trained,
    /// The grid the readings were averaged onto, seconds: deviation and
    /// multivariate rules judge means over the same grid.
    pub grid_s: u64,
    /// The in-control average run length the CUSUMs were tuned for, in
    /// grid samples.
    pub arl0: f64,
    /// Per point (by id): its robust centre and spread and its CUSUM.
    pub points: std::collections::BTreeMap<String, PointModel>,
    /// Per unit (by id): its PCA model.
    pub units: std::collections::BTreeMap<String, UnitModel>,
    /// Points and units with too little data, and why.
    pub skipped: std::collections::BTreeMap<String, String>,
}

impl Models {
    /// The `format` of a models file.
    pub const FORMAT: &'static str = "hazardwatch-models";
    /// The version this build writes and reads.
    pub const VERSION: u32 = 1;
    /// The longest grid, seconds (a day).
    pub const MAX_GRID_S: u64 = 86_400;

    /// Checks that the numbers can be judged against: a file is input
    /// from outside (edited, truncated, from another build), and a zero
    /// grid or spread, or a model whose vectors disagree in length, would
    /// divide by zero or index out of bounds in the rules. Says what is
    /// wrong first.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=Self::MAX_GRID_S).contains(&self.grid_s) {
            return Err(format!(
                "grid_s {} is not from 1 to {}",
                self.grid_s,
                Self::MAX_GRID_S
            ));
        }
        let finite = |v: f64| v.is_finite();
        for (id, p) in &self.points {
            let (r, c) = (p.robust, p.cusum);
            if !(finite(r.centre) && finite(r.spread) && r.spread > 0.0)
                || !(finite(c.k) && finite(c.h) && c.k >= 0.0 && c.h > 0.0)
            {
                return Err(format!(
                    "point {id}'s model needs a finite centre, a positive spread and a positive decision interval"
                ));
            }
            if !(0.0..=Ar1::MAX).contains(&p.ar1.0) {
                return Err(format!(
                    "point {id}'s model has an autocorrelation {} that is not from 0 to {}",
                    p.ar1.0,
                    Ar1::MAX
                ));
            }
        }
        for (id, u) in &self.units {
            u.pca
                .check(u.points.len())
                .map_err(|why| format!("unit {id}'s model {why}"))?;
        }
        Ok(())
    }
}

/// Where and when the models were fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    /// Event time from (inclusive), Unix ms.
    pub from_ms: i64,
    /// Event time to (exclusive), Unix ms.
    pub to_ms: i64,
    /// The park the configuration describes.
    pub park: String,
    /// The configuration file the models were fitted for.
    pub config: String,
    /// Good-quality readings read.
    pub readings: u64,
}

/// A point's normal operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointModel {
    /// The point's kind and unit when fitted (a changed point does not
    /// match its model).
    pub kind: String,
    /// Its engineering unit.
    pub eng_unit: String,
    /// Grid samples (means) fitted.
    pub samples: u64,
    /// Centre and spread of the grid means.
    pub robust: Robust,
    /// The CUSUM on the one-step prediction errors of the standardised
    /// grid means (see [`Ar1`]).
    pub cusum: Cusum,
    /// The lag-1 autocorrelation of the standardised grid means (0 in
    /// files fitted before it was recorded: the means taken as
    /// independent).
    #[serde(default)]
    pub ar1: Ar1,
}

/// The lag-1 autocorrelation φ of a point's standardised grid means. A
/// process that follows its load from one operating point to the next
/// wanders slowly: its minute means are far from independent (φ of 0.9
/// and more), and a CUSUM of the means themselves would take every slow
/// normal swing for a shift, many times more often than its run length
/// promises. So the CUSUM runs on what the last mean did not predict,
/// `(z − φᵍ·z_prev) / √(1 − φ²ᵍ)` for a mean `g` cells after the one
/// before (of unit variance when the means follow an AR(1) process): the
/// standard remedy for autocorrelated data (Montgomery, Introduction to
/// Statistical Quality Control, 10.4). The price: a slow drift shows in
/// the errors only a little each cell, which is why a unit's slow faults
/// are the multivariate rule's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ar1(pub f64);

impl Ar1 {
    /// The largest φ fitted: nearer 1 the errors would be noise over
    /// nothing.
    pub const MAX: f64 = 0.99;

    /// Cells after which the previous mean predicts nothing.
    pub const MAX_GAP: i64 = 60;

    /// φ from pairs of consecutive standardised means (the sample
    /// correlation, clamped to `[0, MAX]`); 0 with fewer than 3 pairs.
    pub fn fit(pairs: impl Iterator<Item = (f64, f64)>) -> Ar1 {
        let pairs: Vec<(f64, f64)> = pairs
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .collect();
        if pairs.len() < 3 {
            return Ar1(0.0);
        }
        let n = pairs.len() as f64;
        let (ma, mb) = pairs
            .iter()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (a, b) in &pairs {
            sab += (a - ma) * (b - mb);
            saa += (a - ma) * (a - ma);
            sbb += (b - mb) * (b - mb);
        }
        let r = sab / (saa * sbb).sqrt();
        Ar1(if r.is_finite() {
            r.clamp(0.0, Self::MAX)
        } else {
            0.0
        })
    }

    /// What a standardised mean `z` adds to what `prev` (the mean before
    /// it, `gap` cells before) predicted, in standard deviations; `z`
    /// itself without a previous mean within [`Ar1::MAX_GAP`] cells.
    pub fn innovation(self, z: f64, prev: Option<(f64, i64)>) -> f64 {
        match prev {
            Some((zp, gap)) if self.0 > 0.0 && (1..=Self::MAX_GAP).contains(&gap) => {
                let carry = self.0.powi(gap as i32);
                (z - carry * zp) / (1.0 - carry * carry).sqrt()
            }
            _ => z,
        }
    }
}

/// A unit's normal operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitModel {
    /// Its points, in the model's variable order.
    pub points: Vec<String>,
    /// The model.
    pub pca: Pca,
}

/// Why a model could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// Too few rows for the number of variables.
    #[error("{rows} complete samples for {vars} points: at least {need} are needed")]
    TooFewRows {
        /// Rows given.
        rows: usize,
        /// Variables.
        vars: usize,
        /// Rows needed.
        need: usize,
    },
    /// A variable that does not vary.
    #[error("point {0} does not vary in the training period")]
    Constant(usize),
    /// A sample with a missing or infinite value (the training grid gives
    /// only complete samples).
    #[error("sample {row} has no finite value of point {var}")]
    NotFinite {
        /// The sample.
        row: usize,
        /// The variable.
        var: usize,
    },
    /// A model needs at least two variables.
    #[error("a multivariate model needs at least two points, not {0}")]
    TooFewVariables(usize),
}

/// A principal component model of standardised variables, with its
/// control limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pca {
    /// Each variable's training mean.
    pub mean: Vec<f64>,
    /// Each variable's training standard deviation.
    pub scale: Vec<f64>,
    /// The retained loadings, one vector of length `mean.len()` per
    /// component, largest variance first.
    pub loadings: Vec<Vec<f64>>,
    /// The retained components' variances (eigenvalues).
    pub variances: Vec<f64>,
    /// The share of the standardised data's variance they explain.
    pub explained: f64,
    /// Training rows.
    pub rows: usize,
    /// Confidence of the limits, e.g. 0.99.
    pub confidence: f64,
    /// Hotelling's T² limit at `confidence`.
    pub t2_limit: f64,
    /// SPE limit at `confidence`; 0 when the kept components explain all
    /// but a millionth of the variance (nothing left to judge).
    pub spe_limit: f64,
}

/// A sample scored against a [`Pca`] model.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Hotelling's T².
    pub t2: f64,
    /// Squared prediction error.
    pub spe: f64,
    /// Each variable's contribution to T² (they sum to it; a negative one
    /// pulls against the others).
    pub t2_contributions: Vec<f64>,
    /// Each variable's contribution to SPE (its squared residual; they sum
    /// to it).
    pub spe_contributions: Vec<f64>,
}

impl Pca {
    /// Fits the model to `rows` (each a sample of every variable, in the
    /// same order), keeping the fewest components that explain `variance`
    /// of the standardised data, with limits at `confidence`.
    pub fn fit(rows: &[Vec<f64>], variance: f64, confidence: f64) -> Result<Pca, FitError> {
        let vars = rows.first().map_or(0, Vec::len);
        if vars < 2 {
            return Err(FitError::TooFewVariables(vars));
        }
        let n = rows.len();
        let need = (3 * vars).max(20);
        if n < need {
            return Err(FitError::TooFewRows {
                rows: n,
                vars,
                need,
            });
        }
        for (row, r) in rows.iter().enumerate() {
            if let Some(var) = (0..vars).find(|&j| !r.get(j).is_some_and(|v| v.is_finite())) {
                return Err(FitError::NotFinite { row, var });
            }
        }
        let mut mean = vec![0.0; vars];
        for r in rows {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v / n as f64;
            }
        }
        let mut scale = vec![0.0; vars];
        for r in rows {
            for ((s, v), m) in scale.iter_mut().zip(r).zip(&mean) {
                *s += (v - m) * (v - m) / (n - 1) as f64;
            }
        }
        for (j, s) in scale.iter_mut().enumerate() {
            *s = s.sqrt();
            if *s <= 1e-12 * mean[j].abs().max(1.0) {
                return Err(FitError::Constant(j));
            }
        }
        let z = DMatrix::from_fn(n, vars, |i, j| (rows[i][j] - mean[j]) / scale[j]);
        let corr = (z.transpose() * &z) / (n - 1) as f64;
        let eigen = SymmetricEigen::new(corr);
        let mut order: Vec<usize> = (0..vars).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        let values: Vec<f64> = order
            .iter()
            .map(|&i| eigen.eigenvalues[i].max(0.0))
            .collect();
        let total: f64 = values.iter().sum();
        let mut kept = 0;
        let mut explained = 0.0;
        while kept < vars - 1 && (kept == 0 || explained < variance) {
            explained += values[kept] / total;
            kept += 1;
        }
        let loadings: Vec<Vec<f64>> = order[..kept]
            .iter()
            .map(|&i| eigen.eigenvectors.column(i).iter().copied().collect())
            .collect();
        let variances = values[..kept].to_vec();
        let residual = &values[kept..];
        let t2_limit = t2_limit(kept, n, confidence);
        // Points that move exactly together leave no residual to judge: a
        // limit fitted to rounding noise would flag every new sample, so
        // SPE is not monitored then (limit 0).
        let spe_limit = if residual.iter().sum::<f64>() <= 1e-6 * total {
            0.0
        } else {
            spe_limit(residual, confidence)
        };
        Ok(Pca {
            mean,
            scale,
            loadings,
            variances,
            explained,
            rows: n,
            confidence,
            t2_limit,
            spe_limit,
        })
    }

    /// Checks a model read from outside for `vars` variables: one mean,
    /// scale and loading entry per variable, at least one component, a
    /// variance per component, every number finite, scales and variances
    /// positive, limits not negative.
    pub fn check(&self, vars: usize) -> Result<(), String> {
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if self.mean.len() != vars
            || self.scale.len() != vars
            || self.loadings.iter().any(|l| l.len() != vars)
        {
            return Err("does not have one variable per point".into());
        }
        if self.loadings.is_empty() || self.variances.len() != self.loadings.len() {
            return Err("does not have one variance per component".into());
        }
        if !(finite(&self.mean)
            && finite(&self.scale)
            && finite(&self.variances)
            && self.loadings.iter().all(|l| finite(l))
            && self.scale.iter().chain(&self.variances).all(|&v| v > 0.0)
            && self.t2_limit.is_finite()
            && self.spe_limit.is_finite()
            && self.t2_limit > 0.0
            && self.spe_limit >= 0.0)
        {
            return Err(
                "has a number that is not finite, or a scale, variance or limit out of range"
                    .into(),
            );
        }
        Ok(())
    }

    /// Scores one sample (every variable, in the model's order).
    pub fn score(&self, sample: &[f64]) -> Score {
        let vars = self.mean.len();
        let z = DVector::from_fn(vars, |j, _| {
            (sample.get(j).copied().unwrap_or(f64::NAN) - self.mean[j]) / self.scale[j]
        });
        let mut reconstructed = DVector::zeros(vars);
        let mut t2_contributions = vec![0.0; vars];
        let mut t2 = 0.0;
        for (p, &var) in self.loadings.iter().zip(&self.variances) {
            let p = DVector::from_column_slice(p);
            let t = p.dot(&z);
            t2 += t * t / var;
            reconstructed += &p * t;
            for j in 0..vars {
                t2_contributions[j] += z[j] * p[j] * t / var;
            }
        }
        let residual = &z - reconstructed;
        let spe_contributions: Vec<f64> = residual.iter().map(|e| e * e).collect();
        Score {
            t2,
            spe: spe_contributions.iter().sum(),
            t2_contributions,
            spe_contributions,
        }
    }
}

/// Hotelling's T² limit for a new observation, `a` components, `n`
/// training rows: `a (n-1)(n+1) / (n (n-a)) F(a, n-a)`.
fn t2_limit(a: usize, n: usize, confidence: f64) -> f64 {
    let (a, n) = (a as f64, n as f64);
    match FisherSnedecor::new(a, n - a) {
        Ok(f) => a * (n - 1.0) * (n + 1.0) / (n * (n - a)) * f.inverse_cdf(confidence),
        Err(_) => f64::INFINITY,
    }
}

/// Jackson and Mudholkar's SPE limit from the left-out eigenvalues.
fn spe_limit(residual: &[f64], confidence: f64) -> f64 {
    let theta = |i: i32| residual.iter().map(|l| l.powi(i)).sum::<f64>();
    let (t1, t2, t3) = (theta(1), theta(2), theta(3));
    if t1 <= 0.0 || t2 <= 0.0 {
        return 0.0;
    }
    let h0 = 1.0 - 2.0 * t1 * t3 / (3.0 * t2 * t2);
    let c = Normal::new(0.0, 1.0).map_or(2.326, |n| n.inverse_cdf(confidence));
    t1 * (c * (2.0 * t2 * h0 * h0).sqrt() / t1 + 1.0 + t2 * h0 * (h0 - 1.0) / (t1 * t1))
        .powf(1.0 / h0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of standard normal numbers (xorshift and
    /// Box-Muller), so that the tests need no random crate.
    struct Gauss(u64);

    impl Gauss {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        fn next(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    #[test]
    fn the_robust_centre_and_spread_ignore_outliers() {
        let mut g = Gauss(7);
        let mut values: Vec<f64> = (0..10_000).map(|_| 50.0 + 2.0 * g.next()).collect();
        // A few wild readings and a missing one.
        values.extend([1e6, -1e6, 900.0, f64::NAN]);
        let r = Robust::of(&mut values).unwrap();
        assert!((r.centre - 50.0).abs() < 0.1, "{r:?}");
        assert!((r.spread - 2.0).abs() < 0.1, "{r:?}");
        assert_eq!(r.standardise(54.0), (54.0 - r.centre) / r.spread);
        assert_eq!(Robust::of(&mut vec![3.0, 3.0, 3.0]), None, "constant");
        assert_eq!(Robust::of(&mut vec![3.0]), None, "one value");
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn cusum_run_lengths_match_the_published_values() {
        // k = 0.5: h = 4 and h = 5 give two-sided in-control run lengths
        // of 168 and 465, and 8.4 and 10.4 at a one-sigma shift
        // (Montgomery, Introduction to Statistical Quality Control,
        // table 9.3).
        let c = Cusum { k: 0.5, h: 4.0 };
        assert!((c.arl(0.0) - 168.0).abs() < 2.0, "{}", c.arl(0.0));
        let c = Cusum { k: 0.5, h: 5.0 };
        assert!((c.arl(0.0) - 465.0).abs() < 5.0, "{}", c.arl(0.0));
        // A shift of one standard deviation is found in about 10 samples.
        assert!((c.arl(1.0) - 10.4).abs() < 0.5, "{}", c.arl(1.0));
        // Tuned for a false alarm every 10,000 samples.
        let c = Cusum::for_arl(0.5, 10_000.0);
        assert!((c.arl(0.0) / 10_000.0 - 1.0).abs() < 1e-6);
        assert!(c.h > 5.0 && c.h < 10.0, "{c:?}");
    }

    #[test]
    fn a_cusum_tuned_for_an_arl_false_alarms_about_that_often() {
        let c = Cusum::for_arl(0.5, 500.0);
        let mut g = Gauss(11);
        let (mut signals, mut state, samples) = (0u32, (0.0, 0.0), 1_000_000);
        for _ in 0..samples {
            state = c.step(state, g.next());
            if c.signals(state) {
                signals += 1;
                state = (0.0, 0.0);
            }
        }
        // 2,000 expected; Siegmund's approximation is within a few percent.
        let arl = samples as f64 / f64::from(signals);
        assert!((arl / 500.0 - 1.0).abs() < 0.15, "ARL {arl}");
    }

    #[test]
    fn an_autocorrelated_series_is_charted_on_its_prediction_errors() {
        let c = Cusum::for_arl(0.5, 500.0);
        let phi = 0.9;
        let mut g = Gauss(13);
        let mut z = 0.0;
        let series: Vec<f64> = (0..400_000)
            .map(|_| {
                z = phi * z + (1.0f64 - phi * phi).sqrt() * g.next();
                z
            })
            .collect();
        let fitted = Ar1::fit(series.iter().copied().zip(series.iter().copied().skip(1)));
        assert!((fitted.0 - phi).abs() < 0.01, "{fitted:?}");
        // The CUSUM of the series itself false-alarms many times too often;
        // of its prediction errors, about as often as it was tuned for.
        let arl = |xs: &mut dyn Iterator<Item = f64>| {
            let (mut signals, mut state, mut n) = (0u32, (0.0, 0.0), 0u32);
            for x in xs {
                n += 1;
                state = c.step(state, x);
                if c.signals(state) {
                    signals += 1;
                    state = (0.0, 0.0);
                }
            }
            f64::from(n) / f64::from(signals.max(1))
        };
        let naive = arl(&mut series.iter().copied());
        let mut prev = None;
        let errors = series.iter().map(|&z| {
            let e = fitted.innovation(z, prev.map(|p| (p, 1)));
            prev = Some(z);
            e
        });
        let whitened = arl(&mut errors.collect::<Vec<_>>().into_iter());
        assert!(naive < 100.0, "naive ARL {naive}");
        assert!((whitened / 500.0 - 1.0).abs() < 0.2, "ARL {whitened}");
        // A gap: the mean two cells back predicts less; past MAX_GAP, nothing.
        assert_eq!(
            Ar1(0.5).innovation(1.0, Some((1.0, 1))),
            0.5 / 0.75f64.sqrt()
        );
        assert_eq!(
            Ar1(0.5).innovation(1.0, Some((1.0, 2))),
            0.75 / (1.0f64 - 0.0625).sqrt()
        );
        assert_eq!(Ar1(0.5).innovation(1.0, Some((1.0, 61))), 1.0);
        assert_eq!(Ar1(0.0).innovation(1.0, Some((5.0, 1))), 1.0);
        assert_eq!(
            Ar1::fit([(1.0, 1.0)].into_iter()),
            Ar1(0.0),
            "too few pairs"
        );
        assert_eq!(
            Ar1::fit((0..10).map(|i| (f64::from(i), -f64::from(i)))),
            Ar1(0.0),
            "anticorrelated: clamped"
        );
    }

    /// Five variables driven by two latent factors, with a little noise.
    fn plant(g: &mut Gauss, n: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| {
                let (f1, f2) = (g.next(), g.next());
                let e = |g: &mut Gauss| 0.1 * g.next();
                vec![
                    100.0 + 5.0 * f1 + e(g),
                    20.0 + 2.0 * f1 - 1.0 * f2 + e(g),
                    300.0 + 10.0 * f2 + e(g),
                    1.0 + 0.5 * (f1 + f2) + e(g),
                    60.0 - 3.0 * f1 + e(g),
                ]
            })
            .collect()
    }

    #[test]
    fn pca_finds_the_latent_structure_and_its_limits_hold_on_new_normal_data() {
        let mut g = Gauss(3);
        let m = Pca::fit(&plant(&mut g, 5_000), 0.9, 0.99).unwrap();
        assert_eq!(m.loadings.len(), 2, "two factors: {:?}", m.variances);
        assert!(m.explained > 0.99, "{}", m.explained);
        // New normal operation: about 1 % of samples past each limit.
        let fresh = plant(&mut g, 20_000);
        let past = |f: &dyn Fn(&Score) -> bool| {
            fresh.iter().filter(|r| f(&m.score(r))).count() as f64 / fresh.len() as f64
        };
        let t2 = past(&|s| s.t2 > m.t2_limit);
        let spe = past(&|s| s.spe > m.spe_limit);
        assert!((0.004..0.02).contains(&t2), "T² past its limit: {t2}");
        assert!((0.004..0.03).contains(&spe), "SPE past its limit: {spe}");
        // Contributions sum to the statistics.
        let s = m.score(&fresh[0]);
        assert!((s.t2_contributions.iter().sum::<f64>() - s.t2).abs() < 1e-9);
        assert!((s.spe_contributions.iter().sum::<f64>() - s.spe).abs() < 1e-9);
    }

    #[test]
    fn a_broken_relation_is_spe_and_names_its_variable() {
        let mut g = Gauss(5);
        let m = Pca::fit(&plant(&mut g, 5_000), 0.9, 0.99).unwrap();
        // Variable 4 should follow variable 0 (both f1); here it does not,
        // though each value alone is inside its usual range.
        let mut sample = plant(&mut g, 1).remove(0);
        sample[4] += 6.0;
        let s = m.score(&sample);
        assert!(s.spe > 10.0 * m.spe_limit, "{} vs {}", s.spe, m.spe_limit);
        let top = (0..5)
            .max_by(|&a, &b| s.spe_contributions[a].total_cmp(&s.spe_contributions[b]))
            .unwrap();
        assert_eq!(top, 4, "{:?}", s.spe_contributions);
        // A large move along the usual relations is T², not SPE.
        let along: Vec<f64> = (0..5)
            .map(|j| m.mean[j] + 4.0 * m.scale[j] * m.loadings[0][j] * 2.0)
            .collect();
        let s = m.score(&along);
        assert!(s.t2 > m.t2_limit && s.spe < m.spe_limit, "{s:?}");
    }

    #[test]
    fn points_that_move_exactly_together_leave_spe_unmonitored() {
        let mut g = Gauss(13);
        let rows: Vec<Vec<f64>> = (0..200)
            .map(|_| {
                let x = g.next();
                vec![10.0 + x, 20.0 + 2.0 * x]
            })
            .collect();
        let m = Pca::fit(&rows, 0.9, 0.99).unwrap();
        assert_eq!(m.loadings.len(), 1);
        assert_eq!(m.spe_limit, 0.0);
    }

    #[test]
    fn a_model_is_refused_without_enough_data_or_variation() {
        let mut g = Gauss(9);
        assert_eq!(
            Pca::fit(&plant(&mut g, 10), 0.9, 0.99),
            Err(FitError::TooFewRows {
                rows: 10,
                vars: 5,
                need: 20
            })
        );
        let mut rows = plant(&mut g, 100);
        for r in &mut rows {
            r[2] = 7.0;
        }
        assert_eq!(Pca::fit(&rows, 0.9, 0.99), Err(FitError::Constant(2)));
        rows[40][1] = f64::NAN;
        assert_eq!(
            Pca::fit(&rows, 0.9, 0.99),
            Err(FitError::NotFinite { row: 40, var: 1 })
        );
        rows[40][1] = 1.0;
        rows[40].pop();
        assert_eq!(
            Pca::fit(&rows, 0.9, 0.99),
            Err(FitError::NotFinite { row: 40, var: 4 })
        );
        let single: Vec<Vec<f64>> = (0..100).map(|i| vec![f64::from(i)]).collect();
        assert_eq!(
            Pca::fit(&single, 0.9, 0.99),
            Err(FitError::TooFewVariables(1))
        );
    }
}
