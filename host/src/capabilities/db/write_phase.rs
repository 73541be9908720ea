//! The write-phase budget of a background call (a job, an `on-event`
//! delivery).
//!
//! A background call's transaction is deferred: it takes the tenant
//! database's one write lock at its first write and holds it until it
//! commits. A call may run for up to its own deadline (a job's is 30 s),
//! so a call that wrote early would hold the lock — and make every writing
//! request of the tenant wait and fail — for the rest of that deadline. A
//! [`WritePhase`] bounds that: from the call's first write it has `budget`
//! left, after which the runtime stops it (the epoch callback traps a
//! running guest, the outer timeout drops one blocked in a host or WASI
//! call, and the database's progress handler interrupts a statement) and
//! its transaction rolls back, as at its deadline.
//!
//! The handle is shared: [`super::ModuleDb`] starts the phase when a
//! statement (or the host's own bookkeeping) leaves the transaction
//! writing; the runtime reads it on every epoch tick and waits on it in
//! its outer timeout.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The write-phase budget of one call, and when its phase ends once begun.
#[derive(Debug, Clone)]
pub struct WritePhase(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    budget: Duration,
    /// Set once, at the call's first write.
    ends_at: OnceLock<Instant>,
    /// Woken when the phase begins, so a waiter can fix its timer.
    began: Notify,
}

impl WritePhase {
    /// A phase of `budget` from the first write, not begun yet.
    pub fn new(budget: Duration) -> Self {
        WritePhase(Arc::new(Inner {
            budget,
            ends_at: OnceLock::new(),
            began: Notify::new(),
        }))
    }

    /// The budget from the first write.
    pub fn budget(&self) -> Duration {
        self.0.budget
    }

    /// Begins the phase now, if it has not begun; answers when it ends.
    pub fn begin(&self) -> Instant {
        let mut first = false;
        let ends_at = *self.0.ends_at.get_or_init(|| {
            first = true;
            Instant::now() + self.0.budget
        });
        if first {
            self.0.began.notify_waiters();
        }
        ends_at
    }

    /// When the phase ends, if it has begun.
    pub fn ends_at(&self) -> Option<Instant> {
        self.0.ends_at.get().copied()
    }

    /// Whether the phase has begun and is over at `now`.
    pub fn is_over(&self, now: Instant) -> bool {
        self.ends_at().is_some_and(|end| now >= end)
    }

    /// Completes `grace` after the phase ends: never, if it never begins.
    pub async fn over(&self, grace: Duration) {
        loop {
            let began = self.0.began.notified();
            tokio::pin!(began);
            // Registered before the check, so a `begin` in between wakes it.
            began.as_mut().enable();
            if let Some(end) = self.ends_at() {
                tokio::time::sleep_until(tokio::time::Instant::from_std(end + grace)).await;
                return;
            }
            began.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_not_begun_is_never_over() {
        let phase = WritePhase::new(Duration::ZERO);
        assert!(!phase.is_over(Instant::now() + Duration::from_secs(3600)));
        assert_eq!(phase.ends_at(), None);
    }

    #[test]
    fn the_phase_ends_its_budget_after_the_first_write_only() {
        let phase = WritePhase::new(Duration::from_millis(200));
        let first = phase.begin();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(phase.begin(), first, "a later write does not extend it");
        assert!(!phase.is_over(first - Duration::from_millis(1)));
        assert!(phase.is_over(first));
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_a_phase_begun_after_it_started_is_over() {
        let phase = WritePhase::new(Duration::from_millis(30));
        let waiter = tokio::spawn({
            let phase = phase.clone();
            async move { phase.over(Duration::from_millis(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "not begun: never over");
        let began = Instant::now();
        phase.begin();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
        assert!(began.elapsed() >= Duration::from_millis(40));
    }
}
