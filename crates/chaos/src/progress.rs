//! Progress lines for the person watching a chaos run, with the time since the run began.

use std::time::{Duration, Instant};

/// Prints progress lines; every step of the run (bringing the rig up, the faults) says what it
/// does through one of these, so that the times line up.
#[derive(Debug)]
pub struct Progress(Instant);

impl Default for Progress {
    fn default() -> Progress {
        Progress(Instant::now())
    }
}

impl Progress {
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    pub fn line(&self, what: impl std::fmt::Display) {
        println!("chaos [{:6.1}s] {what}", self.0.elapsed().as_secs_f64());
    }
}
