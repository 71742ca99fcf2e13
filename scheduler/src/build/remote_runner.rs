//! [`RemoteRunner`]: the production [`ElementRunner`] — looks artifacts up
//! and builds elements on REAPI endpoints.
//!
//! Key decisions: one storage remote holds the artifacts and the CAS every
//! input is uploaded to; execution endpoints are assumed to share that CAS
//! (a weir-worker executor reading through to the cache node, or one
//! cluster). `import` and `stack` run nothing: their artifact trees are
//! assembled and uploaded here. Elements with commands become one action
//! each ([`ActionSpec`]); its output directory, re-uploaded as `Directory`
//! blobs, is the artifact tree. Dependency trees read from the CAS are
//! memoised for the run, since the same base is staged for many elements.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use prost::Message;
use weir_proto::merkle::{encode_directory, MerkleTree};
use weir_proto::reapi::{self, ActionResult};
use weir_proto::tree::ValidTree;
use weir_proto::Digest;

use super::action::{relative, ActionSpec};
use super::event::{BuildEvent, EventSink};
use super::placement::{Offer, Placement};
use super::queue::{ElementRunner, Job};
use super::split::{SplitFilter, SplitRules};
use super::artifact::ArtifactName;
use super::{Artifact, ArtifactCache, BuildError, BuildPlan, CommandsRecipe, ComposeRecipe, Recipe, SourceTree, Staging};
use crate::remote::{Blob, BlobSet, RemoteClient, RemoteError};

/// Lines of output shown when a command fails.
const LOG_TAIL_LINES: usize = 20;

/// The directories of one tree, by digest.
type Directories = BTreeMap<Digest, reapi::Directory>;

