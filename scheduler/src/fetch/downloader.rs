//! [`Downloader`]: one URL's content into a local file, hashed on the way.
//!
//! Key decisions: `file://` URLs are copied from the local path (reqwest
//! does not read them); `http://` and `https://` go through one reqwest
//! client (rustls, system roots) built on first use, with BuildStream's
//! 10-minute read timeout. The sha256 is computed while writing, so a file
//! is read once, and a body shorter than its `Content-Length` is a failure,
//! not a silently truncated source. Transient HTTP failures (connection
//! errors, timeouts, a cut-off body, 408, 429 and 5xx answers) are tried
//! again, [`HTTP_ATTEMPTS`] times in all with a growing pause; other answers
//! fail at once. Other schemes are refused by name.

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
/// Attempts at an HTTP download before a transient failure is reported.
pub const HTTP_ATTEMPTS: u32 = 3;
/// Pause before the second attempt; it grows linearly.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Why one HTTP attempt failed, and whether another may succeed.
struct HttpFailure {
    reason: String,
    transient: bool,
}

impl HttpFailure {
    fn transient(reason: String) -> Self {
        HttpFailure { reason, transient: true }
    }

    fn fatal(reason: String) -> Self {
        HttpFailure { reason, transient: false }
    }
}

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

    /// An HTTP(S) download, tried again after transient failures.
    async fn http(&self, url: reqwest::Url, dest: &Path) -> Result<(u64, String), String> {
        let client = self.client()?;
        let mut attempt = 1;
        loop {
            match http_once(client, url.clone(), dest).await {
                Ok(done) => return Ok(done),
                Err(failure) if failure.transient && attempt < HTTP_ATTEMPTS => {
                    tracing::warn!(%url, attempt, reason = %failure.reason, "download failed; trying again");
                    tokio::time::sleep(RETRY_PAUSE * attempt).await;
                    attempt += 1;
                }
                Err(failure) if attempt > 1 => return Err(format!("{} (attempt {attempt} of {HTTP_ATTEMPTS})", failure.reason)),
                Err(failure) => return Err(failure.reason),
            }
        }
    }
}

/// One HTTP(S) attempt: the body into `dest` (truncated first), hashed.
async fn http_once(client: &reqwest::Client, url: reqwest::Url, dest: &Path) -> Result<(u64, String), HttpFailure> {
    let mut response = client.get(url).send().await.map_err(|e| HttpFailure::transient(describe(&e)))?;
    let status = response.status();
    if !status.is_success() {
        let reason = format!("HTTP {status}");
        let transient = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
        return Err(HttpFailure { reason, transient });
    }
    let expected = response.content_length();
    let local = |e: std::io::Error| HttpFailure::fatal(format!("{}: {e}", dest.display()));
    let mut file = tokio::fs::File::create(dest).await.map_err(local)?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(|e| HttpFailure::transient(describe(&e)))? {
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(local)?;
    }
    file.flush().await.map_err(local)?;
    if let Some(expected) = expected.filter(|&n| n != bytes) {
        return Err(HttpFailure::transient(format!("the server announced {expected} bytes but sent {bytes}")));
    }
    Ok((bytes, hex::encode(hasher.finalize())))
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

    /// A loopback server answering each connection with the next of
    /// `answers` (status line, body); returns its URL and a request counter.
    fn server(answers: Vec<(&'static str, &'static [u8])>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/file", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for (status, body) in answers {
                let Ok((mut stream, _)) = listener.accept() else { return };
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = stream.write_all(&[head.as_bytes(), body].concat());
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn transient_http_failures_are_tried_again_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let (url, count) = server(vec![("503 Service Unavailable", b""), ("200 OK", b"hello\n")]);
        let downloaded = Downloader::new().download(&url, &dest).await.unwrap();
        assert_eq!((downloaded.bytes, count.load(std::sync::atomic::Ordering::SeqCst)), (6, 2));
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello\n");
        // One answer only: a retry would fail differently (connection refused).
        let (url, count) = server(vec![("404 Not Found", b"")]);
        let err = Downloader::new().download(&url, &dest).await.unwrap_err();
        assert_eq!((err.as_str(), count.load(std::sync::atomic::Ordering::SeqCst)), ("HTTP 404 Not Found", 1));
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
