//! [`EndpointSpec`]: where a REAPI server is and how to talk to it (URL, TLS,
//! bearer token, instance name), and [`EndpointSpec::connect`], which turns
//! it into a gRPC channel.
//!
//! Key decision: URLs use BuildStream's schemes — `grpc://` is plain HTTP/2,
//! `grpcs://` is TLS — and `http://`/`https://` are accepted as synonyms. The
//! bearer token is attached to every call by one interceptor, so no client
//! method has to remember it.

use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::RemoteError;

/// A channel with the endpoint's credentials attached to every request.
pub type AuthChannel = InterceptedService<Channel, BearerToken>;

/// How to reach one REAPI server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// The URL as given (`grpc://127.0.0.1:50051`).
    pub url: String,
    /// The REAPI instance name (often empty).
    pub instance_name: String,
    /// A bearer token sent as `authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// A PEM CA certificate for `grpcs://` servers with a private CA.
    pub ca_certificate: Option<PathBuf>,
}

/// Parsed form of an endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedUrl {
    tls: bool,
    authority: String,
}

fn parse_url(url: &str) -> Result<ParsedUrl, RemoteError> {
    let invalid = |reason: &str| RemoteError::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("expected SCHEME://HOST:PORT"))?;
    let tls = match scheme {
        "grpc" | "http" => false,
        "grpcs" | "https" => true,
        _ => return Err(invalid("the scheme must be grpc, grpcs, http or https")),
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(invalid("expected HOST:PORT after the scheme, with no path"));
    }
    let port = authority.rsplit_once(':').map(|(_, port)| port).ok_or_else(|| invalid("a port is required"))?;
    if port.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid("the port must be a number from 0 to 65535"));
    }
    Ok(ParsedUrl { tls, authority: authority.to_string() })
}

impl EndpointSpec {
    /// An endpoint with no instance name, token or private CA; the URL is checked.
    pub fn new(url: impl Into<String>) -> Result<Self, RemoteError> {
        let url = url.into();
        parse_url(&url)?;
        Ok(EndpointSpec { url, instance_name: String::new(), token: None, ca_certificate: None })
    }

    /// Opens a channel to the endpoint (lazily: the first RPC connects).
    pub fn connect(&self) -> Result<AuthChannel, RemoteError> {
        let parsed = parse_url(&self.url)?;
        let scheme = if parsed.tls { "https" } else { "http" };
        let invalid = |reason: String| RemoteError::InvalidUrl { url: self.url.clone(), reason };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", parsed.authority))
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if parsed.tls {
            let mut tls = ClientTlsConfig::new();
            if let Some(path) = &self.ca_certificate {
                let pem = std::fs::read(path).map_err(|source| RemoteError::Config { path: path.clone(), source })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls).map_err(|source| RemoteError::Connect { url: self.url.clone(), source })?;
        }
        let token = match &self.token {
            Some(token) => Some(
                AsciiMetadataValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| invalid("the token contains characters not allowed in a header".into()))?,
            ),
            None => None,
        };
        Ok(InterceptedService::new(endpoint.connect_lazy(), BearerToken { header: token }))
    }
}

/// Adds `authorization: Bearer TOKEN` to each request when a token is configured.
#[derive(Debug, Clone)]
pub struct BearerToken {
    header: Option<AsciiMetadataValue>,
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_buildstream_and_http_schemes() {
        assert_eq!(parse_url("grpc://127.0.0.1:50051").unwrap(), ParsedUrl { tls: false, authority: "127.0.0.1:50051".into() });
        assert!(parse_url("grpcs://cache.example:443/").unwrap().tls);
        assert!(!parse_url("http://[::1]:80").unwrap().tls);
        assert!(parse_url("https://h:1").unwrap().tls);
    }

    #[test]
    fn refuses_malformed_urls() {
        for bad in ["127.0.0.1:50051", "ftp://h:1", "grpc://", "grpc://host", "grpc://host:x", "grpc://h:1/path", "grpc://h:99999"] {
            assert!(matches!(parse_url(bad), Err(RemoteError::InvalidUrl { .. })), "{bad}");
        }
    }

    #[tokio::test]
    async fn token_becomes_an_authorization_header() {
        use tonic::service::Interceptor;
        let mut spec = EndpointSpec::new("grpc://127.0.0.1:1").unwrap();
        spec.token = Some("s3cret".into());
        let header = AsciiMetadataValue::try_from("Bearer s3cret").unwrap();
        let mut interceptor = BearerToken { header: Some(header) };
        let request = interceptor.call(tonic::Request::new(())).unwrap();
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer s3cret");
        assert!(spec.connect().is_ok());
        spec.token = Some("bad\nvalue".into());
        assert!(spec.connect().is_err());
    }
}
