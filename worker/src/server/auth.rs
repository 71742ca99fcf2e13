//! Bearer-token authentication: [`Auth`] decides, [`AuthLayer`] enforces it
//! in front of every gRPC service (including execution's).
//!
//! Key decision: the decision is made on the gRPC method path, before any
//! handler runs, from one list of the methods that write
//! ([`WRITE_METHODS`]); every other method only reads. Tokens are compared as
//! SHA-256 hashes with `subtle`'s constant-time equality, so neither the
//! content nor the length of a token leaks through timing.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::config::{Access, AnonymousAccess, AuthConfig, ConfigError};

/// gRPC methods that change server state and need a read-write token.
pub const WRITE_METHODS: &[&str] = &[
    "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs",
    "/build.bazel.remote.execution.v2.ContentAddressableStorage/SpliceBlob",
    "/build.bazel.remote.execution.v2.ContentAddressableStorage/RegisterChunkMapping",
    "/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult",
    "/build.bazel.remote.execution.v2.Execution/Execute",
    "/google.bytestream.ByteStream/Write",
    "/build.bazel.remote.asset.v1.Push/PushBlob",
    "/build.bazel.remote.asset.v1.Push/PushDirectory",
    "/google.longrunning.Operations/CancelOperation",
    "/google.longrunning.Operations/DeleteOperation",
];

/// The access check, built from the `auth:` configuration.
#[derive(Clone, Default)]
pub struct Auth {
    tokens: Arc<Vec<([u8; 32], Access)>>,
    anonymous: AnonymousAccess,
}

fn hash(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Auth {
    /// Loads the tokens (reading `token_file`s relative to `root`).
    pub fn from_config(config: &AuthConfig, root: &Path) -> Result<Self, ConfigError> {
        let mut tokens = Vec::new();
        for token in &config.tokens {
            let text = match (&token.token, &token.token_file) {
                (Some(text), None) => text.clone(),
                (None, Some(file)) => {
                    let path = root.join(file);
                    std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path, source })?
                }
                _ => return Err(ConfigError::Invalid("each token needs exactly one of `token` and `token_file`".into())),
            };
            let text = text.trim();
            if text.is_empty() {
                return Err(ConfigError::Invalid("a configured token is empty".into()));
            }
            tokens.push((hash(text.as_bytes()), token.access));
        }
        Ok(Auth { tokens: Arc::new(tokens), anonymous: config.anonymous })
    }

    /// Whether any token is configured (otherwise everything is allowed).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The access the `authorization` header value grants, if any.
    fn access_of(&self, header: Option<&[u8]>) -> Option<Access> {
        let Some(header) = header else {
            return match self.anonymous {
                AnonymousAccess::ReadOnly => Some(Access::ReadOnly),
                AnonymousAccess::None => None,
            };
        };
        let token = header.strip_prefix(b"Bearer ").or_else(|| header.strip_prefix(b"bearer "))?;
        let given = hash(token);
        let mut granted = None;
        // Look at every token, so the time taken does not depend on which matched.
        for (expected, access) in self.tokens.iter() {
            if bool::from(expected.ct_eq(&given)) {
                granted = Some(*access);
            }
        }
        granted
    }

    /// Decides whether a call of `method` (a gRPC path) carrying `header` may
    /// proceed.
    pub fn check(&self, method: &str, header: Option<&[u8]>) -> Result<(), tonic::Status> {
        if !self.enabled() {
            return Ok(());
        }
        let writes = WRITE_METHODS.contains(&method);
        match self.access_of(header) {
            None if header.is_some() => Err(tonic::Status::unauthenticated("invalid bearer token")),
            None => Err(tonic::Status::unauthenticated("a bearer token is required")),
            Some(Access::ReadOnly) if writes => {
                Err(tonic::Status::permission_denied("this token may only read; the method writes"))
            }
            Some(_) => Ok(()),
        }
    }
}

/// A tower layer applying [`Auth`] to every request.
#[derive(Clone)]
pub struct AuthLayer(pub Auth);

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, auth: self.0.clone() }
    }
}

/// The service produced by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Auth,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for AuthService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let header = request.headers().get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
        match self.auth.check(request.uri().path(), header) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::TokenConfig;

    fn auth(anonymous: AnonymousAccess) -> Auth {
        let config = AuthConfig {
            tokens: vec![
                TokenConfig { token: Some("writer".into()), token_file: None, access: Access::ReadWrite },
                TokenConfig { token: Some("reader".into()), token_file: None, access: Access::ReadOnly },
            ],
            anonymous,
        };
        Auth::from_config(&config, Path::new("/")).unwrap()
    }

    const READ: &str = "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs";
    const WRITE: &str = "/google.bytestream.ByteStream/Write";

    #[test]
    fn scopes_are_enforced() {
        let auth = auth(AnonymousAccess::None);
        assert!(auth.check(WRITE, Some(b"Bearer writer")).is_ok());
        assert!(auth.check(READ, Some(b"Bearer reader")).is_ok());
        assert_eq!(auth.check(WRITE, Some(b"Bearer reader")).unwrap_err().code(), tonic::Code::PermissionDenied);
        assert_eq!(auth.check(READ, Some(b"Bearer writex")).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(auth.check(READ, Some(b"writer")).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(auth.check(READ, None).unwrap_err().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn anonymous_read_only_and_open_servers() {
        let auth = auth(AnonymousAccess::ReadOnly);
        assert!(auth.check(READ, None).is_ok());
        assert_eq!(auth.check(WRITE, None).unwrap_err().code(), tonic::Code::PermissionDenied);
        assert!(Auth::default().check(WRITE, None).is_ok());
    }
}
