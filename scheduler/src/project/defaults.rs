//! BuildStream's builtin project configuration (spec §6.4): what every
//! project gets before its `project.conf` is composed on top.
//!
//! Key decision: the defaults are YAML text parsed once per project and
//! marked synthetic, so they compose with the same code as user files.

use crate::yaml::{parser, FileId, LoadResult, Map, Node, Span};

const PROJECT_DEFAULTS: &str = r#"
element-path: .
ref-storage: inline
fail-on-overlap: False
variables:
  prefix: "/usr"
  exec_prefix: "%{prefix}"
  bindir: "%{exec_prefix}/bin"
  sbindir: "%{exec_prefix}/sbin"
  libexecdir: "%{exec_prefix}/libexec"
  datadir: "%{prefix}/share"
  sysconfdir: "/etc"
  sharedstatedir: "%{prefix}/com"
  localstatedir: "/var"
  lib: "lib"
  libdir: "%{prefix}/%{lib}"
  debugdir: "%{libdir}/debug"
  includedir: "%{prefix}/include"
  docdir: "%{datadir}/doc"
  infodir: "%{datadir}/info"
  mandir: "%{datadir}/man"
  build-root: /buildstream/%{project-name}/%{element-name}
  conf-root: "."
  install-root: /buildstream-install
  strip-binaries: ""
environment:
  PATH: /usr/bin:/bin:/usr/sbin:/sbin
  SHELL: /bin/sh
  TERM: dumb
  USER: tomjon
  USERNAME: tomjon
  LOGNAME: tomjon
  LC_ALL: C
  HOME: /tmp
  TZ: UTC
  SOURCE_DATE_EPOCH: 1321009871
environment-nocache: []
sandbox: {}
split-rules:
  runtime:
  - "%{bindir}"
  - "%{bindir}/*"
  - "%{sbindir}"
  - "%{sbindir}/*"
  - "%{libexecdir}"
  - "%{libexecdir}/*"
  - "%{libdir}/lib*.so*"
  devel:
  - "%{includedir}"
  - "%{includedir}/**"
  - "%{libdir}/lib*.a"
  - "%{libdir}/lib*.la"
  - "%{libdir}/pkgconfig/*.pc"
  - "%{datadir}/pkgconfig/*.pc"
  - "%{datadir}/aclocal/*.m4"
  debug:
  - "%{debugdir}"
  - "%{debugdir}/**"
  doc:
  - "%{docdir}"
  - "%{docdir}/**"
  - "%{infodir}"
  - "%{infodir}/**"
  - "%{mandir}"
  - "%{mandir}/**"
  locale:
  - "%{datadir}/locale"
  - "%{datadir}/locale/**"
  - "%{datadir}/i18n"
  - "%{datadir}/i18n/**"
  - "%{datadir}/zoneinfo"
  - "%{datadir}/zoneinfo/**"
shell:
  command: [sh, -i]
source-provenance-attributes:
  homepage: "Project homepage"
  issue-tracker: "Issue tracker"
defaults:
  targets: []
fatal-warnings: []
"#;

/// Marks every node of a tree synthetic (attributed to `file`).
pub fn mark_synthetic(node: &mut Node, file: FileId) {
    match node {
        Node::Scalar(s) => s.span = Span::synthetic(file),
        Node::Seq(s) => {
            s.span = Span::synthetic(file);
            s.items.iter_mut().for_each(|n| mark_synthetic(n, file));
        }
        Node::Map(m) => mark_map_synthetic(m, file),
    }
}

/// [`mark_synthetic`] for a mapping.
pub fn mark_map_synthetic(map: &mut Map, file: FileId) {
    map.span = Span::synthetic(file);
    map.entries.values_mut().for_each(|n| mark_synthetic(n, file));
}

/// Parses embedded default YAML into a synthetic tree attributed to `file`.
pub fn synthetic_yaml(text: &str, file: FileId) -> LoadResult<Map> {
    let mut map = parser::parse(text, file)?;
    mark_map_synthetic(&mut map, file);
    Ok(map)
}

/// The builtin project defaults, attributed to `file` (the project's project.conf).
pub fn project_defaults(file: FileId) -> LoadResult<Map> {
    synthetic_yaml(PROJECT_DEFAULTS, file)
}