/// Builds elements on remote endpoints.
pub struct RemoteRunner {
    storage: ArtifactCache,
    executors: Vec<RemoteClient>,
    placement: Placement,
    strict: bool,
    last_endpoint: Mutex<HashMap<usize, usize>>,
    trees: Mutex<HashMap<Digest, Arc<Directories>>>,
    cancellations: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl RemoteRunner {
    /// A runner storing artifacts on `storage` and executing on `executors`
    /// (each with its platform offer).
    pub fn new(storage: RemoteClient, executors: Vec<(RemoteClient, Offer)>) -> Self {
        let (executors, offers): (Vec<_>, Vec<_>) = executors.into_iter().unzip();
        RemoteRunner {
            storage: ArtifactCache::new(storage),
            executors,
            placement: Placement::new(offers),
            strict: true,
            last_endpoint: Mutex::default(),
            trees: Mutex::default(),
            cancellations: Arc::default(),
        }
    }

    /// In non-strict mode an artifact found by weak key is used.
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Waits (at most `limit`) for the cancellations of dropped builds to
    /// reach their servers; call after an interrupted build.
    pub async fn flush_cancellations(&self, limit: std::time::Duration) {
        let tasks: Vec<_> = self.cancellations.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
        let _ = tokio::time::timeout(limit, futures::future::join_all(tasks)).await;
    }

    fn cas(&self) -> &crate::remote::Cas {
        &self.storage.remote().cas
    }

    /// The directories of the tree rooted at `root`, read once per run.
    async fn tree(&self, root: Digest) -> Result<Arc<Directories>, BuildError> {
        if let Some(tree) = self.trees.lock().ok().and_then(|t| t.get(&root).cloned()) {
            return Ok(tree);
        }
        let tree = Arc::new(self.cas().read_tree(root).await?);
        if let Ok(mut trees) = self.trees.lock() {
            trees.insert(root, tree.clone());
        }
        Ok(tree)
    }

    /// Reads local sources from disk (off the async threads), stages them
    /// under `prefix` and adds their blobs to `blobs`.
    async fn stage_sources(
        &self,
        element: &str,
        sources: &[SourceTree],
        prefix: &str,
        staging: &mut Staging,
        blobs: &mut BlobSet,
    ) -> Result<(), BuildError> {
        for source in sources {
            let path = source.path.clone();
            let tree = tokio::task::spawn_blocking(move || MerkleTree::from_path(&path))
                .await
                .map_err(|e| BuildError::Element { element: element.into(), reason: e.to_string() })?
                .map_err(|source| BuildError::Source { element: element.into(), source })?;
            add_tree_blobs(&tree, blobs);
            let directories: Directories = tree.directories().map(|d| (d.digest, d.directory.clone())).collect();
            let at = join(prefix, &relative(&source.directory));
            staging.stage_tree(element, &at, tree.root_digest(), &directories)?;
        }
        Ok(())
    }

    /// Encodes `staging`, uploads its directories and `blobs`; returns the root.
    async fn upload_staging(&self, element: &str, staging: &Staging, blobs: BlobSet) -> Result<Digest, BuildError> {
        let (root, blobs) = encode_staging(element, staging, blobs)?;
        self.cas().upload(&blobs).await?;
        Ok(root)
    }

    async fn build_import(&self, job: &Job, sources: &[SourceTree], source: &str, target: &str) -> Result<Digest, BuildError> {
        let element = &job.element().name;
        let mut staging = Staging::new();
        let mut blobs = BlobSet::new();
        self.stage_sources(element, sources, "", &mut staging, &mut blobs).await?;
        let source = relative(source);
        let target = relative(target);
        if source.is_empty() && target.is_empty() {
            return self.upload_staging(element, &staging, blobs).await;
        }
        // Relocate: the `source` subdirectory of the sources, under `target`.
        let staged = staging.build(element)?;
        let directories: Directories = staged.directories().map(|d| (d.digest, d.directory.clone())).collect();
        let sub = find_subdirectory(staged.root_digest(), &directories, &source).ok_or_else(|| BuildError::Element {
            element: element.clone(),
            reason: format!("import source directory {source:?} is not in the sources"),
        })?;
        let mut relocated = Staging::new();
        relocated.stage_tree(element, &target, sub, &directories)?;
        self.upload_staging(element, &relocated, blobs).await
    }

    /// `compose`: stage every dependency, run their integration commands
    /// (if asked and there are any), then keep what the split rules select
    /// plus whatever integration added, minus what it removed — BuildStream's
    /// composition. The integration action collects the input root's
    /// top-level entries, so a new top-level entry made by an integration
    /// command is not collected.
    async fn build_compose(&self, job: &Job, recipe: &ComposeRecipe, events: &dyn EventSink) -> Result<Digest, BuildError> {
        let element = job.element();
        let staged = job.plan.staged(job.index);
        let mut staging = Staging::new();
        let mut commands = Vec::new();
        let mut rules: HashMap<String, &SplitRules> = HashMap::new();
        for (&index, dep) in staged.iter().zip(&job.deps) {
            let public = &job.plan.elements()[index].public;
            if recipe.integrate {
                commands.extend(public.integration_commands.iter().cloned());
            }
            rules.insert(dep.element.clone(), &public.split_rules);
            let root = dep.files_digest()?;
            let tree = self.tree(root).await?;
            staging.stage_tree(&dep.element, "", root, &tree)?;
        }
        report_staging(job, &staging, events)?;
        let keeps = |owner: Option<&str>, path: &str| match owner.and_then(|o| rules.get(o)) {
            Some(rules) => recipe.filter.keeps(rules, path),
            None => true,
        };
        if commands.is_empty() {
            let owners: HashMap<String, String> = staging.paths().filter_map(|p| Some((p.to_string(), staging.owner(p)?.to_string()))).collect();
            staging.retain(|path| keeps(owners.get(path).map(String::as_str), path));
            return self.upload_staging(&element.name, &staging, BlobSet::new()).await;
        }
        let before = staging;
        let (input_root, inputs) = encode_staging(&element.name, &before, BlobSet::new())?;
        let outputs: Vec<String> = before.paths().filter(|p| !p.contains('/')).map(str::to_string).collect();
        let integration = CommandsRecipe {
            build_root: "/".into(),
            commands,
            environment: recipe.environment.clone(),
            platform: recipe.platform.clone(),
            ..Default::default()
        };
        let spec = ActionSpec::with_outputs(&integration, input_root, outputs);
        let ran = self.run_action(job, &spec, &recipe.platform, inputs).await?;
        let mut after = self.collect_outputs(&element.name, &ran.result).await?;
        after.retain(|path| match before.owner(path) {
            None => true, // added by integration
            owner => keeps(owner, path),
        });
        self.upload_staging(&element.name, &after, BlobSet::new()).await
    }

    /// `filter`: the one build dependency's files that its split rules select.
    async fn build_filter(&self, job: &Job, source: usize, filter: &SplitFilter) -> Result<Digest, BuildError> {
        let element = job.element();
        let dep = job.dependency(source).ok_or_else(|| BuildError::Element {
            element: element.name.clone(),
            reason: "the filtered dependency's artifact is not available".into(),
        })?;
        let rules = &job.plan.elements()[source].public.split_rules;
        let root = dep.files_digest()?;
        let tree = self.tree(root).await?;
        let mut staging = Staging::new();
        staging.stage_tree(&dep.element, "", root, &tree)?;
        staging.retain(|path| filter.keeps(rules, path));
        self.upload_staging(&element.name, &staging, BlobSet::new()).await
    }

    /// The validated `Tree` of an output directory.
    async fn output_directory(&self, element: &str, output: &reapi::OutputDirectory) -> Result<ValidTree, BuildError> {
        let tree_digest = Digest::try_from(output.tree_digest.as_ref()).map_err(RemoteError::from)?;
        let data = self.cas().download_one(tree_digest).await?;
        ValidTree::decode(&data).map_err(|e| BuildError::Element { element: element.into(), reason: format!("output tree {tree_digest}: {e}") })
    }

    /// Every output of a result (directories, files, symlinks) staged at its path.
    async fn collect_outputs(&self, element: &str, result: &ActionResult) -> Result<Staging, BuildError> {
        let mut staging = Staging::new();
        for output in &result.output_directories {
            let tree = self.output_directory(element, output).await?;
            let directories: Directories = tree.directories().map(|(d, dir)| (*d, dir.clone())).collect();
            staging.stage_tree(element, &relative(&output.path), tree.root_digest(), &directories)?;
        }
        for file in &result.output_files {
            let digest = Digest::try_from(file.digest.as_ref()).map_err(RemoteError::from)?;
            staging.add_file(element, &relative(&file.path), digest, file.is_executable)?;
        }
        for link in &result.output_symlinks {
            staging.add_symlink(element, &relative(&link.path), &link.target)?;
        }
        Ok(staging)
    }

    async fn build_commands(&self, job: &Job, recipe: &CommandsRecipe, events: &dyn EventSink) -> Result<Artifact, BuildError> {
        let element = job.element();
        let mut staging = Staging::new();
        let mut session: Option<String> = None;
        for (location, dep) in self.layout(job, recipe) {
            if session.as_ref() != Some(&location) {
                staging.begin_session(&location);
                session = Some(location.clone());
            }
            let root = dep.files_digest()?;
            let tree = self.tree(root).await?;
            staging.stage_tree(&dep.element, &location, root, &tree)?;
        }
        report_staging(job, &staging, events)?;
        let build_root = relative(&recipe.build_root);
        staging.add_directory(&element.name, &build_root)?;
        staging.add_directory(&element.name, &relative(&recipe.install_root))?;
        let mut blobs = BlobSet::new();
        self.stage_sources(&element.name, &recipe.sources, &build_root, &mut staging, &mut blobs).await?;
        let (input_root, inputs) = encode_staging(&element.name, &staging, blobs)?;

        // What only the staged dependencies tell: their integration commands
        // and the `digest-environment` values.
        let mut recipe = recipe.clone();
        recipe.integration_commands = integration_commands(job, &recipe);
        for (variable, roots) in &recipe.digest_environment {
            let digest = self.closure_digest(job, roots).await?;
            recipe.environment.insert(variable.clone(), format!("{}/{}", digest.hash_hex(), digest.size()));
        }
        let recipe = &recipe;
        let spec = ActionSpec::new(recipe, input_root);
        let ran = self.run_action(job, &spec, &recipe.platform, inputs).await?;
        let metadata = ran.result.execution_metadata.clone().unwrap_or_default();
        events.emit(BuildEvent::Executed {
            element: element.name.clone(),
            action: ran.action.to_string(),
            cached_result: ran.cached_result,
            run_millis: millis_between(metadata.execution_start_timestamp.as_ref(), metadata.execution_completed_timestamp.as_ref()),
            worker_millis: millis_between(metadata.worker_start_timestamp.as_ref(), metadata.worker_completed_timestamp.as_ref()),
            input_millis: millis_between(metadata.input_fetch_start_timestamp.as_ref(), metadata.input_fetch_completed_timestamp.as_ref()),
            output_millis: millis_between(metadata.output_upload_start_timestamp.as_ref(), metadata.output_upload_completed_timestamp.as_ref()),
            execute_millis: round_to_micros(ran.execute_time.as_secs_f64() * 1e3),
        });
        let files = self.output_tree(&element.name, &ran.result, &spec.output_paths[0]).await?;
        let mut artifact = Artifact::new(element, files, dependencies(job));
        artifact.stdout = ran.stdout.map(|d| d.to_string());
        artifact.stderr = ran.stderr.map(|d| d.to_string());
        artifact.action = Some(ran.action.to_string());
        Ok(artifact)
    }

    /// Uploads the action with its `inputs` (one FindMissingBlobs for all),
    /// runs it on a matching endpoint (another one than the last attempt's
    /// when retrying) and stores its logs; a non-zero exit is
    /// [`BuildError::CommandFailed`] with the log tail.
    async fn run_action(
        &self,
        job: &Job,
        spec: &ActionSpec,
        platform: &BTreeMap<String, String>,
        mut inputs: BlobSet,
    ) -> Result<RanAction, BuildError> {
        let element = job.element();
        let command = spec.command.encode_to_vec();
        let action = spec.action.encode_to_vec();
        let action_digest = Digest::of(&action);
        inputs.insert(Digest::of(&command), Blob::Data(command));
        inputs.insert(action_digest, Blob::Data(action));
        self.cas().upload(&inputs).await?;
        job.slot.acquire().await?;

        let avoid = self.last_endpoint.lock().ok().and_then(|l| l.get(&job.index).copied());
        let endpoint = self.placement.choose(platform, if job.attempt == 0 { None } else { avoid }).ok_or_else(|| BuildError::NoEndpoint {
            element: element.name.clone(),
            platform: platform.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        })?;
        if let Ok(mut last) = self.last_endpoint.lock() {
            last.insert(job.index, endpoint);
        }
        let execution = &self.executors[endpoint].execution;
        let mut guard = CancelOnDrop { execution: execution.clone(), operation: None, pending: self.cancellations.clone() };
        let sent = std::time::Instant::now();
        let response = execution.execute(action_digest, false, |name| guard.operation = Some(name.to_string())).await?;
        let execute_time = sent.elapsed();
        guard.operation = None;
        let cached_result = response.cached_result;
        let result = response.result.unwrap_or_default();
        let (stdout, stderr) = self.store_logs(&result).await?;
        if result.exit_code != 0 {
            let log_tail = self.log_tail(&[stdout, stderr]).await;
            return Err(BuildError::CommandFailed {
                element: element.name.clone(),
                exit_code: result.exit_code,
                log_tail,
                logs: [stdout, stderr].into_iter().flatten().collect(),
            });
        }
        // The action succeeded: the next one may start while this element's
        // outputs and record are stored (a failure keeps the slot until the
        // queue has decided whether to stop).
        job.slot.release();
        Ok(RanAction { result, stdout, stderr, action: action_digest, cached_result, execute_time })
    }

    /// The staged dependency artifacts with the location each goes to, in
    /// staging order: everything at `/` unless the recipe has a layout.
    fn layout<'a>(&self, job: &'a Job, recipe: &CommandsRecipe) -> Vec<(String, &'a Artifact)> {
        if recipe.layout.is_empty() {
            return job.deps.iter().map(|dep| (String::new(), dep)).collect();
        }
        let mut out = Vec::new();
        for (location, roots) in &recipe.layout {
            for index in job.plan.runtime_closure(roots) {
                if let Some(artifact) = job.dependency(index) {
                    out.push((relative(location), artifact));
                }
            }
        }
        out
    }

