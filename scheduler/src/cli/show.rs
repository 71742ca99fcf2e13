//! `weir show`: load the targets, select elements with `--deps`, and print
//! each with the `--format` string as `bst show` does.
//!
//! Key decision: per-element fields that later stages compute (cache keys,
//! state) come from a [`KeyFields`] lookup (defined in `graph`) passed to the
//! formatter; `run` computes [`crate::cachekey::GraphKeys`] when the format asks
//! for a key field and passes [`NoKeys`] otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{DepsMode, Failure, GlobalArgs, ShowArgs};
use crate::graph::{Element, Graph, KeyFields, NoKeys, Scope};
use crate::loader::{self, LoadFailure, LoadOptions};
use crate::yaml::emitter::{emit_map, emit_str_list};
use crate::yaml::{Map, Node, Span};

const DEFAULT_FORMAT: &str = "%{state: >12} %{full-key} %{name}";

fn failure(f: LoadFailure) -> Failure {
    Failure { domain: f.domain, reason: f.reason, message: f.message, detail: f.detail }
}

/// The project directory: `-C DIR`, else searched upwards from the current directory.
/// The user configuration is read (and checked) before the project is looked for.
pub fn project_directory(global: &GlobalArgs) -> Result<PathBuf, Failure> {
    if let Some(config) = &global.config {
        loader::check_user_config(config).map_err(failure)?;
    }
    let start = match &global.directory {
        Some(d) => d.clone(),
        None => std::env::current_dir().map_err(|e| Failure::new("STREAM", "project-not-loaded", e.to_string()))?,
    };
    loader::find_project_dir(&start).ok_or_else(|| {
        Failure::new(
            "STREAM",
            "project-not-loaded",
            format!("No project found: could not find project.conf in '{}' or any parent directory", start.display()),
        )
    })
}

/// The load options from the global arguments.
pub fn load_options(global: &GlobalArgs) -> LoadOptions {
    LoadOptions { cli_options: global.option_pairs(), user_config: global.config.clone(), ..LoadOptions::default() }
}

fn variables_map(element: &Element) -> Map {
    let mut map = Map::new(Span::synthetic(crate::yaml::SourceMap::core()));
    for (k, v) in element.variables.iter() {
        map.insert(k.clone(), Node::scalar(v.clone(), map.span));
    }
    map
}

