//! [`WriteChunk`]: a ByteStream `WriteRequest` whose data is [`Bytes`].
//!
//! Key decision: the generated `WriteRequest` holds its data as `Vec<u8>`,
//! so decoding a large upload copies every message out of the receive
//! buffer, and a client that holds the blob copies each slice into a new
//! vector before sending it. `WriteChunk` has the same fields and tags
//! (the same wire format) with `data` as [`Bytes`], which prost decodes as
//! a slice of the buffer and encodes without a copy. The worker's
//! `ByteStream.Write` route and the `reapi-load` client both use it.

use bytes::Bytes;

use crate::bytestream::WriteRequest;

/// `google.bytestream.WriteRequest`, field for field, with `data` as [`Bytes`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteChunk {
    /// The upload resource name (required on the first message).
    #[prost(string, tag = "1")]
    pub resource_name: String,
    /// Offset of `data` in the upload.
    #[prost(int64, tag = "2")]
    pub write_offset: i64,
    /// Whether this is the last message.
    #[prost(bool, tag = "3")]
    pub finish_write: bool,
    /// A portion of the upload.
    #[prost(bytes = "bytes", tag = "10")]
    pub data: Bytes,
}

impl From<WriteRequest> for WriteChunk {
    fn from(request: WriteRequest) -> Self {
        WriteChunk {
            resource_name: request.resource_name,
            write_offset: request.write_offset,
            finish_write: request.finish_write,
            data: Bytes::from(request.data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn decodes_write_requests_without_copying_the_data() {
        let request = WriteRequest {
            resource_name: "main/uploads/u/blobs/abc/3".into(),
            write_offset: 1 << 33,
            finish_write: true,
            data: b"xyz".to_vec(),
        };
        let wire = Bytes::from(request.encode_to_vec());
        let chunk = WriteChunk::decode(wire.clone()).unwrap();
        assert_eq!(chunk, WriteChunk::from(request.clone()));
        assert_eq!(chunk.encode_to_vec(), request.encode_to_vec(), "the same wire format both ways");
        // Decoded from a `Bytes` buffer, the data is a slice of it, not a copy.
        let start = wire.as_ptr() as usize;
        let at = chunk.data.as_ptr() as usize;
        assert!(at >= start && at + chunk.data.len() <= start + wire.len(), "data was copied out of the buffer");
    }
}
