//! Per-user limits, from `[limits]`: commands per second (a token bucket per user;
//! past it, 429 `rate_limited` with `Retry-After`) and open live sockets per user;
//! and the live sockets the whole process holds (past it, 503 `server_full`, so a
//! client tries another node). They are kept per server process: behind a load
//! balancer each node limits its own share.

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

/// Commands between two sweeps of the rate buckets.
const BUCKET_SWEEP_EVERY: usize = 4096;

pub struct UserLimits {
    settings: LimitSettings,
    buckets: DashMap<UserId, Bucket>,
    /// Commands counted, for the buckets' sweep.
    commands: AtomicUsize,
    /// Open live sockets per user; a user with none has no entry (the map grows with
    /// the users connected now, not with every user ever seen).
    sockets: Arc<DashMap<UserId, usize>>,
    /// Every open live socket, whoever's.
    all_sockets: Arc<AtomicUsize>,
}

/// One open live socket, counted (for its user, and for the process) until dropped.
pub struct SocketSlot {
    user: UserId,
    sockets: Arc<DashMap<UserId, usize>>,
    all: Arc<AtomicUsize>,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        // Counted down under the entry's lock, so an open racing this sees either
        // the entry or its absence, never a count about to be removed.
        if let dashmap::Entry::Occupied(mut open) = self.sockets.entry(self.user.clone()) {
            *open.get_mut() -= 1;
            if *open.get() == 0 {
                open.remove();
            }
        }
        self.all.fetch_sub(1, Ordering::SeqCst);
    }
}

impl UserLimits {
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            settings,
            buckets: DashMap::new(),
            commands: AtomicUsize::new(0),
            sockets: Arc::default(),
            all_sockets: Arc::default(),
        }
    }

    /// Takes one command from `user`'s allowance, or says when to retry.
    pub fn command(&self, user: &UserId) -> Result<(), DomainError> {
        let rate = self.settings.commands_per_sec;
        if rate <= 0.0 {
            return Ok(()); // unlimited
        }
        let burst = self.settings.command_burst.max(1) as f64;
        let short = {
            let mut bucket =
                self.buckets.entry(user.clone()).or_insert_with(|| Bucket { tokens: burst, refilled: Instant::now() });
            // Read under the entry's lock: never before the last refill, so no interval
            // counts twice, and a bucket the sweep dropped was full at this time too.
            let now = Instant::now();
            let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
            bucket.refilled = now;
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                None
            } else {
                Some(1.0 - bucket.tokens)
            }
        };
        // Now and then (no entry held), the buckets full again go: a new one starts
        // full, so forgetting them changes no answer, and the map holds the users
        // active lately, not every user ever seen.
        if self.commands.fetch_add(1, Ordering::Relaxed) % BUCKET_SWEEP_EVERY == BUCKET_SWEEP_EVERY - 1 {
            let now = Instant::now();
            self.buckets
                .retain(|_, bucket| bucket.tokens + now.duration_since(bucket.refilled).as_secs_f64() * rate < burst);
        }
        let Some(short) = short else { return Ok(()) };
        let wait = (short / rate).ceil().max(1.0) as u64;
        Err(DomainError::too_many_requests(
            "rate_limited",
            format!("more than {rate} commands per second; retry in {wait} s"),
            wait,
        ))
    }

    /// Live sockets open in this process now.
    pub fn open_sockets(&self) -> usize {
        self.all_sockets.load(Ordering::SeqCst)
    }

    /// Counts a new live socket of `user`, unless this process or the user holds
    /// their most already. A refused socket is never counted, not even for a moment:
    /// a flood of refused handshakes cannot crowd out others' (the node's count only
    /// moves under its bound, the user's under its entry's lock).
    pub fn open_socket(&self, user: &UserId) -> Result<SocketSlot, DomainError> {
        let most_here = self.settings.live_sockets;
        let room_here = self.all_sockets.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
            (most_here == 0 || open < most_here).then_some(open + 1)
        });
        if room_here.is_err() {
            // The node is full, not the user over their share: 503, for a client (or
            // a load balancer) to try another node.
            return Err(DomainError::unavailable(
                "server_full",
                format!("this server holds its most live sockets ({most_here}); try again later or elsewhere"),
            )
            .retry_after(5));
        }
        let max = self.settings.live_sockets_per_user;
        let over_share = {
            let mut count = self.sockets.entry(user.clone()).or_insert(0);
            let over = max > 0 && *count >= max;
            if !over {
                *count += 1;
            }
            over
        };
        if over_share {
            self.all_sockets.fetch_sub(1, Ordering::SeqCst);
            return Err(DomainError::too_many_requests(
                "too_many_sockets",
                format!("at most {max} live sockets per user; close one first"),
                1,
            ));
        }
        Ok(SocketSlot { user: user.clone(), sockets: self.sockets.clone(), all: self.all_sockets.clone() })
    }
}

