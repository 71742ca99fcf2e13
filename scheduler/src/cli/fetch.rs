//! `weir fetch`: downloads the `tar` and `remote` sources of elements into
//! the source cache, as BuildStream's `bst source fetch` does, so that a
//! later `weir build` (or one without network) finds them there.
//!
//! Key decision: the same fetch step as `weir build` (`crate::fetch`), and
//! BuildStream's selection: the targets only unless `--deps` says otherwise.

use std::collections::HashSet;
use std::process::ExitCode;

use clap::Args;

use super::build::{runtime, source_cache_dir, source_failure, Printer, RemoteArgs};
use super::show::{load_options, project_directory};
use super::{DepsMode, Failure, GlobalArgs};
use crate::graph::{ElementId, Scope};
use crate::loader;

/// `weir fetch` arguments, as BuildStream's `bst source fetch`.
#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// Which elements' sources to fetch besides the targets (BuildStream's default: none).
    #[arg(short = 'd', long = "deps", value_enum, default_value_t = DepsMode::None)]
    pub deps: DepsMode,
    /// The cache directory (`--cache-dir`) and remotes, as for `weir build`.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Element targets (default: the project's default targets).
    #[arg(value_name = "ELEMENT")]
    pub targets: Vec<String>,
}

/// Runs `weir fetch`.
pub fn run(global: &GlobalArgs, args: &FetchArgs) -> Result<ExitCode, Failure> {
    let directory = project_directory(global)?;
    let graph = loader::load(&directory, &args.targets, &load_options(global)).map_err(super::build::load_failure)?.graph;
    let selected: HashSet<ElementId> = graph.select(&graph.targets, Scope::from(args.deps)).into_iter().collect();
    let step = crate::fetch::FetchStep::new(&source_cache_dir(&args.remote, global)?);
    let printer = Printer::new(false);
    runtime()?
        .block_on(step.fetch(&graph, &graph.targets, &printer, |element| selected.contains(&element.id)))
        .map_err(source_failure)?;
    printer.finish();
    let located = step.locate(&graph, &graph.targets).map_err(source_failure)?;
    let fetched = selected.iter().filter(|&&id| (0..graph.element(id).sources.len()).any(|i| located.tree(id, i).is_some())).count();
    eprintln!("Fetch summary: sources of {fetched} element(s) are in the source cache ({} element(s) selected)", selected.len());
    Ok(ExitCode::SUCCESS)
}
