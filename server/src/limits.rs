//! Per-user limits, from `[limits]`: commands per second (a token bucket per user;
//! past it, 429 `rate_limited` with `Retry-After`) and open live sockets per user.
//! They are kept per server process: behind a load balancer each node limits its own
//! share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use boardsync_core::{DomainError, UserId};
use dashmap::DashMap;

use crate::settings::LimitSettings;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

pub struct UserLimits {
    settings: LimitSettings,
    buckets: DashMap<UserId, Bucket>,
    sockets: DashMap<UserId, Arc<AtomicUsize>>,
}

/// One open live socket, counted until dropped.
pub struct SocketSlot {
    count: Arc<AtomicUsize>,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl UserLimits {
    pub fn new(settings: LimitSettings) -> Self {
        Self { settings, buckets: DashMap::new(), sockets: DashMap::new() }
    }

    /// Takes one command from `user`'s allowance, or says when to retry.
    pub fn command(&self, user: &UserId) -> Result<(), DomainError> {
        let rate = self.settings.commands_per_sec;
        if rate <= 0.0 {
            return Ok(()); // unlimited
        }
        let burst = self.settings.command_burst.max(1) as f64;
        let now = Instant::now();
        let mut bucket = self.buckets.entry(user.clone()).or_insert(Bucket { tokens: burst, refilled: now });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64;
        Err(DomainError::too_many_requests(
            "rate_limited",
            format!("more than {rate} commands per second; retry in {wait} s"),
            wait,
        ))
    }

    /// Counts one more open live socket of `user`, unless they have the most allowed.
    pub fn open_socket(&self, user: &UserId) -> Result<SocketSlot, DomainError> {
        let count = self.sockets.entry(user.clone()).or_default().clone();
        let max = self.settings.live_sockets_per_user;
        let open = count.fetch_add(1, Ordering::SeqCst);
        let slot = SocketSlot { count };
        if max > 0 && open >= max {
            return Err(DomainError::too_many_requests(
                "too_many_sockets",
                format!("at most {max} live sockets per user; close one first"),
                1,
            ));
        }
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: u32, sockets: usize) -> UserLimits {
        UserLimits::new(LimitSettings { commands_per_sec: rate, command_burst: burst, live_sockets_per_user: sockets })
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_with_a_retry_hint() {
        let limits = limits(1.0, 3, 0);
        let ada = UserId("ada".into());
        for _ in 0..3 {
            limits.command(&ada).unwrap();
        }
        let refused = limits.command(&ada).unwrap_err();
        assert_eq!((refused.code.as_ref(), refused.retry_after_secs), ("rate_limited", Some(1)));
        limits.command(&UserId("bob".into())).expect("another user has their own allowance");
    }

    #[test]
    fn sockets_are_counted_until_closed() {
        let limits = limits(0.0, 1, 2);
        let ada = UserId("ada".into());
        let first = limits.open_socket(&ada).unwrap();
        let _second = limits.open_socket(&ada).unwrap();
        assert_eq!(limits.open_socket(&ada).err().unwrap().code, "too_many_sockets");
        drop(first);
        limits.open_socket(&ada).expect("a closed socket frees its slot");
    }
}
