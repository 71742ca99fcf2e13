//! [`Execution`]: `Execute` with operation streaming, `WaitExecution` when
//! the stream is lost, and cancellation of a running operation.
//!
//! Key decision: the caller gets one future that resolves to the final
//! [`ExecuteResponse`] or to a [`RemoteError`]; reconnecting to a lost
//! operation stream is done here (a bounded number of times), so callers only
//! decide whether to retry the whole action elsewhere. A `status` inside the
//! `ExecuteResponse` becomes an error with its code; a command that ran and
//! exited non-zero is a successful response with a non-zero `exit_code`.

use futures::StreamExt;
use prost::Message;
use weir_proto::longrunning::operation;
use weir_proto::longrunning::operations_client::OperationsClient;
use weir_proto::longrunning::{CancelOperationRequest, Operation};
use weir_proto::reapi::execution_client::ExecutionClient;
use weir_proto::reapi::{ExecuteRequest, ExecuteResponse, WaitExecutionRequest};
use weir_proto::Digest;

use super::cas::MAX_MESSAGE_BYTES;
use super::endpoint::AuthChannel;
use super::RemoteError;

/// Type URL of an `ExecuteResponse` packed in an operation.
const EXECUTE_RESPONSE_TYPE: &str = "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse";
/// How many times a lost operation stream is resumed with `WaitExecution`.
const MAX_STREAM_RESUMES: usize = 3;

/// The Execution service client of one endpoint.
#[derive(Debug, Clone)]
pub struct Execution {
    client: ExecutionClient<AuthChannel>,
    operations: OperationsClient<AuthChannel>,
    instance_name: String,
}

impl Execution {
    /// An Execution client over `channel`.
    pub fn new(channel: AuthChannel, instance_name: &str) -> Self {
        Execution {
            client: ExecutionClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES),
            operations: OperationsClient::new(channel),
            instance_name: instance_name.to_string(),
        }
    }

    /// Runs the action and waits for its result. `on_operation` is told the
    /// operation name as soon as the server gives it (for cancellation).
    pub async fn execute(
        &self,
        action: Digest,
        skip_cache_lookup: bool,
        mut on_operation: impl FnMut(&str),
    ) -> Result<ExecuteResponse, RemoteError> {
        let request = ExecuteRequest {
            instance_name: self.instance_name.clone(),
            skip_cache_lookup,
            action_digest: Some(action.to_proto()),
            ..Default::default()
        };
        let stream = self.client.clone().execute(request).await.map_err(|s| RemoteError::rpc("Execute", s))?.into_inner();
        let mut name = String::new();
        let mut resumes = 0;
        let mut stream = stream;
        loop {
            match follow(&mut stream, &mut name, &mut on_operation).await {
                Followed::Done(result) => return result,
                Followed::Lost(error) => {
                    if name.is_empty() || resumes >= MAX_STREAM_RESUMES {
                        return Err(error);
                    }
                    resumes += 1;
                    tracing::debug!(operation = %name, %error, "operation stream lost; resuming with WaitExecution");
                    let request = WaitExecutionRequest { name: name.clone() };
                    stream = match self.client.clone().wait_execution(request).await {
                        Ok(response) => response.into_inner(),
                        Err(status) if is_broken_connection(status.code()) => {
                            return Err(RemoteError::StreamLost { operation: name });
                        }
                        Err(status) => return Err(RemoteError::rpc("WaitExecution", status)),
                    };
                }
            }
        }
    }

    /// Asks the server to cancel a running operation (best effort).
    pub async fn cancel(&self, operation: &str) -> Result<(), RemoteError> {
        self.operations
            .clone()
            .cancel_operation(CancelOperationRequest { name: operation.to_string() })
            .await
            .map_err(|s| RemoteError::rpc("CancelOperation", s))?;
        Ok(())
    }
}

/// How following one operation stream ended (short-lived; its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Followed {
    /// The operation finished (with a response or an error).
    Done(Result<ExecuteResponse, RemoteError>),
    /// The stream broke or ended early; the operation may still be running.
    Lost(RemoteError),
}

async fn follow(
    stream: &mut tonic::Streaming<Operation>,
    name: &mut String,
    on_operation: &mut impl FnMut(&str),
) -> Followed {
    loop {
        match stream.next().await {
            None => return Followed::Lost(RemoteError::StreamLost { operation: name.clone() }),
            Some(Err(status)) => {
                let error = RemoteError::rpc("Execute", status);
                // A non-transient status on the stream is the operation's answer.
                return if error.is_retryable() || error.code().is_some_and(is_broken_connection) {
                    Followed::Lost(error)
                } else {
                    Followed::Done(Err(error))
                };
            }
            Some(Ok(op)) => {
                if name.is_empty() && !op.name.is_empty() {
                    *name = op.name.clone();
                    on_operation(name);
                }
                if op.done {
                    return Followed::Done(finished(op));
                }
            }
        }
    }
}

/// Codes tonic reports when the connection under a call breaks (the server
/// died or reset it): this client never cancels its own calls except by
/// dropping them, so a CANCELLED or UNKNOWN status here means the stream
/// was lost, not that someone cancelled the operation.
fn is_broken_connection(code: tonic::Code) -> bool {
    matches!(code, tonic::Code::Cancelled | tonic::Code::Unknown)
}

