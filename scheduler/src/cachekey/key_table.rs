//! Weak and strict keys of every element of a graph (spec §1, §3, §4).
//!
//! It owns [`KeyTable`] and [`ElementKeys`]. Key decisions:
//! * the build-scope lists come from [`BuildScopes`], computed once for the
//!   whole graph;
//! * the dict is serialised once per element, after the dependency list
//!   (which comes first, right after the constant `core-artifact-version`);
//!   every element's dependency entry is serialised once and streamed into
//!   its dependants' hashes, resuming from the hash state of the longest
//!   prefix any earlier list shares with it (`PrefixStates`);
//! * hashing is the one cost that grows quadratically (the dense shape puts
//!   O(N) entries in each key), so elements are hashed in parallel (rayon),
//!   each as soon as its dependencies are (no barrier per dependency level);
//!   an element's dict parts are written by the task that hashes it, so that
//!   they are never all held at once. Source keys are computed in parallel
//!   beforehand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use rayon::prelude::*;
use sha2::Digest;

use super::build_scope::BuildScopes;
use super::canonical::{hex_digest, write_array, write_canonical, write_string};
use super::element_input::ElementInput;
use super::plugin_key::PluginKey;
use super::prefix_states::{DependencyEntry, EntryMode, PrefixStates};
use super::sandbox::HostPlatform;
use super::shared_texts::{write_middle, SharedTexts};
use super::source_key::{SourceKeys, TreeDigester};
use super::value::Value;
use super::CacheKeyError;

/// `BST_CORE_ARTIFACT_VERSION` of BuildStream 2.8.
pub const CORE_ARTIFACT_VERSION: i64 = 11;

/// The keys of one element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElementKeys {
    /// The weak key, once computable.
    pub weak: Option<String>,
    /// The strict key, once computable (the strong key in strict mode).
    pub strict: Option<String>,
    /// Each source's unique key in declaration order (`None` while unresolved).
    pub sources: Vec<Option<Value>>,
}

impl ElementKeys {
    /// The strong key of a strict-mode session (equal to the strict key).
    pub fn strong(&self) -> Option<&str> {
        self.strict.as_deref()
    }

    /// Whether every source has a unique key.
    pub fn sources_resolved(&self) -> bool {
        self.sources.iter().all(Option::is_some)
    }
}

/// The keys of every element of a graph, indexed like the inputs.
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    keys: Vec<ElementKeys>,
}

/// What an element's hashes need besides its dependencies' keys.
struct ElementDict<'a> {
    /// Canonical text after the dependency list (see [`dict_tail`]).
    tail: DictTail<'a>,
    /// How the weak key writes dependency entries.
    weak_mode: EntryMode,
    /// Direct dependencies declared `strict: true`.
    strict_direct: Vec<usize>,
}

impl KeyTable {
    /// Computes all keys. `inputs[i].dependencies[..].element` index into `inputs`.
    pub fn compute(
        inputs: &[ElementInput],
        host: &HostPlatform,
        digester: &dyn TreeDigester,
    ) -> Result<Self, CacheKeyError> {
        // The dependency lists and the parts of each entry that depend on the
        // element alone are independent: they are computed side by side (the
        // lists are often one element at a time, on deep graphs).
        let (scopes, parts) = rayon::join(|| BuildScopes::compute(inputs), || element_parts(inputs, digester));
        Self::compute_with_parts(inputs, scopes?, parts?, host)
    }

    /// Computes all keys with the build scopes of `inputs` already known
    /// (computed, for instance, from the loader's graph while the inputs
    /// were made).
    pub fn compute_with_scopes(
        inputs: &[ElementInput],
        scopes: BuildScopes,
        host: &HostPlatform,
        digester: &dyn TreeDigester,
    ) -> Result<Self, CacheKeyError> {
        let mut timer = crate::loader::PhaseTimer::new();
        let parts = element_parts(inputs, digester)?;
        timer.done("keys: source keys");
        Self::compute_with_parts(inputs, scopes, parts, host)
    }

    fn compute_with_parts(
        inputs: &[ElementInput],
        scopes: BuildScopes,
        (sources, entries): ElementParts,
        host: &HostPlatform,
    ) -> Result<Self, CacheKeyError> {
        if scopes.scopes.len() != inputs.len() {
            return Err(CacheKeyError::Internal {
                detail: format!("build scopes of {} elements for {} inputs", scopes.scopes.len(), inputs.len()),
            });
        }
        let mut timer = crate::loader::PhaseTimer::new();
        // The parts many elements share are written once.
        let shared = SharedTexts::collect(inputs, host);
        let prefixes = PrefixStates::new(&scopes.scopes, &scopes.segment_ends);
        timer.done("keys: shared texts, prefixes");

        let hashing = Hashing { entries: &entries, prefixes: &prefixes };
        let dicts = DictMaker { inputs, sources: &sources, host, shared: &shared, first_error: Mutex::new(None) };
        let computed = hashing.all_keys(&dicts);
        timer.done("keys: hashing");
        if let Some((_, error)) = dicts.first_error.into_inner().unwrap_or_else(PoisonError::into_inner) {
            return Err(error);
        }
        let keys = computed
            .into_iter()
            .zip(sources)
            .map(|(slot, sources)| {
                let (weak, strict) = slot.into_inner().unwrap_or((None, None));
                ElementKeys { weak, strict, sources }
            })
            .collect();
        Ok(KeyTable { keys })
    }

