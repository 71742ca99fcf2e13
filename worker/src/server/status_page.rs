//! The HTTP side of the worker (axum): `/` a small HTML status page,
//! `/metrics` the Prometheus text exposition, `/healthz` a liveness probe.
//!
//! Key decision: a separate listener (`metrics.listen`), never the gRPC
//! port, and no authentication — bind it to an internal address.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

use super::ServerMetrics;

/// What the status page shows besides the metrics.
pub struct StatusInfo {
    /// The gRPC address.
    pub grpc_addr: String,
    /// The role's name.
    pub role: String,
    /// The instance names served.
    pub instances: Vec<String>,
    /// Whether execution runs.
    pub exec_enabled: bool,
    /// The metrics.
    pub metrics: Arc<ServerMetrics>,
}

/// The router serving the status page and metrics.
pub fn router(info: Arc<StatusInfo>) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(info)
}

async fn metrics(State(info): State<Arc<StatusInfo>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], info.metrics.render_prometheus())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn status(State(info): State<Arc<StatusInfo>>) -> Html<String> {
    let m = &info.metrics;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let (queued, running, completed) = m.execution_reading();
    let mut page = String::from("<!doctype html><html><head><title>weir-worker</title></head><body><h1>weir-worker</h1><table>");
    let instances: Vec<String> = info.instances.iter().map(|i| format!("{:?}", i)).collect();
    let rows = [
        ("gRPC address", escape(&info.grpc_addr)),
        ("role", escape(&info.role)),
        ("instance names", escape(&instances.join(", "))),
        ("execution", if info.exec_enabled { "enabled".into() } else { "disabled".into() }),
        ("uptime", format!("{} s", m.started.elapsed().as_secs())),
        ("CAS hit ratio (FindMissingBlobs)", format!("{:.1}%", 100.0 * m.cas_hit_ratio())),
        ("Action Cache hit ratio", format!("{:.1}%", 100.0 * m.ac_hit_ratio())),
        ("CAS bytes stored", m.cas_stored_bytes().map_or_else(|| "unknown".into(), |b| b.to_string())),
        ("bytes uploaded", load(&m.bytes_uploaded).to_string()),
        ("bytes downloaded", load(&m.bytes_downloaded).to_string()),
        ("queued actions", queued.to_string()),
        ("running actions", running.to_string()),
        ("completed actions", completed.to_string()),
    ];
    for (name, value) in rows {
        let _ = write!(page, "<tr><th align=left>{name}</th><td>{value}</td></tr>");
    }
    page.push_str("</table><p><a href=\"/metrics\">metrics</a></p></body></html>\n");
    Html(page)
}
