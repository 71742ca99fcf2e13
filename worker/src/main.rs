//! `weir-worker`: Weir's REAPI server binary.
//!
//! Without `--config`, `weir-worker --listen ADDR --root DIR` serves a cache
//! and executor with defaults; a YAML file (`--config`) sets roles, instance
//! names, TLS, tokens, the storage graph and the metrics address, and the
//! flags given beside it override its values. The bound gRPC address is
//! printed on stdout (`listening on ADDR`) once the server accepts
//! connections. SIGTERM and SIGINT drain in-flight requests and exit 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use weir_worker::server::config::{MetricsConfig, SandboxChoice};
use weir_worker::server::{Role, Server, WorkerConfig};

/// Weir's worker: a Remote Execution API v2 server (CAS, ByteStream, Action
/// Cache, Remote Asset, Capabilities, Execution).
#[derive(Debug, Parser)]
#[command(name = "weir-worker", version, after_help = "Every configuration key is documented in docs/worker.md.")]
struct Args {
    /// YAML configuration file: role (cache, executor, both), instance_names,
    /// tls, auth tokens (read_only / read_write), storage graph, stores,
    /// max_batch_size, metrics listen address, execution settings. Unknown
    /// keys are errors. Flags below override the file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,

    /// gRPC listen address (default 127.0.0.1:8980; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// State directory: CAS, cache database, action work trees.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Sandbox for actions: namespace (default, Linux namespaces) or host (no isolation).
    #[arg(long, value_enum)]
    sandbox: Option<SandboxChoice>,

    /// Which services run: cache, executor or both (default).
    #[arg(long, value_enum)]
    role: Option<Role>,

    /// Serve the HTTP status page and Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

impl Args {
    fn into_config(self) -> anyhow::Result<WorkerConfig> {
        let mut config = match &self.config {
            Some(path) => WorkerConfig::load(path)?,
            None => WorkerConfig::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(root) = self.root {
            config.root = Some(root);
        }
        if let Some(sandbox) = self.sandbox {
            config.execution.sandbox = sandbox;
        }
        if let Some(role) = self.role {
            config.role = role;
        }
        if let Some(listen) = self.metrics_listen {
            config.metrics = Some(MetricsConfig { listen });
        }
        Ok(config)
    }
}

/// Installs the SIGTERM and SIGINT handlers now (so a signal that arrives
/// right after start-up is never fatal) and returns a future that resolves
/// on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.into_config()?;
    let shutdown = shutdown_signal()?;
    let server = Server::bind(config).await.context("cannot start weir-worker")?;
    let addr = server.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    if let Some(metrics) = server.metrics_addr() {
        writeln!(stdout, "metrics on http://{metrics}/metrics")?;
    }
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%addr, "weir-worker serving");
    server.serve(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Both ring and aws-lc may be compiled in (feature unification): pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("weir-worker: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("weir-worker: {err:#}");
            ExitCode::from(2)
        }
    }
}
