//! [`ReadBody`]: the HTTP/2 body of a `ByteStream.Read` response, framed as
//! gRPC by hand so that the blob's bytes are never copied in user space.
//!
//! Why: tonic encodes every response message into its own buffer, and the
//! generated `ReadResponse` holds its data as `Vec<u8>`, so a chunk read
//! from a file was copied twice (into the `Vec`, then into the encode
//! buffer) before the kernel copied it once more into the socket. A
//! `ReadResponse` with only its `data` field set is, on the wire, the gRPC
//! message prefix, the field's tag and length, and the data itself: this
//! body sends those few header bytes and then the chunk as it came from the
//! store (a `Bytes` over the read buffer), as two HTTP/2 `DATA` frames that
//! h2 writes without copying either.
//!
//! Errors after the first byte end the stream with the status in the
//! trailers, as tonic does; the stream ends with `grpc-status: 0`.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use http::HeaderMap;
use http_body::Frame;
use tonic::Status;

use super::ServerError;
use crate::store::ChunkStream;

/// The tag of `ReadResponse.data` (field 10, length-delimited).
const DATA_TAG: u8 = (10 << 3) | 2;

/// A streamed `ByteStream.Read` response body (see the module doc).
pub struct ReadBody {
    chunks: ChunkStream,
    /// The chunk whose message header was just sent.
    pending: Option<Bytes>,
    finished: bool,
}

impl ReadBody {
    /// A body sending each chunk of `chunks` as one `ReadResponse` message.
    pub fn new(chunks: ChunkStream) -> Self {
        ReadBody { chunks, pending: None, finished: false }
    }

    /// The trailers that end the stream with `status` (OK when `None`).
    fn trailers(status: Option<Status>) -> HeaderMap {
        let mut trailers = HeaderMap::new();
        let status = status.unwrap_or_else(|| Status::ok(""));
        if let Err(unencodable) = status.add_header(&mut trailers) {
            // A message that cannot be a header value: keep the code.
            let _ = Status::new(unencodable.code(), "").add_header(&mut trailers);
        }
        trailers
    }
}

/// The gRPC length prefix and the protobuf field header of a `ReadResponse`
/// whose `data` is `len` bytes (an empty `data` is an empty message).
pub fn message_header(len: usize) -> Bytes {
    let mut field = BytesMut::with_capacity(11);
    if len > 0 {
        field.put_u8(DATA_TAG);
        prost::encoding::encode_varint(len as u64, &mut field);
    }
    let mut header = BytesMut::with_capacity(5 + field.len());
    header.put_u8(0); // not compressed
    header.put_u32((field.len() + len) as u32);
    header.extend_from_slice(&field);
    header.freeze()
}

impl http_body::Body for ReadBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(data) = self.pending.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if self.finished {
            return Poll::Ready(None);
        }
        let status = match ready!(self.chunks.poll_next_unpin(cx)) {
            Some(Ok(chunk)) => {
                let header = message_header(chunk.len());
                if !chunk.is_empty() {
                    self.pending = Some(chunk);
                }
                return Poll::Ready(Some(Ok(Frame::data(header))));
            }
            Some(Err(err)) => Some(Status::from(ServerError::from(err))),
            None => None,
        };
        self.finished = true;
        Poll::Ready(Some(Ok(Frame::trailers(Self::trailers(status)))))
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.pending.is_none()
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;
    use prost::Message;
    use weir_proto::bytestream::ReadResponse;

    use super::*;
    use crate::store::StoreError;

    /// Drives the body to its end: the concatenated data and the trailers.
    async fn collect(mut body: ReadBody) -> (Vec<u8>, HeaderMap) {
        let mut data = Vec::new();
        let mut trailers = HeaderMap::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let frame = frame.expect("the body itself never fails");
            match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = frame.into_trailers().expect("a frame is data or trailers"),
            }
        }
        assert!(body.is_end_stream());
        (data, trailers)
    }

    /// Splits gRPC-framed bytes into decoded `ReadResponse`s.
    fn decode(mut wire: &[u8]) -> Vec<ReadResponse> {
        let mut messages = Vec::new();
        while !wire.is_empty() {
            assert_eq!(wire[0], 0, "uncompressed");
            let len = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
            messages.push(ReadResponse::decode(&wire[5..5 + len]).expect("a valid ReadResponse"));
            wire = &wire[5 + len..];
        }
        messages
    }

    #[tokio::test]
    async fn chunks_become_read_responses_prost_can_decode() {
        let chunks: Vec<Result<Bytes, StoreError>> =
            vec![Ok(Bytes::from(vec![7u8; 300])), Ok(Bytes::new()), Ok(Bytes::from_static(b"tail"))];
        let (wire, trailers) = collect(ReadBody::new(futures::stream::iter(chunks).boxed())).await;
        let messages = decode(&wire);
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].data, vec![7u8; 300]);
        assert!(messages[1].data.is_empty());
        assert_eq!(messages[2].data, b"tail");
        assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
    }

    #[test]
    fn headers_match_what_prost_encodes() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 2 << 20] {
            let message = ReadResponse { data: vec![1u8; len] };
            let encoded = message.encode_to_vec();
            let header = message_header(len);
            assert_eq!(&header[5..], &encoded[..encoded.len() - len], "field header for {len}");
            assert_eq!(u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize, encoded.len());
        }
    }

    #[tokio::test]
    async fn an_error_mid_stream_ends_it_with_its_status() {
        let chunks: Vec<Result<Bytes, StoreError>> =
            vec![Ok(Bytes::from_static(b"abc")), Err(StoreError::Corrupt(weir_proto::Digest::empty()))];
        let (wire, trailers) = collect(ReadBody::new(futures::stream::iter(chunks).boxed())).await;
        assert_eq!(decode(&wire).len(), 1);
        let code = trailers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok());
        assert_eq!(code, Some(tonic::Code::Internal as i32));
    }
}
