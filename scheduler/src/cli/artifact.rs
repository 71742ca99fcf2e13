//! `weir artifact checkout|log|list-contents ELEMENT`: find an element's
//! artifact on the remote by its key and show or extract it, as BuildStream's
//! `bst artifact` commands do. With no remote configured, the artifact is
//! looked up in the embedded worker's cache, where `weir build` put it.
//!
//! Key decision: the element is named as in `weir build` (loaded from the
//! project, keys computed), so the artifact shown is the one the current
//! project state would build; a missing artifact is an error naming the key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::build::{build_failure, runtime, RemoteArgs, Session};
use super::{Failure, GlobalArgs};
use crate::build::{Artifact, ArtifactCache, Checkout};

/// `weir artifact` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ArtifactCommand {
    /// Extract an element's artifact into a directory.
    Checkout(CheckoutArgs),
    /// Print the build log of an element's artifact.
    Log(ElementArgs),
    /// List the files of an element's artifact.
    ListContents(ElementArgs),
}

/// An element and where its artifact is.
#[derive(Debug, Clone, Args)]
pub struct ElementArgs {
    /// Remote options.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The element.
    #[arg(value_name = "ELEMENT")]
    pub element: String,
}

/// `weir artifact checkout` arguments.
#[derive(Debug, Clone, Args)]
pub struct CheckoutArgs {
    /// The element and remote.
    #[command(flatten)]
    pub target: ElementArgs,
    /// The directory to check out into (must be empty or absent unless `--force`).
    #[arg(long = "directory", value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// Check out into a non-empty directory.
    #[arg(short = 'f', long = "force")]
    pub force: bool,
}

/// Runs a `weir artifact` subcommand.
pub fn run(global: &GlobalArgs, command: &ArtifactCommand) -> Result<ExitCode, Failure> {
    runtime()?.block_on(async {
        match command {
            ArtifactCommand::Checkout(args) => checkout(global, args).await,
            ArtifactCommand::Log(args) => log(global, args).await,
            ArtifactCommand::ListContents(args) => list_contents(global, args).await,
        }
    })
}

/// Loads the element and finds its artifact.
async fn find(global: &GlobalArgs, args: &ElementArgs) -> Result<(Session, Artifact), Failure> {
    let session = Session::open(global, &args.remote, std::slice::from_ref(&args.element)).await?;
    let id = *session.graph.targets.first().ok_or_else(|| Failure::new("APP", "INTERNAL", "no target loaded"))?;
    let element = session.graph.element(id);
    let keys = session
        .artifact_keys(id)
        .ok_or_else(|| Failure::new("STREAM", "KEY_UNKNOWN", format!("{}: cache key cannot be computed", element.full_name)))?;
    let cache = ArtifactCache::new(session.storage.clone());
    let artifact = cache
        .lookup(&element.project_name, &element.full_name, &keys.strong)
        .await
        .map_err(build_failure)?
        .ok_or_else(|| {
            Failure::new("STREAM", "ARTIFACT_NOT_CACHED", format!("{}: artifact {} is not cached on the remote", element.full_name, keys.strong))
        })?;
    Ok((session, artifact))
}

async fn checkout(global: &GlobalArgs, args: &CheckoutArgs) -> Result<ExitCode, Failure> {
    let (session, artifact) = find(global, &args.target).await?;
    let directory = match &args.directory {
        Some(dir) => dir.clone(),
        None => PathBuf::from(artifact.element.trim_end_matches(".bst").replace([':', '/'], "-")),
    };
    if !args.force && std::fs::read_dir(&directory).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(Failure::new("STREAM", "CHECKOUT_NOT_EMPTY", format!("checkout directory {} is not empty (use --force)", directory.display())));
    }
    let cas = &session.storage.cas;
    let tree = Checkout::read(cas, artifact.files_digest().map_err(build_failure)?).await.map_err(build_failure)?;
    let files = tree.write(cas, &directory).await.map_err(build_failure)?;
    eprintln!("Checked out {} ({files} files) to {}", artifact.element, directory.display());
    session.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn log(global: &GlobalArgs, args: &ElementArgs) -> Result<ExitCode, Failure> {
    let (session, artifact) = find(global, args).await?;
    let digests = artifact.log_digests();
    if digests.is_empty() {
        eprintln!("{}: the artifact has no build log (nothing ran to build it)", artifact.element);
    }
    let cas = &session.storage.cas;
    let mut stdout = std::io::stdout().lock();
    for digest in digests {
        let data = cas.download_one(digest).await.map_err(|e| build_failure(e.into()))?;
        use std::io::Write;
        let _ = stdout.write_all(&data);
    }
    drop(stdout);
    session.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn list_contents(global: &GlobalArgs, args: &ElementArgs) -> Result<ExitCode, Failure> {
    let (session, artifact) = find(global, args).await?;
    let cas = &session.storage.cas;
    let tree = Checkout::read(cas, artifact.files_digest().map_err(build_failure)?).await.map_err(build_failure)?;
    let mut text = format!("{}:\n\n", artifact.element);
    for path in tree.paths() {
        text.push_str(&format!("\t{path}\n"));
    }
    super::print_stdout(&text);
    session.close().await;
    Ok(ExitCode::SUCCESS)
}
