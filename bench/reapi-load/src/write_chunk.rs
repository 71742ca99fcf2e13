//! [`write`]: a `ByteStream.Write` call that sends [`WriteChunk`]s
//! (weir-proto: a `WriteRequest` with its data as `Bytes`).
//!
//! Why: the generated `WriteRequest` holds `Vec<u8>`, so every message of a
//! large upload would first copy its slice of the blob into a new vector.
//! A client that already holds the blob (as reapi-load does) can send
//! slices of it: same wire format, one copy less per byte in the client,
//! which matters on a 2-core machine where client and server share the CPU.
//! Every server is measured with the same client.

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use weir_proto::bytestream::WriteResponse;
pub use weir_proto::write_chunk::WriteChunk;

/// Calls `ByteStream.Write` with `chunks`.
pub async fn write(
    channel: Channel,
    chunks: impl futures::Stream<Item = WriteChunk> + Send + 'static,
) -> Result<WriteResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unknown(format!("channel not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<WriteChunk, WriteResponse>::default();
    let path = PathAndQuery::from_static("/google.bytestream.ByteStream/Write");
    Ok(grpc.client_streaming(tonic::Request::new(chunks), path, codec).await?.into_inner())
}

