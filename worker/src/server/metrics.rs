//! [`ServerMetrics`]: the counters and gauges the status page and the
//! Prometheus endpoint report — CAS and Action Cache hit ratios, bytes moved,
//! and the execution gauges (queue depth, running actions) that the
//! execution service publishes through [`ExecutionGauges`].
//!
//! Key decision: plain relaxed atomics rendered by hand in the Prometheus
//! text format; no metrics crate, nothing global — one value is created at
//! start-up and shared by the services.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::store::StoreMetrics;

/// Queue depth and running actions, read from the execution service when
/// metrics are rendered.
pub trait ExecutionGauges: Send + Sync {
    /// Actions waiting for a slot.
    fn queued(&self) -> u64;
    /// Actions running now.
    fn running(&self) -> u64;
    /// Actions finished since start-up.
    fn completed(&self) -> u64;
}

impl ExecutionGauges for crate::execution::executor::Executor {
    fn queued(&self) -> u64 {
        self.queue_depth() as u64
    }

    fn running(&self) -> u64 {
        crate::execution::executor::Executor::running(self) as u64
    }

    fn completed(&self) -> u64 {
        crate::execution::executor::Executor::completed(self) as u64
    }
}

/// Execution gauges read all at once: (queued, running, completed).
pub type GaugeReading = (u64, u64, u64);

/// Everything the server counts.
pub struct ServerMetrics {
    /// When the server started.
    pub started: Instant,
    /// Digests asked about in FindMissingBlobs.
    pub cas_queried: AtomicU64,
    /// Of those, the ones present.
    pub cas_present: AtomicU64,
    /// GetActionResult hits.
    pub ac_hits: AtomicU64,
    /// GetActionResult misses.
    pub ac_misses: AtomicU64,
    /// Bytes accepted by BatchUpdateBlobs and ByteStream Write.
    pub bytes_uploaded: AtomicU64,
    /// Bytes served by BatchReadBlobs and ByteStream Read.
    pub bytes_downloaded: AtomicU64,
    /// Uploads refused because the content did not match the digest.
    pub digest_mismatches: AtomicU64,
    /// Execution gauges (none when execution is off).
    pub execution: Option<Arc<dyn ExecutionGauges>>,
    /// The per-layer store counters.
    pub store: StoreMetrics,
    /// The CAS, asked for the bytes it holds.
    cas: Option<crate::store::Store>,
}

impl ServerMetrics {
    /// Fresh counters sharing the store graph's registry and reading the
    /// execution gauges, if execution runs.
    pub fn new(store: StoreMetrics, cas: Option<crate::store::Store>, execution: Option<Arc<dyn ExecutionGauges>>) -> Self {
        ServerMetrics {
            started: Instant::now(),
            cas_queried: AtomicU64::new(0),
            cas_present: AtomicU64::new(0),
            ac_hits: AtomicU64::new(0),
            ac_misses: AtomicU64::new(0),
            bytes_uploaded: AtomicU64::new(0),
            bytes_downloaded: AtomicU64::new(0),
            digest_mismatches: AtomicU64::new(0),
            execution,
            store,
            cas,
        }
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Fraction of FindMissingBlobs digests that were present (0 when none asked).
    pub fn cas_hit_ratio(&self) -> f64 {
        ratio(self.cas_present.load(Ordering::Relaxed), self.cas_queried.load(Ordering::Relaxed))
    }

    /// Fraction of GetActionResult calls that hit.
    pub fn ac_hit_ratio(&self) -> f64 {
        let hits = self.ac_hits.load(Ordering::Relaxed);
        ratio(hits, hits + self.ac_misses.load(Ordering::Relaxed))
    }

    /// (queued, running, completed) actions; zeros when execution is off.
    pub fn execution_reading(&self) -> GaugeReading {
        self.execution.as_ref().map_or((0, 0, 0), |g| (g.queued(), g.running(), g.completed()))
    }

    /// Bytes of blob content the CAS holds, when its store keeps count.
    pub fn cas_stored_bytes(&self) -> Option<u64> {
        self.cas.as_ref().and_then(|cas| cas.stored_bytes())
    }

    /// The Prometheus text exposition of every metric.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (queued, running, completed) = self.execution_reading();
        let rows: [(&str, &str, &str, String); 13] = [
            ("weir_uptime_seconds", "gauge", "Seconds since start-up", self.started.elapsed().as_secs().to_string()),
            ("weir_cas_queried_total", "counter", "Digests asked about in FindMissingBlobs", load(&self.cas_queried).to_string()),
            ("weir_cas_present_total", "counter", "Digests found present in FindMissingBlobs", load(&self.cas_present).to_string()),
            ("weir_cas_hit_ratio", "gauge", "Present / queried in FindMissingBlobs", format!("{:.6}", self.cas_hit_ratio())),
            ("weir_ac_hits_total", "counter", "GetActionResult hits", load(&self.ac_hits).to_string()),
            ("weir_ac_misses_total", "counter", "GetActionResult misses", load(&self.ac_misses).to_string()),
            ("weir_ac_hit_ratio", "gauge", "Action Cache hit ratio", format!("{:.6}", self.ac_hit_ratio())),
            ("weir_cas_bytes_uploaded_total", "counter", "Bytes accepted into the CAS", load(&self.bytes_uploaded).to_string()),
            ("weir_cas_bytes_downloaded_total", "counter", "Bytes served from the CAS", load(&self.bytes_downloaded).to_string()),
            ("weir_cas_digest_mismatches_total", "counter", "Uploads refused for content not matching the digest", load(&self.digest_mismatches).to_string()),
            ("weir_execution_queue_depth", "gauge", "Actions waiting for a slot", queued.to_string()),
            ("weir_execution_running_actions", "gauge", "Actions running", running.to_string()),
            ("weir_execution_completed_total", "counter", "Actions finished", completed.to_string()),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        if let Some(bytes) = self.cas_stored_bytes() {
            let name = "weir_cas_stored_bytes";
            let _ = writeln!(out, "# HELP {name} Bytes of blob content in the CAS\n# TYPE {name} gauge\n{name} {bytes}");
        }
        self.store.render_prometheus(&mut out);
        out
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl ExecutionGauges for Fixed {
        fn queued(&self) -> u64 {
            2
        }
        fn running(&self) -> u64 {
            1
        }
        fn completed(&self) -> u64 {
            9
        }
    }

    #[test]
    fn renders_hit_ratios() {
        let metrics = ServerMetrics::new(StoreMetrics::default(), None, Some(Arc::new(Fixed)));
        ServerMetrics::add(&metrics.cas_queried, 4);
        ServerMetrics::add(&metrics.cas_present, 3);
        let text = metrics.render_prometheus();
        assert!(text.contains("weir_cas_hit_ratio 0.750000"), "{text}");
        assert!(text.contains("weir_execution_queue_depth 2"), "{text}");
        assert!(text.contains("weir_execution_running_actions 1"), "{text}");
        assert!(text.contains("# TYPE weir_ac_hits_total counter"));
    }
}