/// Raises this process's soft limit on open files to its hard limit (each live socket
/// is a file descriptor, and the common soft limit of 1,024 would run out long before
/// `limits.live_sockets`), and warns when even that is too low for `needed`. Returns
/// the limit now in force, if it could be read.
pub fn raise_open_file_limit(needed: u64) -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open-file limit");
        }
    }
    let in_force = limit.rlim_cur;
    if in_force < needed {
        tracing::warn!(
            open_files = in_force,
            needed,
            "the open-file limit is below limits.live_sockets and the database pool: connections will fail first; \
             raise it (LimitNOFILE, ulimit -n) or lower limits.live_sockets"
        );
    }
    Some(in_force)
}

#[cfg(test)]
mod tests {
    use super::*;
    use boardsync_core::ErrorKind;

    fn limits(rate: f64, burst: u32, sockets: usize) -> UserLimits {
        UserLimits::new(LimitSettings {
            commands_per_sec: rate,
            command_burst: burst,
            live_sockets_per_user: sockets,
            live_sockets: 0,
        })
    }

    /// No command rate; at most `per_user` sockets per user and `all` in the process.
    fn socket_limits(per_user: usize, all: usize) -> UserLimits {
        UserLimits::new(LimitSettings {
            commands_per_sec: 0.0,
            command_burst: 1,
            live_sockets_per_user: per_user,
            live_sockets: all,
        })
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
    fn buckets_full_again_are_forgotten_without_changing_an_answer() {
        let limits = limits(1000.0, 2, 0);
        let busy = UserId("busy".into());
        limits.command(&busy).unwrap();
        limits.command(&busy).unwrap();
        assert_eq!(limits.command(&busy).unwrap_err().code, "rate_limited", "its burst is spent");
        // Three commands so far: with these, the next one is the sweep's.
        for i in 0..BUCKET_SWEEP_EVERY - 4 {
            limits.command(&UserId(format!("once-{i}"))).unwrap();
        }
        // At 1,000 a second every bucket is full again after 2 ms.
        std::thread::sleep(std::time::Duration::from_millis(3));
        limits.command(&UserId("last".into())).unwrap();
        let kept: Vec<String> = limits.buckets.iter().map(|entry| entry.key().0.clone()).collect();
        assert_eq!(kept, ["last"], "only the bucket not full again is kept");
        limits.command(&busy).expect("refilled, as it would have been if kept");
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

    #[test]
    fn a_user_without_sockets_leaves_no_entry() {
        let limits = limits(0.0, 1, 0);
        let slots: Vec<SocketSlot> = (0..3).map(|_| limits.open_socket(&UserId("ada".into())).unwrap()).collect();
        let refused = socket_limits(1, 0);
        let _first = refused.open_socket(&UserId("bob".into())).unwrap();
        assert!(refused.open_socket(&UserId("bob".into())).is_err());
        assert_eq!(refused.sockets.get(&UserId("bob".into())).map(|count| *count), Some(1), "a refusal is not kept");
        assert_eq!(limits.sockets.get(&UserId("ada".into())).map(|count| *count), Some(3));
        drop(slots);
        assert!(limits.sockets.is_empty(), "the last socket closed removes its user's entry");
        assert_eq!(limits.open_sockets(), 0);
    }

    #[test]
    fn the_process_holds_at_most_its_sockets_whoever_opens_them() {
        let limits = socket_limits(0, 2);
        let first = limits.open_socket(&UserId("ada".into())).unwrap();
        let _second = limits.open_socket(&UserId("bob".into())).unwrap();
        let refused = limits.open_socket(&UserId("cy".into())).err().unwrap();
        assert_eq!(
            (refused.code.as_ref(), refused.kind, refused.retry_after_secs),
            ("server_full", ErrorKind::Unavailable, Some(5))
        );
        // A refused socket is not counted, not even for a moment.
        assert_eq!(limits.open_sockets(), 2);
        drop(first);
        limits.open_socket(&UserId("cy".into())).expect("a closed socket frees a place");
    }
}
