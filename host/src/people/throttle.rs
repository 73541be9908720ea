//! In-memory limits on what strangers can try: failed sign-ins per account
//! and per client address within a sliding window ([`LoginThrottle`]), and
//! anonymous calls of `public` routes per client address (a token bucket,
//! [`PublicLimiter`]). Both take the instant from the caller (the host's
//! clock), so they run on the manual clock in tests and are pure enough to
//! unit-test.
//!
//! A client address is an IPv4 address, or an IPv6 address's /64 prefix
//! (one host usually holds a whole /64). The tables are bounded: past
//! [`MAX_TRACKED`] keys the stale entries are dropped, and if that is not
//! enough, arbitrary ones — an attacker filling the table can only make the
//! host forget, never refuse, other clients.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

/// Most keys each table keeps.
pub const MAX_TRACKED: usize = 100_000;

/// The key a client address is counted under: IPv4 as it is, IPv6 by its
/// /64 prefix.
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// How many failed sign-ins are allowed within a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// The sliding window failures are counted in.
    pub window: Duration,
    /// Failures one account may have in the window before its sign-ins are
    /// refused (429) until the oldest leaves it.
    pub per_account: u32,
    /// Failures one client address may have in the window, over every
    /// account it tried.
    pub per_address: u32,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            window: Duration::from_secs(15 * 60),
            per_account: 5,
            per_address: 20,
        }
    }
}

/// Failure times within the window, oldest first.
#[derive(Debug, Default)]
struct Failures(VecDeque<OffsetDateTime>);

impl Failures {
    fn prune(&mut self, now: OffsetDateTime, window: Duration) {
        while let Some(first) = self.0.front() {
            if now - *first >= window {
                self.0.pop_front();
            } else {
                break;
            }
        }
    }

    /// When another attempt may be made, if `max` failures are in the
    /// window now.
    fn retry_after(&self, now: OffsetDateTime, window: Duration, max: u32) -> Option<Duration> {
        if self.0.len() < max as usize {
            return None;
        }
        // The failure whose leaving brings the count below `max`.
        let index = self.0.len() - max as usize;
        let leaves = self.0[index] + window;
        let wait = leaves - now;
        Some(
            Duration::try_from(wait)
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_secs(1)),
        )
    }
}

/// Keeps `map` within [`MAX_TRACKED`] keys.
fn bound<K: Eq + Hash + Clone, V>(map: &mut HashMap<K, V>, stale: impl Fn(&V) -> bool) {
    if map.len() < MAX_TRACKED {
        return;
    }
    map.retain(|_, v| !stale(v));
    let excess = (map.len() + 1).saturating_sub(MAX_TRACKED);
    let doomed: Vec<K> = map.keys().take(excess).cloned().collect();
    for key in doomed {
        map.remove(&key);
    }
}

