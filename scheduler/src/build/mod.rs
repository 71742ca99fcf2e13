//! The build pipeline: turning elements into REAPI actions and building a
//! plan of them.
//!
//! | module | owns |
//! |---|---|
//! | [`plan`] | [`BuildPlan`]: elements in topological order with keys, staged dependencies and a [`Recipe`] |
//! | [`queue`] | [`BuildQueue`]: ready set, concurrency, retries with backoff, failure policy, cancellation |
//! | [`staging`] | [`Staging`]: input roots from dependency artifact trees, with overlap detection |
//! | [`artifact`] | [`Artifact`] records and the [`ArtifactCache`] on Remote Asset |
//! | [`event`] | [`BuildEvent`]s and where they go |
//!
//! Key decision: the queue is generic over an [`ElementRunner`], so
//! scheduling is tested without a server and the remote runner is tested
//! without the scheduling.

pub mod artifact;
pub mod error;
pub mod event;
pub mod plan;
pub mod queue;
pub mod staging;

pub use artifact::{artifact_uri, Artifact, ArtifactCache};
pub use error::BuildError;
pub use event::{BuildEvent, EventLog, EventSink};
pub use plan::{ArtifactKeys, BuildPlan, CommandsRecipe, PlanElement, Recipe, SourceTree};
pub use queue::{BuildQueue, BuildReport, ElementResult, ElementRunner, Job, OnError, QueueOptions};
pub use staging::{Overlap, Staging};
