//! The endpoint under load: a `host:port` that must be on this machine.
//!
//! Key decision: the loopback check happens once, here, before any channel
//! exists, so no measurement can ever send traffic elsewhere.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};
use tonic::transport::{Channel, Endpoint};

/// A validated loopback endpoint.
pub struct Target {
    addr: SocketAddr,
}

impl Target {
    /// Parses `host:port` and resolves it; refuses any non-loopback address.
    pub fn parse(text: &str) -> anyhow::Result<Target> {
        let addrs: Vec<SocketAddr> =
            text.to_socket_addrs().with_context(|| format!("cannot resolve target {text:?}"))?.collect();
        let Some(addr) = addrs.first().copied() else { bail!("target {text:?} resolves to no address") };
        if let Some(bad) = addrs.iter().find(|a| !is_loopback(a.ip())) {
            bail!("refusing non-loopback target {text:?} ({bad})");
        }
        Ok(Target { addr })
    }

    /// Opens one HTTP/2 channel with large windows and frames (as a bulk
    /// client would; the 16 KiB default frame would cap Read throughput).
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))?
            .initial_connection_window_size(Some(32 << 20))
            .initial_stream_window_size(Some(16 << 20))
            .max_frame_size(Some((1 << 24) - 1))
            .tcp_nodelay(true);
        endpoint.connect().await.with_context(|| format!("cannot connect to {}", self.addr))
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_accepted() {
        for ok in ["127.0.0.1:1", "127.3.2.1:50051", "[::1]:9", "localhost:80"] {
            assert!(Target::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn other_targets_are_refused() {
        for bad in ["10.0.0.1:1", "192.168.1.1:80", "8.8.8.8:53", "[2001:db8::1]:1", "0.0.0.0:1"] {
            assert!(Target::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
