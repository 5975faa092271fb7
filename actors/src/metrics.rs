//! The cache machinery's metrics: warm-up progress, outbox depth, age, throughput and
//! lag, per domain.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct CacheMetrics {
    pub warmup_rows: IntCounterVec,
    pub warmup_scopes: IntGaugeVec,
    pub warmup_duration: HistogramVec,
    pub outbox_pending: IntGaugeVec,
    pub outbox_oldest_pending_ms: IntGaugeVec,
    pub outbox_applied: IntCounterVec,
    pub outbox_skipped: IntCounterVec,
    pub outbox_failures: IntCounterVec,
    pub outbox_dead_letters: IntCounterVec,
    pub outbox_lag: HistogramVec,
    /// 1 while this node holds the domain's drainer lease.
    pub outbox_drainer: IntGaugeVec,
}

/// Lag buckets from 0.5 ms to 30 s, fine where it matters: a few milliseconds (push)
/// up to about a second (the seed's poll).
const LAG_BUCKETS: [f64; 24] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.25, 1.5, 2.0, 5.0, 30.0,
];

impl CacheMetrics {
    /// Creates `domain`'s series at zero, so alerts on them can be written before the
    /// first failure (a counter otherwise appears only once it is non-zero).
    pub fn start_domain(&self, domain: &str) {
        for counter in [&self.outbox_applied, &self.outbox_skipped, &self.outbox_failures, &self.outbox_dead_letters] {
            counter.with_label_values(&[domain]);
        }
        self.outbox_pending.with_label_values(&[domain]);
        self.outbox_oldest_pending_ms.with_label_values(&[domain]);
        self.outbox_drainer.with_label_values(&[domain]);
    }

    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let domain = &["domain"];
        let metrics = Self {
            warmup_rows: IntCounterVec::new(
                Opts::new("warmup_rows_total", "Rows loaded into the cache by warm-up"),
                domain,
            )?,
            warmup_scopes: IntGaugeVec::new(
                Opts::new("warmup_scopes", "Scopes by warm-up state"),
                &["domain", "state"],
            )?,
            warmup_duration: HistogramVec::new(
                HistogramOpts::new("warmup_duration_seconds", "Time to warm one scope"),
                domain,
            )?,
            outbox_pending: IntGaugeVec::new(
                Opts::new("outbox_pending", "Outbox entries not yet applied to PostgreSQL"),
                domain,
            )?,
            outbox_oldest_pending_ms: IntGaugeVec::new(
                Opts::new("outbox_oldest_pending_milliseconds", "Age of the oldest unapplied outbox entry"),
                domain,
            )?,
            outbox_applied: IntCounterVec::new(
                Opts::new("outbox_applied_total", "Outbox entries applied to PostgreSQL"),
                domain,
            )?,
            outbox_skipped: IntCounterVec::new(
                Opts::new(
                    "outbox_skipped_total",
                    "Outbox entries found already applied (after a crash between commit and ack) and only acked",
                ),
                domain,
            )?,
            outbox_failures: IntCounterVec::new(
                Opts::new("outbox_failures_total", "Outbox batches that failed and will be retried"),
                domain,
            )?,
            outbox_dead_letters: IntCounterVec::new(
                Opts::new(
                    "outbox_dead_letters_total",
                    "Outbox entries PostgreSQL refused on their own, set aside in outbox_dead_letters",
                ),
                domain,
            )?,
            outbox_lag: HistogramVec::new(
                HistogramOpts::new("outbox_lag_seconds", "From the cache's commit of a write to PostgreSQL's")
                    .buckets(LAG_BUCKETS.to_vec()),
                domain,
            )?,
            outbox_drainer: IntGaugeVec::new(
                Opts::new("outbox_drainer", "1 while this node is the one draining the domain's outbox"),
                domain,
            )?,
        };
        registry.register(Box::new(metrics.warmup_rows.clone()))?;
        registry.register(Box::new(metrics.warmup_scopes.clone()))?;
        registry.register(Box::new(metrics.warmup_duration.clone()))?;
        registry.register(Box::new(metrics.outbox_pending.clone()))?;
        registry.register(Box::new(metrics.outbox_oldest_pending_ms.clone()))?;
        registry.register(Box::new(metrics.outbox_applied.clone()))?;
        registry.register(Box::new(metrics.outbox_skipped.clone()))?;
        registry.register(Box::new(metrics.outbox_failures.clone()))?;
        registry.register(Box::new(metrics.outbox_dead_letters.clone()))?;
        registry.register(Box::new(metrics.outbox_lag.clone()))?;
        registry.register(Box::new(metrics.outbox_drainer.clone()))?;
        Ok(metrics)
    }
}

/// The `q` quantile of a cumulative histogram (upper bound, count at or below; the
/// `+Inf` bucket left out, `total` its count), as Prometheus' `histogram_quantile`
/// estimates it: by linear interpolation inside the bucket it falls in; past the
/// last finite bound, that bound. `None` without observations. The admin API and
/// the benchmarks read the outbox lag through it.
pub fn histogram_quantile(q: f64, buckets: &[(f64, u64)], total: u64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(upper, count) in buckets {
        if count as f64 >= rank {
            let inside = (count - below) as f64;
            let fraction = if inside > 0.0 { (rank - below as f64) / inside } else { 1.0 };
            return Some(lower + (upper - lower) * fraction);
        }
        (lower, below) = (upper, count);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::histogram_quantile;

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        // 10 at or below 1, 20 at or below 2, 20 at or below 4 (total 20).
        let buckets = [(1.0, 10), (2.0, 20), (4.0, 20)];
        assert_eq!(histogram_quantile(0.5, &buckets, 20), Some(1.0));
        assert_eq!(histogram_quantile(0.75, &buckets, 20), Some(1.5));
        assert_eq!(histogram_quantile(0.25, &buckets, 20), Some(0.5));
        assert_eq!(histogram_quantile(0.5, &buckets, 0), None);
        // Everything beyond the last bound: that bound.
        assert_eq!(histogram_quantile(0.99, &[(1.0, 0)], 5), Some(1.0));
    }
}