/// The result carried by a finished operation.
fn finished(op: Operation) -> Result<ExecuteResponse, RemoteError> {
    match op.result {
        Some(operation::Result::Error(status)) => Err(RemoteError::from_rpc_status("Execute", &status)),
        Some(operation::Result::Response(any)) => {
            if any.type_url != EXECUTE_RESPONSE_TYPE {
                return Err(RemoteError::Protocol { rpc: "Execute", reason: format!("operation response of type {:?}", any.type_url) });
            }
            let response = ExecuteResponse::decode(&any.value[..])
                .map_err(|e| RemoteError::Protocol { rpc: "Execute", reason: format!("undecodable ExecuteResponse: {e}") })?;
            match &response.status {
                Some(status) if status.code != 0 => Err(RemoteError::from_rpc_status("Execute", status)),
                _ if response.result.is_none() => {
                    Err(RemoteError::Protocol { rpc: "Execute", reason: "ExecuteResponse without a result".into() })
                }
                _ => Ok(response),
            }
        }
        None => Err(RemoteError::Protocol { rpc: "Execute", reason: "operation done without a result".into() }),
    }
}

/// Packs an `ExecuteResponse` the way servers put it in an operation (used by
/// test servers).
pub fn pack_execute_response(response: &ExecuteResponse) -> weir_proto::protobuf::Any {
    weir_proto::protobuf::Any { type_url: EXECUTE_RESPONSE_TYPE.to_string(), value: response.encode_to_vec() }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use weir_proto::reapi::{Action, ActionResult, Command};

    use super::*;
    use crate::remote::fake_server::FakeServer;
    use crate::remote::{EndpointSpec, RemoteClient};

    async fn upload_action(client: &RemoteClient, args: &[&str]) -> Digest {
        let command = Command { arguments: args.iter().map(|a| a.to_string()).collect(), ..Default::default() };
        let command_digest = client.cas.upload_message(&command).await.unwrap();
        let root = client.cas.upload_message(&weir_proto::reapi::Directory::default()).await.unwrap();
        let action = Action { command_digest: Some(command_digest.to_proto()), input_root_digest: Some(root.to_proto()), ..Default::default() };
        client.cas.upload_message(&action).await.unwrap()
    }

    async fn server_echoing_exit_code() -> (FakeServer, RemoteClient) {
        let server = FakeServer::start(
            4 << 20,
            Box::new(|_, _, command: &Command| {
                let code = command.arguments.last().and_then(|a| a.parse().ok()).unwrap_or(0);
                if code == 99 {
                    return Err(tonic::Status::invalid_argument("bad command"));
                }
                Ok(ActionResult { exit_code: code, ..Default::default() })
            }),
        )
        .await;
        let client = RemoteClient::connect(EndpointSpec::new(&server.url).unwrap()).await.unwrap();
        (server, client)
    }

    #[tokio::test]
    async fn execute_returns_the_result_and_names_the_operation() {
        let (_server, client) = server_echoing_exit_code().await;
        let action = upload_action(&client, &["exit", "0"]).await;
        let mut seen = Vec::new();
        let response = client.execution.execute(action, false, |name| seen.push(name.to_string())).await.unwrap();
        assert_eq!(response.result.unwrap().exit_code, 0);
        assert_eq!(seen.len(), 1);
    }

    #[tokio::test]
    async fn a_non_zero_exit_is_a_result_not_an_error() {
        let (_server, client) = server_echoing_exit_code().await;
        let action = upload_action(&client, &["exit", "3"]).await;
        let response = client.execution.execute(action, false, |_| {}).await.unwrap();
        assert_eq!(response.result.unwrap().exit_code, 3);
    }

    #[tokio::test]
    async fn a_lost_stream_is_resumed_with_wait_execution() {
        let (server, client) = server_echoing_exit_code().await;
        server.state.cut_streams.store(1, Ordering::SeqCst);
        let action = upload_action(&client, &["exit", "5"]).await;
        let response = client.execution.execute(action, false, |_| {}).await.unwrap();
        assert_eq!(response.result.unwrap().exit_code, 5);
        assert_eq!(server.state.waits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn errors_keep_their_code_and_retryability() {
        let (server, client) = server_echoing_exit_code().await;
        let action = upload_action(&client, &["exit", "99"]).await;
        let error = client.execution.execute(action, false, |_| {}).await.unwrap_err();
        assert_eq!(error.code(), Some(tonic::Code::InvalidArgument));
        assert!(!error.is_retryable());
        server.state.unavailable.store(1, Ordering::SeqCst);
        let action = upload_action(&client, &["exit", "0"]).await;
        let error = client.execution.execute(action, false, |_| {}).await.unwrap_err();
        assert!(error.is_retryable(), "{error}");
        // A missing input is a precondition failure, not retryable as such.
        let error = client.execution.execute(Digest::of(b"no such action"), false, |_| {}).await.unwrap_err();
        assert_eq!(error.code(), Some(tonic::Code::FailedPrecondition));
    }

    #[tokio::test]
    async fn action_cache_and_remote_asset_round_trip() {
        let (server, client) = server_echoing_exit_code().await;
        let action = Digest::of(b"action");
        assert_eq!(client.action_cache.get(action).await.unwrap(), None);
        let result = ActionResult { exit_code: 0, stdout_raw: b"out".to_vec(), ..Default::default() };
        client.action_cache.update(action, result.clone()).await.unwrap();
        assert_eq!(client.action_cache.get(action).await.unwrap(), Some(result));

        let uri = "weir:artifact/p/e.bst/abc".to_string();
        assert_eq!(client.asset.fetch_blob(std::slice::from_ref(&uri), &[]).await.unwrap(), None);
        let blob = server.state.put(b"artifact".to_vec());
        client.asset.push_blob(std::slice::from_ref(&uri), &[], blob, &crate::remote::References::default()).await.unwrap();
        assert_eq!(client.asset.fetch_blob(&["other".into(), uri], &[]).await.unwrap(), Some(blob));
    }
}