    /// The keys of element `index` (as indexed in the inputs).
    pub fn get(&self, index: usize) -> Option<&ElementKeys> {
        self.keys.get(index)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Per element: its source keys and its entry in its dependants' lists.
type ElementParts = (Vec<Vec<Option<Value>>>, Vec<DependencyEntry>);

/// The parts of every element's entry that depend on the element alone.
fn element_parts(inputs: &[ElementInput], digester: &dyn TreeDigester) -> Result<ElementParts, CacheKeyError> {
    // Source keys: local trees are read from disk once per path.
    let mut source_keys = SourceKeys::new(digester);
    source_keys.digest_local_trees(inputs.iter().flat_map(|input| &input.sources));
    let sources: Vec<Vec<Option<Value>>> = inputs
        .par_iter()
        .map(|input| input.sources.iter().map(|source| source_keys.unique_key(&input.full_name, source)).collect())
        .collect::<Result<_, _>>()?;
    let entries: Vec<DependencyEntry> =
        inputs.par_iter().map(|input| DependencyEntry::new(&input.project, &input.name)).collect();
    Ok((sources, entries))
}

/// Makes each element's dict parts when it is hashed, so that only the
/// elements being hashed hold theirs (a graph's worth of dict texts, about
/// 1.5 KB each, is written into buffers the allocator reuses at once).
/// Errors are kept, the first element's first.
struct DictMaker<'a> {
    inputs: &'a [ElementInput<'a>],
    sources: &'a [Vec<Option<Value>>],
    host: &'a HostPlatform,
    shared: &'a SharedTexts,
    first_error: Mutex<Option<(usize, CacheKeyError)>>,
}

impl DictMaker<'_> {
    /// The dict parts of element `index`; `None` while a source is
    /// unresolved or when they could not be made (the error is kept).
    fn dict(&self, index: usize) -> Option<ElementDict<'_>> {
        match element_dict(&self.inputs[index], &self.sources[index], self.host, self.shared) {
            Ok(dict) => dict,
            Err(error) => {
                let mut first = self.first_error.lock().unwrap_or_else(PoisonError::into_inner);
                if first.as_ref().is_none_or(|(earlier, _)| index < *earlier) {
                    *first = Some((index, error));
                }
                None
            }
        }
    }
}

/// The element-only part of the key computation; `None` while a source is unresolved.
fn element_dict<'a>(
    input: &ElementInput,
    sources: &[Option<Value>],
    host: &HostPlatform,
    shared: &'a SharedTexts,
) -> Result<Option<ElementDict<'a>>, CacheKeyError> {
    // The plugin key is checked even for unresolved elements, so that an
    // unsupported kind is reported either way.
    let plugin = PluginKey::for_element(input)?;
    if !sources.iter().all(Option::is_some) {
        return Ok(None);
    }
    let strict_direct: Vec<usize> = input.dependencies.iter().filter(|d| d.strict).map(|d| d.element).collect();
    let weak_mode = if plugin.strict_rebuild {
        EntryMode::WeakKeyed
    } else if strict_direct.is_empty() {
        EntryMode::WeakNames
    } else {
        EntryMode::Mixed
    };
    Ok(Some(ElementDict { tail: dict_tail(input, &plugin, sources, host, shared)?, weak_mode, strict_direct }))
}

/// Read-only view of one level's hashing: the entries (with keys) of earlier levels.
struct Hashing<'a> {
    entries: &'a [DependencyEntry],
    prefixes: &'a PrefixStates<'a>,
}

/// Weak and strict keys of one element, set once computed.
type KeySlot = OnceLock<(Option<String>, Option<String>)>;