/// Failed sign-ins per account (tenant and lower-cased address) and per
/// client address.
#[derive(Debug)]
pub struct LoginThrottle {
    limits: LoginLimits,
    accounts: Mutex<HashMap<String, Failures>>,
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginThrottle {
    /// A throttle with `limits` and nothing counted.
    pub fn new(limits: LoginLimits) -> Self {
        LoginThrottle {
            limits,
            accounts: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a sign-in to `account` from `address` may be tried at `now`;
    /// `Err` says when to retry. Checked before the password is, so a
    /// throttled account cannot be guessed even with the right password.
    pub fn check(
        &self,
        account: &str,
        address: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<(), Duration> {
        let window = self.limits.window;
        let mut wait = None;
        {
            let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = accounts.get_mut(account) {
                f.prune(now, window);
                wait = f.retry_after(now, window, self.limits.per_account);
            }
        }
        if let Some(address) = address {
            let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = addresses.get_mut(&client_key(address)) {
                f.prune(now, window);
                wait = wait.max(f.retry_after(now, window, self.limits.per_address));
            }
        }
        wait.map_or(Ok(()), Err)
    }

    /// Counts a failed sign-in to `account` from `address` at `now`.
    pub fn failed(&self, account: &str, address: Option<IpAddr>, now: OffsetDateTime) {
        let window = self.limits.window;
        let stale = |f: &Failures| f.0.back().is_none_or(|last| now - *last >= window);
        {
            let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
            if !accounts.contains_key(account) {
                bound(&mut accounts, stale);
            }
            accounts
                .entry(account.to_owned())
                .or_default()
                .0
                .push_back(now);
        }
        if let Some(address) = address {
            let key = client_key(address);
            let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
            if !addresses.contains_key(&key) {
                bound(&mut addresses, stale);
            }
            let failures = addresses.entry(key).or_default();
            failures.0.push_back(now);
            // Only the newest `per_address` failures matter.
            while failures.0.len() > self.limits.per_address.max(1) as usize {
                failures.0.pop_front();
            }
        }
    }

    /// Forgets `account`'s failures after a successful sign-in (the
    /// address's stay: it may be guessing at other accounts).
    pub fn succeeded(&self, account: &str) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts.remove(account);
    }
}

/// The anonymous call rate of `public` routes per client address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublicRate {
    /// Calls a client address may make in a burst (the bucket's size).
    pub burst: u32,
    /// Calls per minute the bucket refills with.
    pub per_minute: u32,
}

impl Default for PublicRate {
    fn default() -> Self {
        PublicRate {
            burst: 30,
            per_minute: 120,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: OffsetDateTime,
}

/// A token bucket per client address for anonymous calls of `public`
/// routes.
#[derive(Debug)]
pub struct PublicLimiter {
    rate: PublicRate,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl PublicLimiter {
    /// A limiter with `rate` and every bucket full.
    pub fn new(rate: PublicRate) -> Self {
        PublicLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one call from `address`'s bucket at `now`; `Err` says when
    /// the next one will be there.
    pub fn take(&self, address: IpAddr, now: OffsetDateTime) -> Result<(), Duration> {
        let burst = f64::from(self.rate.burst.max(1));
        let per_sec = f64::from(self.rate.per_minute) / 60.0;
        let full = |b: &Bucket| {
            per_sec > 0.0 && b.tokens + (now - b.at).as_seconds_f64().max(0.0) * per_sec >= burst
        };
        let key = client_key(address);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&key) {
            bound(&mut buckets, full);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = (now - bucket.at).as_seconds_f64().max(0.0);
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        if per_sec <= 0.0 {
            return Err(Duration::from_secs(60));
        }
        let wait = ((1.0 - bucket.tokens) / per_sec).ceil().max(1.0);
        Err(Duration::from_secs_f64(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn limits() -> LoginLimits {
        LoginLimits {
            window: Duration::from_secs(600),
            per_account: 3,
            per_address: 5,
        }
    }

    #[test]
    fn an_account_is_refused_after_its_failures_until_the_oldest_leaves_the_window() {
        let t = LoginThrottle::new(limits());
        for i in 0..3 {
            assert!(t.check("acme/ann", Some(A), at(i * 10)).is_ok());
            t.failed("acme/ann", Some(A), at(i * 10));
        }
        // Three failures at 0, 10, 20: the first leaves at 600.
        assert_eq!(
            t.check("acme/ann", Some(B), at(30)),
            Err(Duration::from_secs(570))
        );
        assert_eq!(
            t.check("acme/ann", None, at(599)),
            Err(Duration::from_secs(1))
        );
        assert!(t.check("acme/ann", Some(B), at(600)).is_ok());
        // Another account from another address is untouched.
        assert!(t.check("acme/bob", Some(B), at(30)).is_ok());
    }

    #[test]
    fn an_address_is_refused_over_every_account_it_tries() {
        let t = LoginThrottle::new(limits());
        for i in 0..5 {
            t.failed(&format!("acme/user{i}"), Some(A), at(i));
        }
        assert!(t.check("acme/new", Some(A), at(10)).is_err());
        assert!(t.check("acme/new", Some(B), at(10)).is_ok());
        assert!(t.check("acme/new", Some(A), at(600)).is_ok());
    }

    #[test]
    fn success_forgets_the_account_but_not_the_address() {
        let t = LoginThrottle::new(limits());
        for i in 0..3 {
            t.failed("acme/ann", Some(A), at(i));
        }
        t.succeeded("acme/ann");
        assert!(t.check("acme/ann", Some(B), at(5)).is_ok());
        t.failed("acme/x", Some(A), at(6));
        t.failed("acme/y", Some(A), at(7));
        assert!(
            t.check("acme/z", Some(A), at(8)).is_err(),
            "5 failures from A"
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_prefix() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(one), client_key(same));
        assert_ne!(client_key(one), client_key(other));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(client_key(mapped), A);
        assert_eq!(
            client_key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn the_public_bucket_allows_a_burst_then_refills_at_its_rate() {
        let l = PublicLimiter::new(PublicRate {
            burst: 3,
            per_minute: 30,
        });
        for _ in 0..3 {
            assert!(l.take(A, at(0)).is_ok());
        }
        // 30 a minute: one every 2 s.
        assert_eq!(l.take(A, at(0)), Err(Duration::from_secs(2)));
        assert!(
            l.take(B, at(0)).is_ok(),
            "another address has its own bucket"
        );
        assert_eq!(l.take(A, at(1)), Err(Duration::from_secs(1)));
        assert!(l.take(A, at(2)).is_ok());
        assert!(l.take(A, at(2)).is_err());
        // A long pause refills only up to the burst.
        for _ in 0..3 {
            assert!(l.take(A, at(10_000)).is_ok());
        }
        assert!(l.take(A, at(10_000)).is_err());
    }

    #[test]
    fn the_tables_stay_bounded() {
        let t = LoginThrottle::new(limits());
        for i in 0..(MAX_TRACKED + 10) {
            t.failed(&format!("acme/{i}"), None, at(0));
        }
        assert!(t.accounts.lock().unwrap().len() <= MAX_TRACKED);
    }
}