fn direct_dependencies(graph: &Graph, element: &Element) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for id in element.build_deps().chain(element.runtime_deps()) {
        let name = &graph.element(id).full_name;
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// Expands `format` for one element.
pub fn format_element(graph: &Graph, element: &Element, format: &str, keys: &dyn KeyFields) -> String {
    let mut out = String::with_capacity(format.len() + 32);
    let mut rest = format;
    while let Some(start) = rest.find("%{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let spec = &after[..end];
        let (field, pad) = match spec.split_once(':') {
            Some((f, p)) => (f.trim(), Some(p)),
            None => (spec.trim(), None),
        };
        let value = match field {
            "name" => Some(element.full_name.clone()),
            "vars" => Some(emit_map(&variables_map(element))),
            "config" => Some(emit_map(&element.config)),
            "public" => Some(emit_map(&element.public)),
            "env" => Some(emit_map(&element.environment)),
            "deps" => Some(emit_str_list(&direct_dependencies(graph, element)).trim_end_matches('\n').to_string()),
            "state" if element.kind == "junction" => Some("junction".to_string()),
            field if KEY_FIELDS.contains(&field) => {
                Some(keys.field(graph, element, field).unwrap_or_default())
            }
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&pad_value(&v, pad)),
            None => out.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Python-style `{: >12}` / `{: <12}` / `{:^12}` padding.
fn pad_value(value: &str, spec: Option<&str>) -> String {
    let Some(spec) = spec else { return value.to_string() };
    let spec = spec.trim_start_matches(' ');
    let (align, width) = match spec.chars().next() {
        Some(c @ ('<' | '>' | '^')) => (c, &spec[1..]),
        _ => ('<', spec),
    };
    let Ok(width) = width.trim().parse::<usize>() else { return value.to_string() };
    let len = value.chars().count();
    if len >= width {
        return value.to_string();
    }
    let fill = width - len;
    match align {
        '>' => format!("{}{value}", " ".repeat(fill)),
        '^' => format!("{}{value}{}", " ".repeat(fill / 2), " ".repeat(fill - fill / 2)),
        _ => format!("{value}{}", " ".repeat(fill)),
    }
}

/// The text `show` prints for the selected elements.
pub fn render(graph: &Graph, deps: DepsMode, format: &str, keys: &(dyn KeyFields + Sync)) -> String {
    use rayon::prelude::*;
    let scope = Scope::from(deps);
    let selected = graph.select(&graph.targets, scope);
    // Lines are formatted in parallel and joined in order.
    let lines: Vec<String> = selected.par_iter().map(|&id| format_element(graph, graph.element(id), format, keys)).collect();
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Runs a closure on a thread with a large stack (loading recurses per
/// dependency level; very deep graphs need more than the default stack).
pub fn with_large_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    std::thread::Builder::new()
        .name("weir-load".into())
        .stack_size(1 << 30)
        .spawn(f)
        .map_err(|e| Failure::new("APP", "THREAD", e.to_string()))?
        .join()
        .map_err(|_| Failure::new("APP", "INTERNAL", "the loader thread failed"))
}

/// Whether a format string prints any field that needs cache keys.
fn wants_keys(format: &str) -> bool {
    KEY_FIELDS.iter().any(|field| format.contains(&format!("%{{{field}")))
}

/// The format fields whose values come from the cache key module.
const KEY_FIELDS: [&str; 7] = ["full-key", "key", "strict-key", "weak-key", "state", "source-keys", "artifact"];

/// `show`'s memory peaks at its end, after the parsed files were freed:
/// mimalloc (the `weir` binary's allocator) gives freed pages back at once
/// instead of after its 10 ms delay. Measured at 10,000 elements: peak RSS
/// 72 → 64 MiB for 5–10% more CPU time (the memory goal is the tighter
/// one). Only for formats without keys: the key phase allocates into the
/// pages loading freed, and giving them back first cost it 9,000 more page
/// faults and 0.03 s of CPU. Harmless under another allocator.
fn return_freed_pages_at_once() {
    // `mi_option_purge_delay` of mimalloc 2 (libmimalloc-sys 0.1.49, pinned),
    // whose bindings predate the option's name.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one allocator option; any thread may call it at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

/// `weir show`.
pub fn run(global: &GlobalArgs, args: &ShowArgs) -> Result<ExitCode, Failure> {
    for target in &args.targets {
        if !target.ends_with(".bst") {
            return Err(Failure::new(
                "STREAM",
                "invalid-element-names",
                format!("Element names must end with '.bst': {target}"),
            ));
        }
    }
    let directory = project_directory(global)?;
    // The process ends right after printing (see the end of the closure).
    let options = LoadOptions { short_lived: true, ..load_options(global) };
    let targets = args.targets.clone();
    let deps = args.deps;
    let format = args.format.clone().unwrap_or_else(|| DEFAULT_FORMAT.to_string());
    let keys_wanted = wants_keys(&format);
    if !keys_wanted {
        return_freed_pages_at_once();
    }
    let global = global.clone();
    let remote = args.remote.clone();
    let (text, messages) = with_large_stack(move || {
        let loaded = loader::load(&directory, &targets, &options).map_err(failure)?;
        let mut messages = loaded.messages;
        // Keys only when asked for, so that a plain `%{name}` stays fast. A
        // graph with a kind whose key Weir cannot compute (an external plugin
        // kind that declares no `cache-key`) is still shown, with empty key
        // fields and a warning.
        let mut timer = loader::PhaseTimer::new();
        let keys = if keys_wanted {
            match crate::cachekey::GraphKeys::compute(&loaded.graph) {
                Ok(keys) => Some(keys),
                Err(err) => {
                    messages.push(format!("warning: cache keys are not shown: {err}"));
                    None
                }
            }
        } else {
            None
        };
        timer.done("cache keys");
        // `%{state}` says `cached` only with a cache to ask.
        let cached = match &keys {
            Some(keys) if format.contains("%{state}") => match super::build::cached_elements(&global, &remote, &loaded.graph, keys.table()) {
                Ok(cached) => cached,
                Err(failure) => {
                    messages.push(format!("warning: the artifact cache was not consulted for %{{state}}: {}", failure.message));
                    None
                }
            },
            _ => None,
        };
        let text = match &keys {
            Some(keys) => render(&loaded.graph, deps, &format, &crate::cachekey::ShownKeys { keys, key_length: loaded.key_length, cached }),
            None => render(&loaded.graph, deps, &format, &NoKeys),
        };
        timer.done("render");
        // The process ends right after printing: freeing the graph and the
        // keys (hundreds of thousands of allocations at 10,000 elements)
        // would only delay the exit.
        std::mem::forget(keys);
        std::mem::forget(loaded.graph);
        Ok::<_, Failure>((text, messages))
    })??;
    for message in messages {
        eprintln!("{message}");
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (e.g. `| head`) is not an error.
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    Ok(ExitCode::from(super::EXIT_OK))
}