impl Hashing<'_> {
    /// The keys of every element. An element is hashed as soon as all its
    /// dependencies are (each then has every member of its lists done, as
    /// those are dependencies of dependencies), on any rayon thread: no
    /// element waits for a whole level of the graph to finish.
    fn all_keys(&self, dicts: &DictMaker) -> Vec<KeySlot> {
        let inputs = dicts.inputs;
        let count = inputs.len();
        let slots: Vec<KeySlot> = (0..count).map(|_| OnceLock::new()).collect();
        let pending: Vec<AtomicUsize> = inputs.iter().map(|input| AtomicUsize::new(input.dependencies.len())).collect();
        let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); count];
        for (index, input) in inputs.iter().enumerate() {
            for dep in &input.dependencies {
                if let Some(list) = dependants.get_mut(dep.element) {
                    list.push(index);
                }
            }
        }
        let work = Work { hashing: self, dicts, slots: &slots, pending: &pending, dependants: &dependants };
        rayon::scope(|scope| {
            for (index, input) in inputs.iter().enumerate() {
                if input.dependencies.is_empty() {
                    scope.spawn(move |scope| work.run(scope, index));
                }
            }
        });
        slots
    }

    /// The weak and strict keys of element `index` (`None` while a needed dependency key is unknown).
    fn element_keys(&self, index: usize, dict: &ElementDict) -> (Option<String>, Option<String>) {
        let prints = self.prefixes.fingerprints(index);
        let entries = self.entries;
        let weak_text = |member: u32| {
            let mode = match dict.weak_mode {
                EntryMode::Mixed if dict.strict_direct.contains(&(member as usize)) => EntryMode::WeakKeyed,
                other => other,
            };
            entries.get(member as usize)?.text(mode)
        };
        let Some(mut weak_hasher) = self.prefixes.hash_list(index, &prints, dict.weak_mode, weak_text) else {
            return (None, None);
        };
        weak_hasher.update(b"]");
        dict.tail.feed(&mut weak_hasher, true);
        let weak = hex_digest(&weak_hasher.finalize().into());

        let strict_text = |member: u32| entries.get(member as usize)?.text(EntryMode::Strict);
        let strict = self.prefixes.hash_list(index, &prints, EntryMode::Strict, strict_text).map(|mut strict_hasher| {
            // `weak-cache-key` sorts after every other member: it goes before the closing brace.
            strict_hasher.update(b"]");
            dict.tail.feed(&mut strict_hasher, false);
            strict_hasher.update(b",\"weak-cache-key\":\"");
            strict_hasher.update(weak.as_bytes());
            strict_hasher.update(b"\"}");
            hex_digest(&strict_hasher.finalize().into())
        });
        (Some(weak), strict)
    }
}

/// What the threads hashing elements share (see [`Hashing::all_keys`]).
#[derive(Clone, Copy)]
struct Work<'a> {
    hashing: &'a Hashing<'a>,
    dicts: &'a DictMaker<'a>,
    slots: &'a [KeySlot],
    /// Per element, its dependencies not hashed yet.
    pending: &'a [AtomicUsize],
    dependants: &'a [Vec<usize>],
}

impl<'a> Work<'a> {
    /// Hashes element `index`, then each dependant it was the last
    /// dependency of: one of them on this thread (no task for a chain of
    /// elements), the others as new tasks.
    fn run<'s>(self, scope: &rayon::Scope<'s>, index: usize)
    where
        'a: 's,
    {
        let mut next = Some(index);
        while let Some(index) = next.take() {
            let (weak, strict) =
                self.dicts.dict(index).map_or((None, None), |dict| self.hashing.element_keys(index, &dict));
            self.hashing.entries[index].set_keys(weak.as_deref(), strict.as_deref());
            let _ = self.slots[index].set((weak, strict));
            for &dependant in &self.dependants[index] {
                // AcqRel: the last decrement sees every dependency's keys.
                if self.pending[dependant].fetch_sub(1, Ordering::AcqRel) == 1 {
                    if let Some(ready) = next.replace(dependant) {
                        scope.spawn(move |scope| self.run(scope, ready));
                    }
                }
            }
        }
    }
}

/// The canonical text of a key dict after the dependency list, without
/// `weak-cache-key` (spec §3), in pieces so that the members many elements
/// share are used in place: `head` (the element's own members), `middle`
/// (shared, see [`SharedTexts`]), `rest` (its sources).
struct DictTail<'a> {
    head: String,
    middle: &'a str,
    rest: String,
}

impl DictTail<'_> {
    /// Feeds the text into `hasher`, with its closing brace if `closed`.
    fn feed(&self, hasher: &mut sha2::Sha256, closed: bool) {
        hasher.update(self.head.as_bytes());
        hasher.update(self.middle.as_bytes());
        let rest = if closed { &self.rest[..] } else { self.rest.strip_suffix('}').unwrap_or(&self.rest) };
        hasher.update(rest.as_bytes());
    }
}

