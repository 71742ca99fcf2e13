//! `weir project show`: load project.conf only (both passes) and print the
//! project's name and resolved options.
//!
//! Key decision: the output is YAML (`name`, `options` mapping), so tools can
//! read it back.

use std::process::ExitCode;

use super::show::{load_options, project_directory, with_large_stack};
use super::{Failure, GlobalArgs};
use crate::loader;
use crate::yaml::emitter::quote;

/// `weir project show`.
pub fn run(global: &GlobalArgs) -> Result<ExitCode, Failure> {
    let directory = project_directory(global)?;
    let options = load_options(global);
    let (name, values) = with_large_stack(move || loader::load_project_only(&directory, &options))?
        .map_err(|f| Failure { domain: f.domain, reason: f.reason, message: f.message, detail: f.detail })?;
    let mut out = format!("name: {}\n", quote(&name));
    if values.is_empty() {
        out.push_str("options: {}\n");
    } else {
        out.push_str("options:\n");
        for (k, v) in values {
            out.push_str(&format!("  {}: {}\n", quote(&k), quote(&v)));
        }
    }
    super::print_stdout(&out);
    Ok(ExitCode::from(super::EXIT_OK))
}