    /// The CAS digest of the runtime closure of `roots` staged alone at `/`
    /// (BuildElement's `digest-environment`, a "subsandbox" in BuildStream).
    async fn closure_digest(&self, job: &Job, roots: &[usize]) -> Result<Digest, BuildError> {
        let mut staging = Staging::new();
        for index in job.plan.runtime_closure(roots) {
            let Some(dep) = job.dependency(index) else { continue };
            let root = dep.files_digest()?;
            let tree = self.tree(root).await?;
            staging.stage_tree(&dep.element, "", root, &tree)?;
        }
        // Only the digest is needed: the tree itself is not part of the action.
        Ok(staging.build(&job.element().name)?.root_digest())
    }

    /// The stdout and stderr of a result as CAS digests (inline output is uploaded).
    async fn store_logs(&self, result: &ActionResult) -> Result<(Option<Digest>, Option<Digest>), BuildError> {
        let mut out = [None, None];
        let mut blobs = BlobSet::new();
        for (slot, (raw, digest)) in
            out.iter_mut().zip([(&result.stdout_raw, &result.stdout_digest), (&result.stderr_raw, &result.stderr_digest)])
        {
            if let Some(digest) = digest {
                let digest = Digest::try_from(digest).map_err(RemoteError::from)?;
                *slot = (digest.size() > 0).then_some(digest);
            } else if !raw.is_empty() {
                let digest = Digest::of(raw);
                blobs.insert(digest, Blob::Data(raw.clone()));
                *slot = Some(digest);
            }
        }
        if !blobs.is_empty() {
            self.cas().upload(&blobs).await?;
        }
        Ok((out[0], out[1]))
    }

