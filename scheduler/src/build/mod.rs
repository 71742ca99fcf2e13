//! The build pipeline: turning elements into REAPI actions and building a
//! plan of them.
//!
//! | module | owns |
//! |---|---|
//! | [`from_graph`] | [`plan_from_graph`]: the loader's graph and the keys → a plan (core kinds → recipes) |
//! | [`plan`] | [`BuildPlan`]: elements in topological order with keys, staged dependencies and a [`Recipe`] |
//! | [`queue`] | [`BuildQueue`]: ready set, concurrency, retries with backoff, failure policy, cancellation |
//! | [`split`] | [`SplitRules`] and the [`SplitFilter`] `compose` applies |
//! | [`staging`] | [`Staging`]: input roots from dependency artifact trees, BuildStream's staging rules |
//! | [`overlaps`] | [`OverlapCollector`]: overlapping and unstaged files, reported in BuildStream's words |
//! | [`artifact`] | [`Artifact`] records and the [`ArtifactCache`] on Remote Asset |
//! | [`checkout`] | [`Checkout`]: an artifact tree listed or written to disk |
//! | [`event`] | [`BuildEvent`]s and where they go |
//! | [`action`] | [`action::ActionSpec`]: the `Command` and `Action` of an element that runs commands |
//! | [`placement`] | [`Placement`]: round-robin over endpoints whose platform matches |
//! | [`remote_runner`] | [`RemoteRunner`]: cache lookup and builds on REAPI endpoints |
//!
//! Key decision: the queue is generic over an [`ElementRunner`], so
//! scheduling is tested without a server and the remote runner is tested
//! without the scheduling.

pub mod action;
pub mod artifact;
pub mod checkout;
pub mod error;
pub mod event;
pub mod overlaps;
pub mod from_graph;
pub mod placement;
pub mod plan;
pub mod queue;
pub mod remote_runner;
pub mod split;
pub mod staging;

pub use artifact::{artifact_uri, Artifact, ArtifactCache};
pub use checkout::{Checkout, TreeEntry};
pub use error::BuildError;
pub use event::{BuildEvent, EventLog, EventSink};
pub use from_graph::plan_from_graph;
pub use placement::{Offer, Placement};
pub use plan::{ArtifactKeys, BuildPlan, CommandsRecipe, ComposeRecipe, PlanElement, PublicData, Recipe, SourceTree};
pub use split::{SplitFilter, SplitRules};
pub use queue::{BuildQueue, BuildReport, ElementResult, ElementRunner, Job, OnError, QueueOptions};
pub use remote_runner::RemoteRunner;
pub use overlaps::{OverlapCollector, StagingWarning};
pub use staging::Staging;
