//! Client-side rate limits per API family, below the published EC2 refill rates, so a large
//! distribution never spends its time in throttling retries. (Retries with backoff on
//! throttling still come from the SDK's standard retry strategy.)

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// A token bucket: `rate` calls per second, bursting to `burst`.
#[derive(Clone)]
pub struct Bucket {
    state: Arc<Mutex<(f64, Instant)>>,
    rate: f64,
    burst: f64,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64) -> Bucket {
        Bucket { state: Arc::new(Mutex::new((burst, Instant::now()))), rate, burst }
    }

    /// Waits until a call may be made.
    pub async fn take(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = Instant::now();
                let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
                s.0 = (s.0 + refill).min(self.burst);
                s.1 = now;
                if s.0 >= 1.0 {
                    s.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - s.0) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// One bucket per API family, for one account in one region (see [`crate::Aws::limits`]).
#[derive(Clone)]
pub struct Limits {
    /// CopyImage refills at about 1 per second.
    pub copy_image: Bucket,
    /// ModifyImageAttribute / ModifySnapshotAttribute / CreateTags.
    pub mutate: Bucket,
    /// Describe* calls.
    pub describe: Bucket,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { copy_image: Bucket::new(1.0, 5.0), mutate: Bucket::new(5.0, 20.0), describe: Bucket::new(20.0, 50.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_spaces_calls_beyond_its_burst() {
        let b = Bucket::new(2.0, 2.0);
        let start = Instant::now();
        for _ in 0..6 {
            b.take().await;
        }
        // 2 from the burst, then 4 more at 2 per second.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(1990) && elapsed < Duration::from_millis(2100), "{elapsed:?}");
    }
}
