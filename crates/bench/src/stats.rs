//! Medians and quantiles. Benchmarks on a shared 2-core machine are noisy: a single run proves
//! little, so every figure is the median of several repetitions, and every target is a ratio
//! against a baseline measured in the same run.

/// The median of `v` (the upper one of an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    quantile_of(v, 0.5)
}

/// The `q`-quantile of `v` (nearest rank); NaN when empty.
pub fn quantile_of(v: &[f64], q: f64) -> f64 {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile(&sorted, q)
}

/// The `q`-quantile of an already sorted slice (nearest rank); NaN when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Peak resident memory of this process in bytes (`VmHWM` in `/proc/self/status`), where the
/// kernel tells it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time this process has used so far, user and system, in seconds: utime and stime of
/// `/proc/self/stat`, counted in the kernel's 10 ms ticks (`USER_HZ`, 100 on Linux), where
/// the kernel tells it. Threads that have ended are still counted.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 14, utime
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn this_process_counts_the_cpu_it_spends() {
        use std::time::{Duration, Instant};
        let (before, start) = (process_cpu_seconds().expect("a CPU time"), Instant::now());
        // Spin until the count moves by a tenth of a second: on a loaded machine that may take
        // longer than a tenth of a second, never ten seconds.
        let mut spent = 0.0;
        let mut x = 0u64;
        while spent < 0.1 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "CPU time stuck at {spent} s"
            );
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            spent = process_cpu_seconds().expect("a CPU time") - before;
        }
        // No more than every core for the time that passed (plus a tick): a count in the wrong
        // unit would be far off.
        let wall = start.elapsed().as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        assert!(spent <= wall * cores + 0.02, "{spent} s of CPU in {wall} s");
    }

    #[test]
    fn this_process_has_a_peak() {
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
