//! [`Downloader`]: one URL's content into a local file, hashed on the way.
//!
//! Key decisions: `file://` URLs are copied from the local path (reqwest
//! does not read them); `http://` and `https://` go through one reqwest
//! client (rustls, system roots) built on first use, with BuildStream's
//! 10-minute read timeout. The sha256 is computed while writing, so a file
//! is read once, and a body shorter than its `Content-Length` is a failure,
//! not a silently truncated source. Other schemes are refused by name.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

/// Time allowed to connect to a server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the next bytes of a response (BuildStream's socket timeout).
const READ_TIMEOUT: Duration = Duration::from_secs(600);

/// What a download produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes written.
    pub bytes: u64,
    /// Their sha256, lower-case hex.
    pub sha256: String,
    /// Wall time of the download.
    pub elapsed: Duration,
}

/// Downloads URLs into files.
#[derive(Debug, Default)]
pub struct Downloader {
    client: OnceLock<Result<reqwest::Client, String>>,
}

impl Downloader {
    /// A downloader; the HTTP client is built when first needed.
    pub fn new() -> Downloader {
        Downloader::default()
    }

    /// Writes the content of `url` into `dest` (truncated first); the error
    /// is a readable reason.
    pub async fn download(&self, url: &str, dest: &Path) -> Result<Downloaded, String> {
        let started = Instant::now();
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
        let (bytes, sha256) = match parsed.scheme() {
            "file" => {
                let source = parsed.to_file_path().map_err(|()| format!("'{url}' is not a local file URL"))?;
                let dest = dest.to_path_buf();
                tokio::task::spawn_blocking(move || copy_hashing(&source, &dest))
                    .await
                    .map_err(|e| format!("copy task failed: {e}"))??
            }
            "http" | "https" => self.http(parsed, dest).await?,
            other => return Err(format!("URL scheme '{other}' is not supported (file, http and https are)")),
        };
        Ok(Downloaded { bytes, sha256, elapsed: started.elapsed() })
    }

    fn client(&self) -> Result<&reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("cannot set up the HTTP client: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn http(&self, url: reqwest::Url, dest: &Path) -> Result<(u64, String), String> {
        let mut response = self.client()?.get(url).send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let expected = response.content_length();
        let mut file = tokio::fs::File::create(dest).await.map_err(|e| format!("{}: {e}", dest.display()))?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            hasher.update(&chunk);
            bytes += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(|e| format!("{}: {e}", dest.display()))?;
        }
        file.flush().await.map_err(|e| format!("{}: {e}", dest.display()))?;
        if let Some(expected) = expected.filter(|&n| n != bytes) {
            return Err(format!("the server announced {expected} bytes but sent {bytes}"));
        }
        Ok((bytes, hex::encode(hasher.finalize())))
    }
}

/// Copies `source` to `dest`, returning the size and sha256.
fn copy_hashing(source: &PathBuf, dest: &PathBuf) -> Result<(u64, String), String> {
    let mut input = std::fs::File::open(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let mut output = std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = input.read(&mut buffer).map_err(|e| format!("{}: {e}", source.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output.write_all(&buffer[..n]).map_err(|e| format!("{}: {e}", dest.display()))?;
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// A reqwest error with its causes (the top level alone says little).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_urls_are_copied_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("a file.txt");
        std::fs::write(&source, b"hello\n").unwrap();
        let url = reqwest::Url::from_file_path(&source).unwrap().to_string();
        assert!(url.contains("%20"), "{url}");
        let dest = dir.path().join("out");
        let downloaded = Downloader::new().download(&url, &dest).await.unwrap();
        assert_eq!(downloaded.bytes, 6);
        assert_eq!(downloaded.sha256, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello\n");
    }

    #[tokio::test]
    async fn unsupported_schemes_and_missing_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let err = Downloader::new().download("ftp://127.0.0.1/x", &dest).await.unwrap_err();
        assert!(err.contains("'ftp'"), "{err}");
        let err = Downloader::new().download("file:///nonexistent/weir/file", &dest).await.unwrap_err();
        assert!(err.contains("/nonexistent/weir/file"), "{err}");
        assert!(Downloader::new().download("not a url", &dest).await.is_err());
    }
}
