//! [`ByteStreamRoutes`]: the ByteStream gRPC service as mounted on the
//! server. `Write` is decoded into [`WriteChunk`]s (weir-proto), whose data
//! is a slice of the receive buffer; `Read` responses are framed by
//! [`ReadBody`], which sends the store's chunks as they are;
//! `QueryWriteStatus` goes to the generated server.
//!
//! Why: the generated `WriteRequest` and `ReadResponse` hold their data as
//! `Vec<u8>`, so decoding an upload copies every byte once more before the
//! store sees it, and encoding a download copies every byte twice (into the
//! `Vec`, then into tonic's encode buffer). A message with the same fields
//! but `bytes::Bytes` data is decoded by prost with `Buf::copy_to_bytes`,
//! which tonic's decode buffer answers by splitting off the bytes it
//! already holds: no copy; a download needs no encoder at all (see
//! [`ReadBody`]). On a machine where the client, the HTTP/2 stack, SHA-256
//! and the disk share two cores, each copy less per byte is measurable in
//! ByteStream throughput.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{http, Body as HttpBody, BoxFuture, Service, StdError};
use tracing::Instrument;
use tonic::server::NamedService;
use weir_proto::bytestream::byte_stream_server::ByteStreamServer;
use tonic::codec::Codec as _;
use weir_proto::bytestream::{ReadRequest, ReadResponse, WriteResponse};
pub use weir_proto::write_chunk::WriteChunk;

use super::bytestream::ByteStreamService;
use super::read_body::ReadBody;

/// The gRPC path of `ByteStream.Write`.
const WRITE_PATH: &str = "/google.bytestream.ByteStream/Write";
/// The gRPC path of `ByteStream.Read`.
const READ_PATH: &str = "/google.bytestream.ByteStream/Read";

/// The ByteStream service with its copy-free `Write` (see the module doc).
#[derive(Clone)]
pub struct ByteStreamRoutes {
    service: Arc<ByteStreamService>,
    generated: ByteStreamServer<ByteStreamService>,
    max_message: usize,
}

impl ByteStreamRoutes {
    /// Serves `service`, accepting and sending messages up to `max_message` bytes.
    pub fn new(service: ByteStreamService, max_message: usize) -> Self {
        let service = Arc::new(service);
        let generated = ByteStreamServer::from_arc(service.clone())
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        ByteStreamRoutes { service, generated, max_message }
    }
}

impl NamedService for ByteStreamRoutes {
    const NAME: &'static str = weir_proto::bytestream::byte_stream_server::SERVICE_NAME;
}

/// `Write` as a client-streaming method over [`WriteChunk`]s.
struct WriteMethod(Arc<ByteStreamService>);

impl tonic::server::ClientStreamingService<WriteChunk> for WriteMethod {
    type Response = WriteResponse;
    type Future = BoxFuture<tonic::Response<WriteResponse>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<WriteChunk>>) -> Self::Future {
        let service = self.0.clone();
        let write = async move { Ok(tonic::Response::new(service.inner_write(request.into_inner()).await?)) };
        Box::pin(write.instrument(tracing::info_span!("bytestream_write")))
    }
}

impl<B> Service<http::Request<B>> for ByteStreamRoutes
where
    B: HttpBody + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() == READ_PATH {
            let service = self.service.clone();
            let max = self.max_message;
            let span = tracing::info_span!("bytestream_read", resource = tracing::field::Empty);
            return Box::pin(read(service, request, max).instrument(span));
        }
        if request.uri().path() != WRITE_PATH {
            return self.generated.call(request);
        }
        let method = WriteMethod(self.service.clone());
        let max = self.max_message;
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<WriteResponse, WriteChunk>::default();
            let mut grpc = tonic::server::Grpc::new(codec).apply_max_message_size_config(Some(max), Some(max));
            Ok(grpc.client_streaming(method, request).await)
        })
    }
}


/// Serves one `Read`: decodes its `ReadRequest` with tonic's decoder, then
/// answers with a [`ReadBody`]; a request that fails before the first chunk
/// gets a trailers-only error response, as from the generated server.
async fn read<B>(service: Arc<ByteStreamService>, request: http::Request<B>, max: usize) -> Result<http::Response<Body>, Infallible>
where
    B: HttpBody + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    let decoder = tonic_prost::ProstCodec::<ReadResponse, ReadRequest>::default().decoder();
    let mut messages = tonic::Streaming::new_request(decoder, request.into_body(), None, Some(max));
    let chunks = match messages.message().await {
        Ok(Some(read)) => {
            let resource: String = read.resource_name.chars().take(200).collect();
            tracing::Span::current().record("resource", resource.as_str());
            service.inner_read(read).await.map_err(tonic::Status::from)
        }
        Ok(None) => Err(tonic::Status::invalid_argument("missing ReadRequest")),
        Err(status) => Err(status),
    };
    Ok(match chunks {
        Ok(chunks) => {
            let mut response = http::Response::new(Body::new(ReadBody::new(chunks)));
            response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
            response
        }
        Err(status) => status.into_http(),
    })
}