    /// The last lines of the logs (best effort: a log that cannot be read is skipped).
    async fn log_tail(&self, logs: &[Option<Digest>]) -> String {
        let mut text = String::new();
        for digest in logs.iter().flatten() {
            if let Ok(data) = self.cas().download_one(*digest).await {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// The output directory at `path` as a tree in the storage CAS; an
    /// install root the command left empty or removed is an empty tree. A
    /// server that stored the directories itself (`root_directory_digest`,
    /// asked for with `TREE_AND_DIRECTORY`) saves the download of the `Tree`
    /// and the upload of its directories.
    async fn output_tree(&self, element: &str, result: &ActionResult, path: &str) -> Result<Digest, BuildError> {
        let Some(output) = result.output_directories.iter().find(|d| relative(&d.path) == path) else {
            let (bytes, digest) = encode_directory(&reapi::Directory::default());
            self.cas().upload(&BlobSet::from([(digest, Blob::Data(bytes))])).await?;
            return Ok(digest);
        };
        if let Some(root) = &output.root_directory_digest {
            return Digest::try_from(root).map_err(|e| BuildError::Element { element: element.into(), reason: format!("output root directory digest: {e}") });
        }
        let tree = self.output_directory(element, output).await?;
        let blobs: BlobSet = tree
            .directories()
            .map(|(digest, directory)| (*digest, Blob::Data(directory.encode_to_vec())))
            .collect();
        self.cas().upload(&blobs).await?;
        Ok(tree.root_digest())
    }
}

impl ElementRunner for RemoteRunner {
    async fn lookup(&self, job: &Job) -> Result<Option<Artifact>, BuildError> {
        let element = job.element();
        if let Some(artifact) = self.storage.lookup(&element.project, &element.name, &element.keys.strong).await? {
            return Ok(Some(artifact));
        }
        if !self.strict {
            return self.storage.lookup(&element.project, &element.name, &element.keys.weak).await;
        }
        Ok(None)
    }

    async fn lookup_all(&self, plan: &Arc<BuildPlan>) -> Vec<Result<Option<Artifact>, BuildError>> {
        let elements = plan.elements();
        let names = |weak: bool, which: &[usize]| -> Vec<ArtifactName<'_>> {
            which
                .iter()
                .map(|&i| {
                    let e = &elements[i];
                    ArtifactName { project: &e.project, element: &e.name, key: if weak { &e.keys.weak } else { &e.keys.strong } }
                })
                .collect()
        };
        let all: Vec<usize> = (0..elements.len()).collect();
        let mut found = self.storage.lookup_many(&names(false, &all)).await;
        if !self.strict {
            let misses: Vec<usize> = all.into_iter().filter(|&i| matches!(found[i], Ok(None))).collect();
            let by_weak = self.storage.lookup_many(&names(true, &misses)).await;
            for (index, result) in misses.into_iter().zip(by_weak) {
                found[index] = result;
            }
        }
        found
    }

    async fn build(&self, job: &Job, events: &dyn EventSink) -> Result<Artifact, BuildError> {
        let element = job.element();
        let artifact = match &element.recipe {
            Recipe::Stack => {
                let (bytes, digest) = encode_directory(&reapi::Directory::default());
                self.cas().upload(&BlobSet::from([(digest, Blob::Data(bytes))])).await?;
                Artifact::new(element, digest, dependencies(job))
            }
            Recipe::Import { sources, source, target } => {
                let files = self.build_import(job, sources, source, target).await?;
                Artifact::new(element, files, dependencies(job))
            }
            Recipe::Commands(recipe) => self.build_commands(job, recipe, events).await?,
            Recipe::Filter { source, filter } => {
                let files = self.build_filter(job, *source, filter).await?;
                Artifact::new(element, files, dependencies(job))
            }
            Recipe::Compose(recipe) => {
                let files = self.build_compose(job, recipe, events).await?;
                Artifact::new(element, files, dependencies(job))
            }
        };
        self.storage.store(&artifact).await?;
        Ok(artifact)
    }
}

/// A finished action that exited 0.
struct RanAction {
    result: ActionResult,
    stdout: Option<Digest>,
    stderr: Option<Digest>,
    action: Digest,
    cached_result: bool,
    /// The `Execute` call's duration as seen here.
    execute_time: std::time::Duration,
}

/// Milliseconds from `start` to `end`, to the microsecond (0 when either is
/// missing or they are reversed).
fn millis_between(start: Option<&weir_proto::protobuf::Timestamp>, end: Option<&weir_proto::protobuf::Timestamp>) -> f64 {
    let (Some(start), Some(end)) = (start, end) else { return 0.0 };
    let nanos = (i128::from(end.seconds) - i128::from(start.seconds)) * 1_000_000_000 + i128::from(end.nanos) - i128::from(start.nanos);
    round_to_micros((nanos.max(0) as f64) / 1e6)
}

/// `millis` rounded to three decimals (whole microseconds).
fn round_to_micros(millis: f64) -> f64 {
    (millis * 1e3).round() / 1e3
}

/// Cancels the remote operation if the build of an element is dropped
/// while the operation runs (Ctrl-C, `--on-error quit` does not drop).
struct CancelOnDrop {
    execution: crate::remote::Execution,
    operation: Option<String>,
    pending: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let (Some(operation), Ok(runtime)) = (self.operation.take(), tokio::runtime::Handle::try_current()) {
            let execution = self.execution.clone();
            let task = runtime.spawn(async move {
                if let Err(error) = execution.cancel(&operation).await {
                    tracing::debug!(%operation, %error, "could not cancel the remote operation");
                }
            });
            if let Ok(mut pending) = self.pending.lock() {
                pending.push(task);
            }
        }
    }
}

/// The direct build dependencies of a job as `(element, strong key)` (as
/// BuildStream's artifact records them; the staged closure follows from them).
/// The integration commands of the dependencies a BuildElement stages at
/// `/`, in staging order (BuildStream's "Integrating sandbox").
fn integration_commands(job: &Job, recipe: &CommandsRecipe) -> Vec<String> {
    let elements = job.plan.elements();
    let at_root: Vec<usize> = if recipe.layout.is_empty() {
        job.plan.staged(job.index).to_vec()
    } else {
        let roots: Vec<usize> = recipe.layout.iter().filter(|(location, _)| location == "/").flat_map(|(_, roots)| roots.iter().copied()).collect();
        job.plan.runtime_closure(&roots)
    };
    at_root.iter().filter_map(|&i| elements.get(i)).flat_map(|e| e.public.integration_commands.iter().cloned()).collect()
}

/// Turns the staging warnings of the job's dependencies into events, or
/// into an error for the first one the element's project makes fatal.
fn report_staging(job: &Job, staging: &Staging, events: &dyn EventSink) -> Result<(), BuildError> {
    let element = job.element();
    let elements = job.plan.elements();
    let whitelists: HashMap<&str, &[String]> = job
        .plan
        .staged(job.index)
        .iter()
        .filter_map(|&i| elements.get(i))
        .map(|e| (e.name.as_str(), e.public.overlap_whitelist.as_slice()))
        .collect();
    for warning in staging.warnings(|name| whitelists.get(name).copied().unwrap_or(&[])) {
        if element.fatal_warnings.iter().any(|t| t == warning.token) {
            return Err(BuildError::FatalWarning { element: element.name.clone(), token: warning.token.to_string(), message: warning.message() });
        }
        events.emit(BuildEvent::Warning { element: element.name.clone(), token: warning.token.to_string(), brief: warning.brief, detail: warning.detail });
    }
    Ok(())
}

fn dependencies(job: &Job) -> Vec<(String, String)> {
    let staged = job.plan.staged(job.index);
    job.element()
        .build_deps
        .iter()
        .filter_map(|index| staged.iter().position(|s| s == index).and_then(|p| job.deps.get(p)))
        .map(|d| (d.element.clone(), d.strong_key.clone()))
        .collect()
}

/// Encodes `staging`; returns its root and `blobs` plus its directories.
fn encode_staging(element: &str, staging: &Staging, mut blobs: BlobSet) -> Result<(Digest, BlobSet), BuildError> {
    let tree = staging.build(element)?;
    for directory in tree.directories() {
        blobs.insert(directory.digest, Blob::Data(directory.bytes.clone()));
    }
    Ok((tree.root_digest(), blobs))
}

/// Adds a tree read from disk (directories and files) to an upload set.
fn add_tree_blobs(tree: &MerkleTree, blobs: &mut BlobSet) {
    for directory in tree.directories() {
        blobs.insert(directory.digest, Blob::Data(directory.bytes.clone()));
    }
    for file in tree.files() {
        if let Some(path) = &file.path {
            blobs.insert(file.digest, Blob::File(path.clone()));
        }
    }
}

/// `a/b` from `a` and `b`, either possibly empty.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// The digest of the directory at relative `path` inside the tree `root`.
fn find_subdirectory(root: Digest, directories: &Directories, path: &str) -> Option<Digest> {
    let mut current = root;
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let directory = directories.get(&current)?;
        let node = directory.directories.iter().find(|d| d.name == segment)?;
        current = Digest::try_from(node.digest.as_ref()).ok()?;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::sync::watch;

    use super::*;
    use crate::build::{ArtifactKeys, BuildPlan, BuildQueue, ElementResult, EventLog, OnError, PlanElement, QueueOptions};
    use crate::remote::fake_server::{host_run, FakeServer};
    use crate::remote::EndpointSpec;

    fn element(name: &str, key: &str, build: &[usize], recipe: Recipe) -> PlanElement {
        PlanElement {
            project: "test".into(),
            name: name.into(),
            keys: ArtifactKeys { strong: format!("{key}-s"), weak: format!("{key}-w") },
            build_deps: build.to_vec(),
            runtime_deps: vec![],
            recipe,
            public: Default::default(),
            fatal_warnings: vec![],
        }
    }

    fn import(dir: &Path) -> Recipe {
        Recipe::Import { sources: vec![SourceTree { path: dir.to_path_buf(), directory: String::new() }], source: "/".into(), target: "/".into() }
    }

    /// Commands run in the fake's host sandbox, so they use paths relative to the build root.
    fn manual(name: &str, commands: &[&str]) -> Recipe {
        Recipe::Commands(CommandsRecipe {
            build_root: format!("/buildstream/test/{name}"),
            install_root: "/buildstream-install".into(),
            commands: commands.iter().map(|c| c.to_string()).collect(),
            environment: BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]),
            ..Default::default()
        })
    }

    async fn build(server: &FakeServer, plan: Vec<PlanElement>) -> (crate::build::BuildReport, Vec<BuildEvent>) {
        let client = RemoteClient::connect(EndpointSpec::new(&server.url).unwrap()).await.unwrap();
        let runner = Arc::new(RemoteRunner::new(client.clone(), vec![(client, Offer::default())]));
        let log = Arc::new(EventLog::default());
        let options = QueueOptions { builders: 2, on_error: OnError::Continue, max_retries: 1, backoff: std::time::Duration::from_millis(1) };
        let queue = BuildQueue::new(runner, options, log.clone());
        let (_tx, rx) = watch::channel(false);
        let report = queue.run(Arc::new(BuildPlan::new(plan).unwrap()), rx).await;
        (report, log.events())
    }

    /// Writes `files` (relative path, content) under `root`.
    fn write_files(root: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
    }

    /// Reads `path` from an artifact tree in the fake CAS.
    fn read_file(server: &FakeServer, root: Digest, path: &str) -> Option<Vec<u8>> {
        let mut current = root;
        let mut segments: Vec<&str> = path.split('/').collect();
        let name = segments.pop()?;
        for segment in segments {
            let dir: reapi::Directory = server.state.get_message(&current.to_proto())?;
            current = Digest::try_from(dir.directories.iter().find(|d| d.name == segment)?.digest.as_ref()).ok()?;
        }
        let dir: reapi::Directory = server.state.get_message(&current.to_proto())?;
        let file = dir.files.iter().find(|f| f.name == name)?;
        server.state.get(&Digest::try_from(file.digest.as_ref()).ok()?)
    }

    #[test]
    fn action_times_come_from_timestamp_differences() {
        use weir_proto::protobuf::Timestamp;
        let at = |seconds, nanos| Timestamp { seconds, nanos };
        assert_eq!(millis_between(Some(&at(10, 900_000_000)), Some(&at(12, 100_000_000))), 1200.0);
        assert_eq!(millis_between(Some(&at(10, 0)), Some(&at(10, 2_345_678))), 2.346, "to the microsecond");
        assert_eq!(millis_between(Some(&at(12, 0)), Some(&at(10, 0))), 0.0, "reversed clocks give 0");
        assert_eq!(millis_between(None, Some(&at(1, 0))), 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn import_manual_stack_then_everything_cached() {
        let server = FakeServer::start(4 << 20, Box::new(host_run)).await;
        let project = tempfile::tempdir().unwrap();
        let base = project.path().join("base");
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::write(base.join("etc/greeting"), "hello from base\n").unwrap();
        let plan = vec![
            element("base.bst", "k0", &[], import(&base)),
            element(
                "greet.bst",
                "k1",
                &[0],
                manual("greet.bst", &[
                    "echo configuring",
                    "mkdir -p ../../../buildstream-install/usr/share && cp ../../../etc/greeting ../../../buildstream-install/usr/share/msg",
                ]),
            ),
            element("all.bst", "k2", &[1], Recipe::Stack),
        ];
        let (report, events) = build(&server, plan.clone()).await;
        assert!(report.success(), "{events:#?}");
        assert_eq!(report.built(), 3);
        let greet = report.results[1].artifact().unwrap();
        assert_eq!(read_file(&server, greet.files_digest().unwrap(), "usr/share/msg").as_deref(), Some(&b"hello from base\n"[..]));
        // The log went to the CAS and names the command.
        let log = server.state.get(&greet.stdout.as_ref().unwrap().parse().unwrap()).unwrap();
        assert!(String::from_utf8_lossy(&log).contains("Running echo configuring"), "{}", String::from_utf8_lossy(&log));
        assert_eq!(greet.dependencies, [("base.bst".to_string(), "k0-s".to_string())]);
        // One `executed` event, for the one element that ran an action.
        let executed: Vec<&BuildEvent> = events.iter().filter(|e| matches!(e, BuildEvent::Executed { .. })).collect();
        assert!(matches!(executed.as_slice(), [BuildEvent::Executed { element, action, cached_result: false, .. }] if element == "greet.bst" && Some(action) == greet.action.as_ref()), "{executed:?}");

        let executes = server.state.executes.load(std::sync::atomic::Ordering::SeqCst);
        let (again, events) = build(&server, plan).await;
        assert_eq!((again.cached(), again.built()), (3, 0), "{events:#?}");
        assert_eq!(server.state.executes.load(std::sync::atomic::Ordering::SeqCst), executes);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_command_reports_its_exit_code_and_log_tail() {
        let server = FakeServer::start(4 << 20, Box::new(host_run)).await;
        let plan = vec![
            element("bad.bst", "b0", &[], manual("bad.bst", &["echo about to fail", "echo 'no such thing' >&2; exit 4", "echo unreachable"])),
            element("after.bst", "b1", &[0], Recipe::Stack),
        ];
        let (report, events) = build(&server, plan).await;
        match &report.results[0] {
            ElementResult::Failed(BuildError::CommandFailed { exit_code, log_tail, logs, .. }) => {
                assert_eq!(*exit_code, 4);
                assert!(log_tail.contains("no such thing") && log_tail.contains("about to fail"), "{log_tail}");
                assert!(!log_tail.contains("unreachable"));
                assert!(!logs.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(report.results[1], ElementResult::Skipped));
        assert!(events.iter().any(|e| matches!(e, BuildEvent::Failed { exit_code: Some(4), .. })));
        // A real failure is not retried.
        assert!(!events.iter().any(|e| matches!(e, BuildEvent::Retrying { .. })));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_layout_stages_dependencies_at_their_locations() {
        let server = FakeServer::start(4 << 20, Box::new(host_run)).await;
        let project = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(project.path().join("sdk")).unwrap();
        std::fs::write(project.path().join("sdk/lib.txt"), "lib").unwrap();
        let script = Recipe::Commands(CommandsRecipe {
            build_root: "/".into(),
            install_root: "/out".into(),
            commands: vec!["cp sysroot/lib.txt out/found.txt".into()],
            environment: BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]),
            layout: vec![("/sysroot".into(), vec![0])],
            ..Default::default()
        });
        let plan = vec![element("sdk.bst", "l0", &[], import(&project.path().join("sdk"))), element("script.bst", "l1", &[0], script)];
        let (report, events) = build(&server, plan).await;
        assert!(report.success(), "{events:#?}");
        let artifact = report.results[1].artifact().unwrap();
        assert_eq!(read_file(&server, artifact.files_digest().unwrap(), "found.txt").as_deref(), Some(&b"lib"[..]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compose_keeps_what_the_split_rules_select_and_what_integration_adds() {
        let server = FakeServer::start(4 << 20, Box::new(host_run)).await;
        let project = tempfile::tempdir().unwrap();
        write_files(&project.path().join("lib"), &[("usr/bin/tool", "t"), ("usr/include/tool.h", "h"), ("etc/tool.conf", "c")]);
        let mut lib = element("lib.bst", "c0", &[], import(&project.path().join("lib")));
        lib.public.split_rules.domains = BTreeMap::from([
            ("devel".to_string(), vec!["/usr/include".to_string()]),
            ("runtime".to_string(), vec!["/usr/bin/*".to_string()]),
        ]);
        let filter = crate::build::SplitFilter { include: vec!["runtime".into()], exclude: vec![], include_orphans: true };
        let compose = |key: &str| {
            element(
                "image.bst",
                key,
                &[0],
                Recipe::Compose(ComposeRecipe {
                    filter: filter.clone(),
                    integrate: true,
                    environment: BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]),
                    ..Default::default()
                }),
            )
        };
        let (report, events) = build(&server, vec![lib.clone(), compose("c1")]).await;
        assert!(report.success(), "{events:#?}");
        let root = report.results[1].artifact().unwrap().files_digest().unwrap();
        assert_eq!(read_file(&server, root, "usr/bin/tool").as_deref(), Some(&b"t"[..]));
        assert_eq!(read_file(&server, root, "etc/tool.conf").as_deref(), Some(&b"c"[..]), "orphans kept");
        assert_eq!(read_file(&server, root, "usr/include/tool.h"), None, "devel dropped");
        let executes = server.state.executes.load(std::sync::atomic::Ordering::SeqCst);

        // With integration commands, their additions are kept and their removals honoured.
        lib.public.integration_commands = vec!["echo cache > etc/tool.cache".into(), "rm usr/bin/tool".into()];
        lib.keys.strong = "c2-s".into();
        let (report, events) = build(&server, vec![lib, compose("c3")]).await;
        assert!(report.success(), "{events:#?}");
        assert_eq!(server.state.executes.load(std::sync::atomic::Ordering::SeqCst), executes + 1);
        let root = report.results[1].artifact().unwrap().files_digest().unwrap();
        assert_eq!(read_file(&server, root, "etc/tool.cache").as_deref(), Some(&b"cache\n"[..]));
        assert_eq!(read_file(&server, root, "usr/bin/tool"), None, "removed by integration");
        assert_eq!(read_file(&server, root, "usr/include/tool.h"), None, "devel still dropped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn filter_keeps_the_selected_domains_of_its_dependency_only() {
        let server = FakeServer::start_default().await;
        let project = tempfile::tempdir().unwrap();
        write_files(&project.path().join("lib"), &[("usr/bin/tool", "t"), ("usr/include/tool.h", "h"), ("etc/tool.conf", "c")]);
        let mut lib = element("lib.bst", "f0", &[], import(&project.path().join("lib")));
        lib.public.split_rules.domains = BTreeMap::from([("devel".to_string(), vec!["/usr/include/**".to_string()])]);
        let filter = crate::build::SplitFilter { include: vec!["devel".into()], exclude: vec![], include_orphans: false };
        let headers = element("headers.bst", "f1", &[0], Recipe::Filter { source: 0, filter });
        let (report, events) = build(&server, vec![lib, headers]).await;
        assert!(report.success(), "{events:#?}");
        let root = report.results[1].artifact().unwrap().files_digest().unwrap();
        assert_eq!(read_file(&server, root, "usr/include/tool.h").as_deref(), Some(&b"h"[..]));
        assert_eq!(read_file(&server, root, "usr/bin/tool"), None);
        assert_eq!(read_file(&server, root, "etc/tool.conf"), None, "orphans dropped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlapping_dependencies_are_reported() {
        let server = FakeServer::start(4 << 20, Box::new(host_run)).await;
        let project = tempfile::tempdir().unwrap();
        for (dir, text) in [("one", "1"), ("two", "2")] {
            std::fs::create_dir_all(project.path().join(dir).join("etc")).unwrap();
            std::fs::write(project.path().join(dir).join("etc/conf"), text).unwrap();
        }
        let plan = vec![
            element("one.bst", "o1", &[], import(&project.path().join("one"))),
            element("two.bst", "o2", &[], import(&project.path().join("two"))),
            element("user.bst", "o3", &[0, 1], manual("user.bst", &["mkdir -p ../../../buildstream-install && cp ../../../etc/conf ../../../buildstream-install/"])),
        ];
        let (report, events) = build(&server, plan).await;
        assert!(report.success(), "{events:#?}");
        let warnings: Vec<_> = events.iter().filter(|e| matches!(e, BuildEvent::Warning { .. })).collect();
        assert_eq!(
            warnings,
            [&BuildEvent::Warning {
                element: "user.bst".into(),
                token: "overlaps".into(),
                brief: "Non-whitelisted overlaps detected".into(),
                detail: "Staged files overwrite existing files in staging area: /\n\
                         /etc/conf: two.bst is not permitted to overlap other elements, order two.bst above one.bst \n"
                    .into(),
            }]
        );
        // The later dependency won.
        let user = report.results[2].artifact().unwrap();
        assert_eq!(read_file(&server, user.files_digest().unwrap(), "conf").as_deref(), Some(&b"2"[..]));
    }
}
