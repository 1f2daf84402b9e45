//! Prometheus text metrics: request counts by route and status, token counters, time-to-first-token
//! and inter-token latency histograms, queue depth, active sequences and KV cache bytes.
use autodidact_engine::EngineStats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub struct Histogram {
    /// Upper bounds in seconds.
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if s <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {n}");
    }
}

const TTFT_BOUNDS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const ITL_BOUNDS: &[f64] = &[0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0];

pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub ttft: Histogram,
    pub itl: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            ttft: Histogram::new(TTFT_BOUNDS),
            itl: Histogram::new(ITL_BOUNDS),
        }
    }
}

impl Metrics {
    pub fn count_request(&self, route: &str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), status)).or_default() += 1;
        }
    }

    /// Records a token's latency: time to first token when `last` is empty, else since `last`.
    pub fn observe_token(&self, last: &mut Option<std::time::Instant>, start: std::time::Instant) {
        let now = std::time::Instant::now();
        match last {
            None => self.ttft.observe(now - start),
            Some(t) => self.itl.observe(now - *t),
        }
        *last = Some(now);
    }

    pub fn render(&self, engine: &EngineStats) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP autodidact_requests_total HTTP requests by route and status.\n# TYPE autodidact_requests_total counter"
        );
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "autodidact_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let counters = [
            (
                "autodidact_prompt_tokens_total",
                "Prompt tokens of finished requests.",
                engine.prompt_tokens.load(Ordering::Relaxed),
            ),
            (
                "autodidact_prompt_tokens_cached_total",
                "Prompt tokens served from a reused cache prefix.",
                engine.cached_prompt_tokens.load(Ordering::Relaxed),
            ),
            (
                "autodidact_completion_tokens_total",
                "Generated tokens.",
                engine.completion_tokens.load(Ordering::Relaxed),
            ),
            (
                "autodidact_engine_steps_total",
                "Forward passes of the batch.",
                engine.steps.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let gauges = [
            (
                "autodidact_queue_depth",
                "Requests waiting for a slot.",
                engine.queued.load(Ordering::Relaxed),
            ),
            (
                "autodidact_active_sequences",
                "Sequences in the running batch.",
                engine.active.load(Ordering::Relaxed),
            ),
            (
                "autodidact_kv_cache_bytes",
                "KV cache memory held (running and parked).",
                engine.kv_bytes.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        self.ttft.render(
            &mut out,
            "autodidact_time_to_first_token_seconds",
            "From accepting a request to its first token.",
        );
        self.itl.render(
            &mut out,
            "autodidact_inter_token_latency_seconds",
            "Between consecutive tokens of one sequence.",
        );
        out
    }
}
