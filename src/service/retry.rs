//! Retry policy for version conflicts and throttling: bounded attempts and a time budget, with jittered
//! exponential backoff.

use std::time::Duration;

/// How the bus retries a message whose commit lost a version race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest a message may take, retries included: no retry starts that could not end within
    /// it (judged by the slowest attempt so far). Then the last error is the answer.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 16,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(250),
            budget: Duration::from_secs(3),
        }
    }
}

impl RetryPolicy {
    /// Whether a retry after `wait` can still end within the budget, given the time already spent
    /// and the slowest attempt so far.
    pub fn fits(&self, spent: Duration, wait: Duration, slowest_attempt: Duration) -> bool {
        spent + wait + slowest_attempt <= self.budget
    }

    /// The wait after failed attempt number `attempt` (1-based): "full jitter", uniform in
    /// `[0, min(max_delay, base_delay * 2^(attempt-1))]`, so racing writers spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = exponential_backoff(self.base_delay, self.max_delay, attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// The wait after failed attempt number `attempt` (1-based): `base * 2^(attempt-1)`, at most `max`.
/// The one backoff curve of the service (the bus's retries jitter it; the local consumers' use it).
pub fn exponential_backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << exponent).min(max)
}
