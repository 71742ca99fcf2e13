//! The `weir` command line: argument parsing, dispatch to commands and the one
//! place where failures become messages and exit codes.
//!
//! The global options mirror BuildStream's (`-C`, `-c`, `-o NAME VALUE`,
//! `--no-colors`, `--error-format`), so that a `bst` command line works with
//! `weir` in place of `bst`.

mod artifact;
mod build;
mod fetch;
mod project;
mod report;
mod show;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use report::{Failure, ErrorFormat};

/// Exit status of a command that ran and succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit status of a command that failed (bad input, a load error, a failed build).
pub const EXIT_FAILURE: u8 = 1;

/// Weir: a distributed remote-execution build scheduler for BuildStream 2 projects.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options that come before the command, as in BuildStream.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Project directory (default: search upwards from the current directory for project.conf).
    /// As in BuildStream it goes before the command, so that a command's own
    /// `--directory` (`artifact checkout --directory DIR`) stays the command's.
    #[arg(short = 'C', long = "directory", value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// User configuration file (BuildStream's user-config shape).
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set a project option, `-o NAME VALUE` (repeatable; toplevel project only).
    #[arg(short = 'o', long = "option", global = true, num_args = 2, value_names = ["NAME", "VALUE"], action = clap::ArgAction::Append)]
    pub option: Vec<String>,
    /// Never print colour codes.
    #[arg(long = "no-colors", global = true)]
    pub no_colors: bool,
    /// REAPI endpoint for `build` and `artifact` (`grpc://HOST:PORT` or
    /// `grpcs://HOST:PORT`); repeat for several execution endpoints (the
    /// first also stores artifacts). Accepted before or after the command
    /// (`weir --remote URL build ...`). Without it, the remotes of the user
    /// configuration (`-c FILE`) are used, else the embedded worker.
    #[arg(long = "remote", global = true, env = "WEIR_REMOTE", value_name = "URL", value_delimiter = ',')]
    pub remotes: Vec<String>,
    /// How errors are reported on stderr.
    #[arg(long = "error-format", global = true, value_enum, default_value_t = ErrorFormat::Human)]
    pub error_format: ErrorFormat,
}

impl GlobalArgs {
    /// The `-o NAME VALUE` pairs in the order given.
    pub fn option_pairs(&self) -> Vec<(String, String)> {
        self.option
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair.get(1).cloned().unwrap_or_default()))
            .collect()
    }
}

/// Writes `text` to stdout. A closed pipe (`weir ... | head`) is not an
/// error worth a panic: what the reader did not want is dropped.
pub(crate) fn print_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// The commands Weir knows.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show elements of the pipeline, in dependency order.
    Show(ShowArgs),
    /// Build elements that are not cached, on a REAPI remote.
    Build(build::BuildArgs),
    /// Fetch the `tar` and `remote` sources of elements into the source cache.
    Fetch(fetch::FetchArgs),
    /// Manipulate sources (`weir source track`; not built yet).
    Source(PendingArgs),
    /// Inspect and check out artifacts.
    #[command(subcommand)]
    Artifact(artifact::ArtifactCommand),
    /// Create a new project (not built yet).
    Init(PendingArgs),
    /// Project-level commands.
    #[command(subcommand)]
    Project(ProjectCommand),
}

/// `weir show` arguments, as BuildStream's `bst show`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// Which dependencies to show along with the targets.
    #[arg(short = 'd', long = "deps", value_enum, default_value_t = DepsMode::All)]
    pub deps: DepsMode,
    /// Format string for each element (`%{name}`, `%{vars}`, `%{config}`, `%{public}`, `%{env}`, `%{full-key}`, `%{key}`, `%{state}`).
    #[arg(short = 'f', long = "format", value_name = "FORMAT")]
    pub format: Option<String>,
    /// The artifact cache `%{state}` asks (as for `weir build`).
    #[command(flatten)]
    pub remote: build::RemoteArgs,
    /// Element targets (default: the project's default targets).
    #[arg(value_name = "ELEMENT")]
    pub targets: Vec<String>,
}

/// Dependency selection for `show` (and later `build`, `fetch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DepsMode {
    /// Only the targets.
    None,
    /// The targets and their build dependencies' runtime closures.
    Build,
    /// The targets and their runtime closure.
    Run,
    /// Everything the targets depend on.
    All,
}

impl From<DepsMode> for crate::graph::Scope {
    fn from(mode: DepsMode) -> Self {
        match mode {
            DepsMode::None => crate::graph::Scope::None,
            DepsMode::Build => crate::graph::Scope::Build,
            DepsMode::Run => crate::graph::Scope::Run,
            DepsMode::All => crate::graph::Scope::All,
        }
    }
}

/// Project-level commands.
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Load project.conf only and print the project name and resolved options.
    Show,
}

/// Arguments of commands that are not built yet; accepted so that `--help` works.
#[derive(Debug, Clone, Args)]
pub struct PendingArgs {
    /// Arguments, ignored until the command exists.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// Parses the command line, runs the command and returns the exit status.
pub fn main() -> ExitCode {
    // Both ring and aws-lc may be compiled in (feature unification): pick one
    // for every TLS connection the scheduler makes.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let format = cli.global.error_format;
    match run(cli) {
        Ok(code) => code,
        Err(failure) => {
            failure.print(format);
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Show(args) => show::run(&cli.global, &args),
        Command::Project(ProjectCommand::Show) => project::run(&cli.global),
        Command::Build(args) => build::run(&cli.global, &args),
        Command::Fetch(args) => fetch::run(&cli.global, &args),
        Command::Source(_) => Err(Failure::unimplemented("source")),
        Command::Artifact(command) => artifact::run(&cli.global, &command),
        Command::Init(_) => Err(Failure::unimplemented("init")),
    }
}
