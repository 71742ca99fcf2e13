//! [`OperationEntry`]: one named long-running operation — its current
//! `google.longrunning.Operation` (stage, metadata, final `ExecuteResponse`)
//! published on a watch channel, and the [`Canceller`] of its run.
//!
//! Key decision: the latest `Operation` message is the state. Every waiter
//! (Execute streams, WaitExecution, WaitOperation, GetOperation) reads the
//! same watch channel, so a deduplicated action with several waiters costs
//! one run and one message per stage change; a slow waiter simply sees the
//! latest stage.

use std::pin::Pin;
use std::time::Instant;

use futures::Stream;
use prost::Message;
use tokio::sync::watch;
use weir_proto::longrunning::{operation, Operation};
use weir_proto::protobuf::Any;
use weir_proto::reapi::execution_stage::Value as Stage;
use weir_proto::reapi::{digest_function, ActionResult, ExecuteOperationMetadata, ExecuteResponse};
use weir_proto::rpc::Status;
use weir_proto::Digest;

use crate::runner::Canceller;

const METADATA_TYPE: &str = "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteOperationMetadata";
const RESPONSE_TYPE: &str = "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse";
const PRECONDITION_FAILURE_TYPE: &str = "type.googleapis.com/google.rpc.PreconditionFailure";

/// A stream of operation updates, as the Execution service returns it.
pub type OperationStream = Pin<Box<dyn Stream<Item = Result<Operation, tonic::Status>> + Send>>;

/// One operation: its name, the action it runs and its current state.
#[derive(Debug)]
pub struct OperationEntry {
    name: String,
    action_digest: Digest,
    state: watch::Sender<Operation>,
    canceller: Canceller,
    created: Instant,
}

impl OperationEntry {
    /// A new operation in stage `CACHE_CHECK`.
    pub fn new(name: String, action_digest: Digest, canceller: Canceller) -> Self {
        let initial = Operation {
            name: name.clone(),
            metadata: Some(metadata(Stage::CacheCheck, &action_digest)),
            done: false,
            result: None,
        };
        let (state, _) = watch::channel(initial);
        OperationEntry { name, action_digest, state, canceller, created: Instant::now() }
    }

    /// The operation's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The action it runs.
    pub fn action_digest(&self) -> Digest {
        self.action_digest
    }

    /// When it was created.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// The latest state.
    pub fn snapshot(&self) -> Operation {
        self.state.borrow().clone()
    }

    /// Whether the operation has finished.
    pub fn is_done(&self) -> bool {
        self.state.borrow().done
    }

    /// Asks the run to stop (the process is killed).
    pub fn cancel(&self) {
        self.canceller.cancel();
    }

    /// Moves to `stage` (not done).
    pub fn set_stage(&self, stage: Stage) {
        self.state.send_modify(|op| op.metadata = Some(metadata(stage, &self.action_digest)));
    }

    /// Finishes with `response` (stage `COMPLETED`, `done`).
    pub fn complete(&self, response: ExecuteResponse) {
        let response = Any { type_url: RESPONSE_TYPE.into(), value: response.encode_to_vec() };
        self.state.send_modify(|op| {
            op.metadata = Some(metadata(Stage::Completed, &self.action_digest));
            op.done = true;
            op.result = Some(operation::Result::Response(response));
        });
    }

    /// Waits until the operation is done (cancel-safe).
    pub async fn wait_done(&self) {
        let mut receiver = self.state.subscribe();
        let _ = receiver.wait_for(|op| op.done).await;
    }

    /// The updates from now on: the current state first, then every change,
    /// ending after the `done` one.
    pub fn updates(&self) -> OperationStream {
        let receiver = self.state.subscribe();
        Box::pin(futures::stream::unfold(Some((receiver, true)), |state| async move {
            let (mut receiver, first) = state?;
            if !first && receiver.changed().await.is_err() {
                return None;
            }
            let op = receiver.borrow_and_update().clone();
            let next = if op.done { None } else { Some((receiver, false)) };
            Some((Ok(op), next))
        }))
    }
}

fn metadata(stage: Stage, action_digest: &Digest) -> Any {
    let metadata = ExecuteOperationMetadata {
        stage: stage as i32,
        action_digest: Some(action_digest.to_proto()),
        digest_function: digest_function::Value::Sha256 as i32,
        ..Default::default()
    };
    Any { type_url: METADATA_TYPE.into(), value: metadata.encode_to_vec() }
}

/// A response carrying `result` (fresh or from the cache).
pub fn success(result: ActionResult, cached_result: bool) -> ExecuteResponse {
    ExecuteResponse { result: Some(result), cached_result, status: Some(Status::default()), ..Default::default() }
}

/// A response for a run that failed with `code`; `missing` blobs, if any,
/// become a `PreconditionFailure` (violations of type `MISSING`, subjects
/// `blobs/{hash}/{size}`) in the status details, as REAPI prescribes.
pub fn failure(code: tonic::Code, message: String, missing: &[Digest], result: Option<ActionResult>) -> ExecuteResponse {
    let mut details = Vec::new();
    if !missing.is_empty() {
        let failure = tonic_types::pb::PreconditionFailure {
            violations: missing
                .iter()
                .map(|digest| tonic_types::pb::precondition_failure::Violation {
                    r#type: "MISSING".into(),
                    subject: format!("blobs/{}/{}", digest.hash_hex(), digest.size()),
                    description: String::new(),
                })
                .collect(),
        };
        details.push(Any { type_url: PRECONDITION_FAILURE_TYPE.into(), value: failure.encode_to_vec() });
    }
    ExecuteResponse {
        result,
        cached_result: false,
        status: Some(Status { code: code as i32, message: message.clone(), details }),
        message,
        ..Default::default()
    }
}

/// Decodes the `ExecuteResponse` of a finished operation (for tests and
/// clients of this crate).
pub fn response_of(op: &Operation) -> Option<ExecuteResponse> {
    match &op.result {
        Some(operation::Result::Response(any)) if any.type_url == RESPONSE_TYPE => {
            ExecuteResponse::decode(any.value.as_slice()).ok()
        }
        _ => None,
    }
}

/// Decodes the stage of an operation's metadata.
pub fn stage_of(op: &Operation) -> Option<Stage> {
    let any = op.metadata.as_ref().filter(|any| any.type_url == METADATA_TYPE)?;
    let metadata = ExecuteOperationMetadata::decode(any.value.as_slice()).ok()?;
    Stage::try_from(metadata.stage).ok()
}
