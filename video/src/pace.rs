//! Connection pacing. A worker starting (or a network coming back to) hundreds of cameras
//! would open hundreds of RTSP sessions in the same instant; NVRs and the RTSP servers in
//! front of cameras answer such bursts with timeouts, and every camera then shows offline
//! for a backoff. Connects are spaced `1 / video.connects_per_s` apart across the worker, so a
//! single camera still connects at once.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct Pacer {
    next: Mutex<Instant>,
    gap: Duration,
}

impl Pacer {
    /// `per_s` connects a second; 0 (or less) = no pacing.
    pub(crate) fn new(per_s: f64) -> Self {
        let gap = match per_s > 0.0 {
            true => Duration::from_secs_f64(1.0 / per_s),
            false => Duration::ZERO,
        };
        Self {
            next: Mutex::new(Instant::now()),
            gap,
        }
    }

    /// Waits for this connect's turn.
    pub(crate) async fn turn(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + self.gap;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_spread_and_a_lone_connect_waits_for_nothing() {
        let pacer = Pacer::new(50.0);
        let start = Instant::now();
        pacer.turn().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "the first goes at once");
        for _ in 0..99 {
            pacer.turn().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(99 * 20),
            "100 connects over ~2 s"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        let later = Instant::now();
        pacer.turn().await;
        assert_eq!(
            later.elapsed(),
            Duration::ZERO,
            "after a quiet spell, at once again"
        );
        let unpaced = Pacer::new(0.0);
        for _ in 0..10 {
            unpaced.turn().await;
        }
        assert_eq!(later.elapsed(), Duration::ZERO);
    }
}
