//! The host identity used by `arch` and `os` options: `uname -m` / `uname -s`,
//! overridable with `WEIR_HOST_MACHINE` / `WEIR_HOST_SYSTEM`.
//!
//! Key decision: architecture names are canonicalised with BuildStream's
//! table (case-insensitive, `_` → `-`), so aliases compare equal.

/// The machine and system names of the host.
#[derive(Debug, Clone)]
pub struct Host {
    /// `uname -m` text (e.g. `x86_64`).
    pub machine: String,
    /// `uname -s` text (e.g. `Linux`).
    pub system: String,
}

impl Host {
    /// The running host, with the environment overrides applied.
    pub fn detect() -> Host {
        let (machine, system) = uname();
        Host {
            machine: std::env::var("WEIR_HOST_MACHINE").unwrap_or(machine),
            system: std::env::var("WEIR_HOST_SYSTEM").unwrap_or(system),
        }
    }
}

fn uname() -> (String, String) {
    // SAFETY: `utsname` is plain old data and `uname` only writes into it.
    let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `buf` is a valid, writable utsname.
    if unsafe { libc::uname(&mut buf) } != 0 {
        return ("unknown".into(), "unknown".into());
    }
    let field = |chars: &[libc::c_char]| -> String {
        let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&buf.machine), field(&buf.sysname))
}

const ARCHES: &[(&str, &[&str])] = &[
    ("aarch32", &["arm", "armv7l", "armv7b"]),
    ("aarch64", &["arm64", "armv8l"]),
    ("aarch64-be", &["armv8b"]),
    ("x86-32", &["i386", "i486", "i586", "i686"]),
    ("x86-64", &["amd64", "x86_64"]),
    ("power-isa-be", &["powerpc", "powerpc64", "ppc64"]),
    ("power-isa-le", &["powerpc64le", "ppc64le"]),
    ("sparc-v9", &["sparc", "sparc64", "sun4v"]),
    ("rv32g", &["riscv32"]),
    ("rv64g", &["riscv64"]),
    ("la64v100", &["loong64", "loongarch64"]),
];

/// The canonical architecture name for `name`, or `None` if unknown.
pub fn canonical_arch(name: &str) -> Option<&'static str> {
    let norm = name.to_ascii_lowercase().replace('_', "-");
    for (canonical, aliases) in ARCHES {
        if *canonical == norm || aliases.iter().any(|a| a.replace('_', "-") == norm) {
            return Some(canonical);
        }
    }
    None
}