/// The canonical text of the key dict after the dependency list, without
/// `weak-cache-key` (spec §3): `,"element-base-key":...}`. It is written
/// member by member in code-point order instead of building the dict as a
/// value, which saves copying every element's public data and environment;
/// the test oracle `base_dict` builds the same dict the obvious way.
fn dict_tail<'a>(
    input: &ElementInput,
    plugin: &PluginKey,
    sources: &[Option<Value>],
    host: &HostPlatform,
    shared: &'a SharedTexts,
) -> Result<DictTail<'a>, CacheKeyError> {
    let mut head = String::with_capacity(512);
    head.push_str(",\"element-base-key\":{\"build-root\":");
    write_string(&input.build_root, &mut head);
    head.push_str("},\"element-plugin-key\":");
    write_canonical(&plugin.key, &mut head);
    head.push_str(",\"element-plugin-name\":");
    write_string(&input.kind, &mut head);
    head.push_str(",\"element-plugin-version\":");
    head.push_str(&plugin.artifact_version.to_string());
    let middle = match shared.middle(input, plugin.run_commands) {
        Some(text) => text,
        None => {
            write_middle(input, plugin.run_commands, host, &mut head)?;
            ""
        }
    };
    let mut rest = String::with_capacity(256);
    rest.push_str(",\"sources\":");
    write_array(input.sources.iter().zip(sources), &mut rest, |(source, key), out| {
        // Members in code-point order: directory, key, name.
        out.push('{');
        if let Some(directory) = source.directory.as_deref().filter(|d| !d.is_empty()) {
            out.push_str("\"directory\":");
            write_string(directory, out);
            out.push(',');
        }
        out.push_str("\"key\":");
        write_canonical(key.as_ref().unwrap_or(&Value::Null), out);
        out.push_str(",\"name\":");
        write_string(&source.kind, out);
        out.push('}');
    });
    rest.push('}');
    Ok(DictTail { head, middle, rest })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;
    use std::sync::Arc;

    use super::super::canonical::{generate_key, to_canonical};
    use super::super::element_input::{DependencyInput, SourceInput};
    use super::super::node_value::value_to_map;
    use super::super::prefix_states::DICT_HEAD;
    use super::super::sandbox::sandbox_dict;
    use super::super::shared_texts::public_with_split_rules;
    use super::*;

    /// The digest spec §8.1 gives for `files/local` of the upstream project.
    const LOCAL_DIGEST: &str = "b14708535e0cc5cc97cb5b3dd218d176e00051273518d818ff55a5db8bbaee3c";

    struct FixedDigester;

    impl TreeDigester for FixedDigester {
        fn tree_hash(&self, _path: &Path) -> Result<String, String> {
            Ok(LOCAL_DIGEST.to_owned())
        }
    }

    fn host() -> HostPlatform {
        HostPlatform { os: "linux".into(), arch: "x86-64".into() }
    }

    fn strings(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| Value::from(*s)).collect())
    }

    fn mapping(pairs: Vec<(&str, Value)>) -> Value {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// BuildStream's default public data (projectconfig.yaml split rules, expanded).
    fn default_public() -> Value {
        let rules = mapping(vec![
            ("debug", strings(&["/usr/lib/debug", "/usr/lib/debug/**"])),
            (
                "devel",
                strings(&[
                    "/usr/include",
                    "/usr/include/**",
                    "/usr/lib/lib*.a",
                    "/usr/lib/lib*.la",
                    "/usr/lib/pkgconfig/*.pc",
                    "/usr/share/pkgconfig/*.pc",
                    "/usr/share/aclocal/*.m4",
                ]),
            ),
            (
                "doc",
                strings(&[
                    "/usr/share/doc",
                    "/usr/share/doc/**",
                    "/usr/share/info",
                    "/usr/share/info/**",
                    "/usr/share/man",
                    "/usr/share/man/**",
                ]),
            ),
            (
                "locale",
                strings(&[
                    "/usr/share/locale",
                    "/usr/share/locale/**",
                    "/usr/share/i18n",
                    "/usr/share/i18n/**",
                    "/usr/share/zoneinfo",
                    "/usr/share/zoneinfo/**",
                ]),
            ),
            (
                "runtime",
                strings(&["/usr/bin", "/usr/bin/*", "/usr/sbin", "/usr/sbin/*", "/usr/libexec", "/usr/libexec/*", "/usr/lib/lib*.so*"]),
            ),
        ]);
        mapping(vec![("bst", mapping(vec![("split-rules", rules)]))])
    }

    fn default_environment() -> BTreeMap<String, String> {
        [
            ("HOME", "/tmp"),
            ("LC_ALL", "C"),
            ("LOGNAME", "tomjon"),
            ("PATH", "/usr/bin:/bin:/usr/sbin:/sbin"),
            ("SHELL", "/bin/sh"),
            ("SOURCE_DATE_EPOCH", "1321009871"),
            ("TERM", "dumb"),
            ("TZ", "UTC"),
            ("USER", "tomjon"),
            ("USERNAME", "tomjon"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn element(name: &str, kind: &str, config: Value) -> ElementInput<'static> {
        ElementInput {
            project: "cachekey".into(),
            name: name.to_owned().into(),
            full_name: name.to_owned().into(),
            kind: kind.to_owned().into(),
            build_root: format!("/buildstream/cachekey/{name}").into(),
            config: Cow::Owned(value_to_map(&config)),
            environment: Arc::new(default_environment()),
            public: default_public(),
            ..Default::default()
        }
    }

    fn local_source() -> SourceInput<'static> {
        SourceInput {
            kind: "local".into(),
            config: Cow::Owned(value_to_map(&mapping(vec![("path", "files/local".into())]))),
            ..Default::default()
        }
    }

    fn import1() -> ElementInput<'static> {
        let mut import = element("elements/import1.bst", "import", mapping(vec![("source", "/".into()), ("target", "/".into())]));
        import.sources.push(local_source());
        import
    }

    fn build_dep(element: usize, path: &str) -> DependencyInput<'static> {
        DependencyInput { element, path: path.to_owned().into(), build: true, runtime: false, ..Default::default() }
    }

    fn keys_of(inputs: &[ElementInput]) -> KeyTable {
        KeyTable::compute(inputs, &host(), &FixedDigester).unwrap()
    }

    /// The key dict of spec §3 built the obvious way, `dependencies` left as
    /// `[]` and no `weak-cache-key`: the oracle for `dict_tail`.
    fn base_dict(input: &ElementInput, plugin: &PluginKey, sources: &[Option<Value>], host: &HostPlatform) -> Value {
        let mut dict: BTreeMap<std::sync::Arc<str>, Value> = BTreeMap::new();
        let mut put = |key: &str, value: Value| {
            dict.insert(key.into(), value);
        };
        put("core-artifact-version", Value::Int(CORE_ARTIFACT_VERSION));
        put("dependencies", Value::List(Vec::new()));
        put("element-base-key", [("build-root", Value::from(&*input.build_root))].into_iter().collect());
        put("element-plugin-key", plugin.key.clone());
        put("element-plugin-name", Value::from(&*input.kind));
        put("element-plugin-version", Value::Int(plugin.artifact_version));
        put("public", public_with_split_rules(&input.public));
        let source_entries = input
            .sources
            .iter()
            .zip(sources)
            .map(|(source, key)| {
                let mut entry = vec![("key", key.clone().unwrap_or(Value::Null)), ("name", Value::from(&*source.kind))];
                if let Some(directory) = source.directory.as_deref().filter(|d| !d.is_empty()) {
                    entry.push(("directory", Value::from(directory)));
                }
                entry.into_iter().collect()
            })
            .collect();
        put("sources", Value::List(source_entries));
        let mut warnings = input.fatal_warnings.to_vec();
        warnings.sort();
        put("fatal-warnings", warnings.into());
        if plugin.run_commands {
            put("sandbox", sandbox_dict(&input.full_name, &input.sandbox, host).unwrap());
            let environment = input
                .environment
                .iter()
                .filter(|(name, _)| !input.environment_nocache.contains(*name))
                .map(|(name, value)| (name.as_str(), Value::from(value.as_str())))
                .collect();
            put("environment", environment);
        }
        Value::Map(Arc::new(dict))
    }

    /// `dict_tail` wrapped back into the whole dict text with an empty dependency list.
    fn written_dict(input: &ElementInput, sources: &[Option<Value>]) -> String {
        let plugin = PluginKey::for_element(input).unwrap();
        let shared = SharedTexts::collect(std::slice::from_ref(input), &host());
        let text = |tail: DictTail| format!("{}{}{}", tail.head, tail.middle, tail.rest);
        let written = text(dict_tail(input, &plugin, sources, &host(), &shared).unwrap());
        assert_eq!(written, text(dict_tail(input, &plugin, sources, &host(), &SharedTexts::default()).unwrap()));
        format!("{DICT_HEAD}[]{written}")
    }

    #[test]
    fn written_dict_equals_the_obvious_dict() {
        let mut with_everything = element("elements/x.bst", "manual", Value::map());
        with_everything.sources.push(local_source());
        with_everything.sources.push(SourceInput { kind: "local".into(), directory: Some("opt".into()), ..local_source() });
        with_everything.fatal_warnings = ["z".to_owned(), "a".to_owned()].into();
        Arc::make_mut(&mut with_everything.environment_nocache).insert("TERM".into());
        Arc::make_mut(&mut with_everything.environment).insert("\u{e9}\"".into(), "\u{7f}\n".into());
        let mut no_split_rules = element("elements/y.bst", "import", Value::map());
        no_split_rules.public = mapping(vec![("other", strings(&["x"]))]);
        let compose_without_commands = element("elements/c.bst", "compose", mapping(vec![("integrate", "False".into())]));
        for input in [import1(), with_everything, no_split_rules, compose_without_commands] {
            let sources: Vec<Option<Value>> = input.sources.iter().map(|_| Some(Value::from(LOCAL_DIGEST))).collect();
            let plugin = PluginKey::for_element(&input).unwrap();
            assert_eq!(written_dict(&input, &sources), to_canonical(&base_dict(&input, &plugin, &sources, &host())));
        }
    }

    #[test]
    fn worked_example_import1_is_byte_exact() {
        let input = import1();
        let text = written_dict(&input, &[Some(Value::from(LOCAL_DIGEST))]);
        let expected = concat!(
            r#"{"core-artifact-version":11,"dependencies":[],"element-base-key":{"build-root":"/buildstream/cachekey/elements/import1.bst"},"#,
            r#""element-plugin-key":{"source":"/","target":"/"},"element-plugin-name":"import","element-plugin-version":0,"fatal-warnings":[],"#,
            r#""public":{"bst":{"split-rules":{"debug":["/usr/lib/debug","/usr/lib/debug/**"],"devel":["/usr/include","/usr/include/**","/usr/lib/lib*.a","/usr/lib/lib*.la","/usr/lib/pkgconfig/*.pc","/usr/share/pkgconfig/*.pc","/usr/share/aclocal/*.m4"],"#,
            r#""doc":["/usr/share/doc","/usr/share/doc/**","/usr/share/info","/usr/share/info/**","/usr/share/man","/usr/share/man/**"],"#,
            r#""locale":["/usr/share/locale","/usr/share/locale/**","/usr/share/i18n","/usr/share/i18n/**","/usr/share/zoneinfo","/usr/share/zoneinfo/**"],"#,
            r#""runtime":["/usr/bin","/usr/bin/*","/usr/sbin","/usr/sbin/*","/usr/libexec","/usr/libexec/*","/usr/lib/lib*.so*"]}}},"#,
            r#""sources":[{"key":"b14708535e0cc5cc97cb5b3dd218d176e00051273518d818ff55a5db8bbaee3c","name":"local"}]}"#
        );
        assert_eq!(text, expected);
        assert_eq!(text.len(), 971);

        let table = keys_of(&[input]);
        let keys = table.get(0).unwrap();
        assert_eq!(keys.weak.as_deref(), Some("1442e9902ec5457747c74da06a2ca253041e297dc5f8d3f51800beb330ccdbc5"));
        assert_eq!(keys.strict.as_deref(), Some("9fa24d24cf3351f522694c0cf39440efabb4ec65d888284b7048285f3eab9429"));
    }

    #[test]
    fn manual_build1_runs_commands() {
        let config = mapping(vec![
            ("configure-commands", strings(&[])),
            ("build-commands", strings(&["make"])),
            ("install-commands", strings(&[])),
            ("strip-commands", strings(&[""])),
        ]);
        let mut build1 = element("elements/build1.bst", "manual", config);
        build1.sources.push(local_source());
        let table = keys_of(&[build1.clone()]);
        let keys = table.get(0).unwrap();
        assert_eq!(keys.weak.as_deref(), Some("298b71a6a3b650f30c598613330f9e9d0242bcf5d2ca3f16b418b6822be3d615"));
        assert_eq!(keys.strict.as_deref(), Some("95cc8ee040690b8abbacb201c8f0d9eeab7d1376db473d62799b5b5c36c71b47"));

        // A nocache variable leaves the key alone; a cached one changes it.
        Arc::make_mut(&mut build1.environment).insert("MAKEFLAGS".into(), "-j8".into());
        build1.environment_nocache = Arc::new(BTreeSet::from(["MAKEFLAGS".to_owned()]));
        assert_eq!(keys_of(&[build1.clone()]).get(0).unwrap(), keys);
        Arc::make_mut(&mut build1.environment_nocache).clear();
        assert_ne!(keys_of(&[build1]).get(0).unwrap().strict, keys.strict);
    }

    #[test]
    fn compose1_weak_entries_carry_keys() {
        let config = mapping(vec![
            ("integrate", "True".into()),
            ("include", strings(&[])),
            ("exclude", strings(&[])),
            ("include-orphans", "True".into()),
        ]);
        let mut compose1 = element("elements/compose1.bst", "compose", config);
        compose1.dependencies.push(build_dep(0, "elements/import1.bst"));
        let table = keys_of(&[import1(), compose1]);
        let keys = table.get(1).unwrap();
        assert_eq!(keys.weak.as_deref(), Some("ae615bedf928083bdc4f4265c31f15345da5cd05871fb03e7cd564212f001b8f"));
        assert_eq!(keys.strict.as_deref(), Some("8406283ca890663b317e055a1c4b8c18248b2c12388ab0900e6ee6ab12af8abd"));
    }

    #[test]
    fn script1_layout() {
        let config = mapping(vec![("commands", strings(&["echo \"Hello World !\""])), ("root-read-only", "False".into())]);
        let mut script1 = element("elements/script1.bst", "script", config);
        script1.variables.insert("cwd", "/");
        script1.variables.insert("install-root", "/buildstream-install");
        script1.dependencies.push(build_dep(0, "elements/import1.bst"));
        let table = keys_of(&[import1(), script1]);
        let keys = table.get(1).unwrap();
        assert_eq!(keys.weak.as_deref(), Some("2ba192c61886b6cbcc35c3882a1a76a8047976c7f2ab4c9d378a1b1751b3c184"));
        assert_eq!(keys.strict.as_deref(), Some("15bed1afee844f2b3ea2a433dcd93a15494ac09c0efc6108a2157013004d2748"));
    }

    /// A stack element named `name` depending (type all) on `deps`.
    fn stack(name: &str, deps: &[usize], all: &[ElementInput]) -> ElementInput<'static> {
        let mut input = element(name, "stack", Value::map());
        for &dep in deps {
            input.dependencies.push(DependencyInput {
                element: dep,
                path: all[dep].name.to_string().into(),
                build: true,
                runtime: true,
                ..Default::default()
            });
        }
        input
    }

    #[test]
    fn sort_chain_matches_upstream() {
        // Upstream sort* elements; dependency lists as the loader sorts them.
        let mut all: Vec<ElementInput> = Vec::new();
        let add = |name: &str, deps: &[usize], all: &mut Vec<ElementInput>| {
            let input = stack(&format!("elements/{name}.bst"), deps, all);
            all.push(input);
            all.len() - 1
        };
        let sort9 = add("sort9", &[], &mut all);
        let sort8 = add("sort8", &[], &mut all);
        let sort1 = add("sort1", &[sort9], &mut all);
        let sort7 = add("sort7", &[sort1], &mut all);
        let sort6 = add("sort6", &[sort7], &mut all);
        let sort2 = add("sort2", &[sort6], &mut all);
        let sort3 = add("sort3", &[sort2], &mut all);
        let sort4 = add("sort4", &[sort6], &mut all);
        let sort5 = add("sort5", &[sort4], &mut all);
        let sort0 = add("sort0", &[sort8, sort9, sort3, sort5], &mut all);
        let table = keys_of(&all);
        let strict = |i: usize| table.get(i).unwrap().strict.clone().unwrap();
        let weak = |i: usize| table.get(i).unwrap().weak.clone().unwrap();
        assert_eq!(strict(sort9), "a75c0adad402910d65d7c7042433698d55d247fc69d9e43c3ba91c584552e879");
        assert_eq!(weak(sort9), "80d3621ddaf91244835dc3b74cd21aeef2707208aa8a835f666b1005bffabc9c");
        assert_eq!(strict(sort6), "292431a52a4f31d9e45ff46e124e74a6306424fb7175dca4166d876d3fd1ae62");
        assert_eq!(strict(sort0), "57263fea3c5595e04ec22e6fa7e531f69192273df2b35d09e47dd8c8660c6215");
        assert_eq!(weak(sort0), "7d0b26cd8063f7a95daaa95afda7f76b30a349c0ce5b300d72915b4d6b18925e");
    }

    #[test]
    fn strict_dependency_puts_only_its_own_weak_key_in_the_weak_list() {
        let mut all = vec![import1()];
        all.push(stack("elements/mid.bst", &[0], &all));
        let mut top = element("elements/top.bst", "manual", Value::map());
        top.dependencies.push(build_dep(1, "elements/mid.bst"));
        all.push(top.clone());
        let plain = keys_of(&all).get(2).unwrap().clone();
        all[2].dependencies[0].strict = true;
        let strict = keys_of(&all).get(2).unwrap().clone();
        assert_ne!(plain.weak, strict.weak);
        assert_ne!(plain.strict, strict.strict, "the weak key is part of the strict dict");
    }

    #[test]
    fn the_first_element_that_has_no_key_is_reported() {
        // Elements 2 and 4 have unknown kinds (4 depends on 2, 3 on nothing):
        // whichever is hashed first, element 2 is named, as a sequential
        // computation would.
        let mut all = vec![import1()];
        all.push(stack("elements/mid.bst", &[0], &all));
        all.push(element("elements/odd.bst", "no-such-kind", Value::map()));
        all.push(element("elements/fine.bst", "manual", Value::map()));
        let mut last = element("elements/last.bst", "other-kind", Value::map());
        last.dependencies.push(build_dep(2, "elements/odd.bst"));
        all.push(last);
        for _ in 0..20 {
            match KeyTable::compute(&all, &host(), &FixedDigester) {
                Err(CacheKeyError::UnsupportedElementKind { element, kind }) => {
                    assert_eq!((element.as_str(), kind.as_str()), ("elements/odd.bst", "no-such-kind"));
                }
                other => panic!("expected an unsupported kind, got {other:?}"),
            }
        }
    }

    #[test]
    fn unresolved_sources_leave_keys_unknown_but_weak_names_survive() {
        let mut tar = element("elements/tar.bst", "import", Value::map());
        tar.sources.push(SourceInput {
            kind: "tar".into(),
            config: Cow::Owned(value_to_map(&mapping(vec![("url", "https://example.com/x.tar".into())]))),
            ..Default::default()
        });
        let mut all = vec![tar];
        let mut top = element("elements/top.bst", "manual", Value::map());
        top.dependencies.push(build_dep(0, "elements/tar.bst"));
        all.push(top);
        let table = keys_of(&all);
        assert_eq!(table.get(0).unwrap(), &ElementKeys { weak: None, strict: None, sources: vec![None] });
        let top = table.get(1).unwrap();
        assert!(top.weak.is_some(), "weak entries of a manual element need no dependency keys");
        assert!(top.strict.is_none());
    }

    #[test]
    fn cycles_are_reported() {
        let mut all = vec![element("a.bst", "stack", Value::map()), element("b.bst", "stack", Value::map())];
        all[0].dependencies.push(build_dep(1, "b.bst"));
        all[1].dependencies.push(build_dep(0, "a.bst"));
        assert!(matches!(KeyTable::compute(&all, &host(), &FixedDigester), Err(CacheKeyError::Internal { .. })));
    }

    /// The build-scope list exactly as spec §4.1 writes the walk (recursive, one visited set).
    fn reference_scope(all: &[ElementInput], element: usize) -> Vec<usize> {
        fn visit_run(all: &[ElementInput], x: usize, visited: &mut Vec<bool>, out: &mut Vec<usize>) {
            visited[x] = true;
            for dep in all[x].dependencies.iter().filter(|d| d.runtime) {
                if !visited[dep.element] {
                    visit_run(all, dep.element, visited, out);
                }
            }
            out.push(x);
        }
        let mut visited = vec![false; all.len()];
        let mut out = Vec::new();
        for dep in all[element].dependencies.iter().filter(|d| d.build) {
            if !visited[dep.element] {
                visit_run(all, dep.element, &mut visited, &mut out);
            }
        }
        out
    }

    /// Keys computed the slow, obvious way: the whole dict as a value, then `generate_key`.
    fn reference_keys(all: &[ElementInput]) -> Vec<(String, String)> {
        let order = super::super::build_scope::topological_order(all).unwrap();
        let mut keys: Vec<(String, String)> = vec![(String::new(), String::new()); all.len()];
        for index in order {
            let input = &all[index];
            let plugin = PluginKey::for_element(input).unwrap();
            let sources: Vec<Option<Value>> = input.sources.iter().map(|_| Some(Value::from(LOCAL_DIGEST))).collect();
            let Value::Map(dict) = base_dict(input, &plugin, &sources, &host()) else { unreachable!() };
            let mut dict = BTreeMap::clone(&dict);
            let scope = reference_scope(all, index);
            let entry = |dep: usize, key: Option<&str>| {
                let mut items = vec![Value::from(&*all[dep].project), Value::from(&*all[dep].name)];
                items.extend(key.map(Value::from));
                Value::List(items)
            };
            let strict_direct: Vec<usize> = input.dependencies.iter().filter(|d| d.strict).map(|d| d.element).collect();
            let weak_deps = scope
                .iter()
                .map(|&d| {
                    let keyed = plugin.strict_rebuild || strict_direct.contains(&d);
                    entry(d, keyed.then_some(keys[d].0.as_str()))
                })
                .collect();
            dict.insert("dependencies".into(), Value::List(weak_deps));
            let weak = generate_key(&Value::Map(Arc::new(dict.clone())));
            let strict_deps = scope.iter().map(|&d| entry(d, Some(keys[d].1.as_str()))).collect();
            dict.insert("dependencies".into(), Value::List(strict_deps));
            dict.insert("weak-cache-key".into(), Value::from(weak.as_str()));
            let strict = generate_key(&Value::Map(Arc::new(dict)));
            keys[index] = (weak, strict);
        }
        keys
    }

    #[test]
    fn shared_prefix_hashing_equals_the_obvious_computation_on_random_graphs() {
        let mut seed: u64 = 0x5eed;
        let mut next = move |bound: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % bound
        };
        // The last rounds are big enough for lists longer than a checkpoint interval.
        for round in 0..24 {
            let count = if round < 20 { 5 + next(40) as usize } else { 150 + next(100) as usize };
            let mut all: Vec<ElementInput> = Vec::new();
            for index in 0..count {
                let kind = ["stack", "manual", "compose", "import", "script", "filter"][next(6) as usize];
                let mut input = element(&format!("e{round}-{index}.bst"), kind, Value::map());
                if next(3) == 0 {
                    input.sources.push(local_source());
                }
                let mut chosen = Vec::new();
                for _ in 0..next(5).min(index as u64) {
                    // Big rounds: mostly recent dependencies, for deep closures.
                    let dep = if round >= 20 && next(4) > 0 {
                        index - 1 - next(index.min(8) as u64) as usize
                    } else {
                        next(index as u64) as usize
                    };
                    if chosen.contains(&dep) {
                        continue;
                    }
                    chosen.push(dep);
                    let (build, runtime) = [(true, true), (true, false), (false, true), (true, true)][next(4) as usize];
                    input.dependencies.push(DependencyInput {
                        element: dep,
                        path: all[dep].name.to_string().into(),
                        build,
                        runtime,
                        strict: build && next(5) == 0,
                        configs: Cow::Borrowed(&[]),
                    });
                }
                all.push(input);
            }
            if round >= 20 {
                let longest = (0..all.len()).map(|index| reference_scope(&all, index).len()).max().unwrap_or(0);
                assert!(longest > super::super::prefix_states::MIN_INTERVAL, "round {round}: longest list {longest}");
            }
            let table = keys_of(&all);
            for (index, (weak, strict)) in reference_keys(&all).into_iter().enumerate() {
                let keys = table.get(index).unwrap();
                assert_eq!(keys.weak.as_deref(), Some(weak.as_str()), "weak key of element {index}, round {round}");
                assert_eq!(keys.strict.as_deref(), Some(strict.as_str()), "strict key of element {index}, round {round}");
            }
        }
    }
}
