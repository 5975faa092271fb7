//! Quantiles of samples, and of Prometheus histograms read back from `/metrics`.

use boardsync_actors::metrics::histogram_quantile;
use serde::{Deserialize, Serialize};

/// p50, p99 and max of a set of samples (milliseconds).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Spread {
    #[serde(deserialize_with = "nan_from_null")]
    pub p50: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub p99: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub max: f64,
    pub count: usize,
}

/// JSON has no NaN: serde_json writes it as null, and this reads null back as NaN
/// (a spread of no samples).
fn nan_from_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

impl Spread {
    pub fn of(samples: &[f64]) -> Self {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite()).collect();
        sorted.sort_by(|a, b| a.total_cmp(b));
        Self {
            p50: quantile(&sorted, 0.5),
            p99: quantile(&sorted, 0.99),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            count: sorted.len(),
        }
    }
}

/// The `q` quantile of sorted samples (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The cumulative buckets `(upper bound, count)` of histogram `name` with label
/// `label` (e.g. `domain="chat"`) in a Prometheus text exposition.
pub fn histogram_buckets(metrics: &str, name: &str, label: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|line| line.starts_with(&prefix) && line.contains(label))
        .filter_map(|line| {
            let le = line.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((bound, line.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// Bucket counts of `after` minus `before`: the observations made in between.
pub fn histogram_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(bound, count)| {
            let earlier = before.iter().find(|(b, _)| b == bound).map_or(0.0, |(_, c)| *c);
            (*bound, count - earlier)
        })
        .collect()
}

/// The `q` quantile of cumulative buckets as read from `/metrics` (`+Inf` last), as
/// the server estimates its own ([`histogram_quantile`]); NaN without observations.
pub fn bucket_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0, |b| b.1 as u64);
    let finite: Vec<(f64, u64)> =
        buckets.iter().filter(|(bound, _)| bound.is_finite()).map(|&(bound, count)| (bound, count as u64)).collect();
    histogram_quantile(q, &finite, total).unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_delta_counts_only_what_came_between() {
        let metrics = |a: u32, b: u32| {
            format!(
                "x_bucket{{domain=\"chat\",le=\"0.001\"}} {a}\nx_bucket{{domain=\"chat\",le=\"0.01\"}} {b}\n\
                 x_bucket{{domain=\"chat\",le=\"+Inf\"}} {b}\nx_bucket{{domain=\"poll\",le=\"0.001\"}} 7\n"
            )
        };
        let before = histogram_buckets(&metrics(10, 10), "x", "domain=\"chat\"");
        let after = histogram_buckets(&metrics(10, 110), "x", "domain=\"chat\"");
        let delta = histogram_delta(&before, &after);
        assert_eq!(delta, vec![(0.001, 0.0), (0.01, 100.0), (f64::INFINITY, 100.0)]);
        let p50 = bucket_quantile(&delta, 0.5);
        assert!((p50 - 0.0055).abs() < 1e-9, "{p50}");
    }

    #[test]
    fn an_empty_spread_survives_json() {
        let empty: Spread = serde_json::from_str(&serde_json::to_string(&Spread::of(&[])).unwrap()).unwrap();
        assert!(empty.p99.is_nan());
        assert_eq!(empty.count, 0);
    }

    #[test]
    fn spreads_take_nearest_ranks() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let spread = Spread::of(&samples);
        assert_eq!((spread.p50, spread.p99, spread.max, spread.count), (51.0, 99.0, 100.0, 100));
    }
}
