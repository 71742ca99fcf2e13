//! Project options (spec §5): declarations of every type, values from
//! defaults, junctions, user configuration and the command line, and their
//! use in expressions and exported variables.
//!
//! Key decision: one [`ProjectOption`] type with an [`OptionType`] tag; the
//! per-type rules (value syntax, validation, string form) are `match`es on
//! the tag, gathered in this file, and the [`OptionPool`] owns the set.

use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;

use super::element_files::element_files;
use super::expression::Value;
use super::host::{canonical_arch, Host};
use super::symbol::check_symbol;
use crate::yaml::{parse_bool, LoadError, LoadErrorReason, LoadResult, Map, Node, Span};

/// The option types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionType {
    /// `bool`.
    Bool,
    /// `enum`.
    Enum,
    /// `flags`.
    Flags,
    /// `arch`.
    Arch,
    /// `os`.
    Os,
    /// `element-mask`.
    ElementMask,
}

impl OptionType {
    fn name(self) -> &'static str {
        match self {
            OptionType::Bool => "bool",
            OptionType::Enum => "enum",
            OptionType::Flags => "flags",
            OptionType::Arch => "arch",
            OptionType::Os => "os",
            OptionType::ElementMask => "element-mask",
        }
    }

    fn is_list(self) -> bool {
        matches!(self, OptionType::Flags | OptionType::ElementMask)
    }
}

/// An option's value.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// A boolean.
    Bool(bool),
    /// A string (enum, arch, os).
    Str(String),
    /// A sorted list (flags, element-mask).
    List(Vec<String>),
}

/// One declared option.
#[derive(Debug, Clone)]
pub struct ProjectOption {
    /// Option name.
    pub name: String,
    /// Its type.
    pub kind: OptionType,
    /// Allowed values (enum, flags, arch, os, element-mask).
    pub values: Vec<String>,
    /// Current value.
    pub value: OptionValue,
    /// Variable the value is exported to.
    pub variable: Option<String>,
    /// Where it was declared.
    pub span: Span,
}

impl ProjectOption {
    /// The string form used for variable export and display.
    pub fn string_value(&self) -> String {
        match &self.value {
            OptionValue::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            OptionValue::Str(s) => s.clone(),
            OptionValue::List(l) => l.join(","),
        }
    }

    fn invalid(&self, value: &str, at: Option<Span>) -> LoadError {
        let valid = match self.kind {
            OptionType::Bool => "True, true, False, false".to_string(),
            _ => self.values.join(", "),
        };
        let message = format!("Invalid value for {} option '{}': {}\nValid values: {}", self.kind.name(), self.name, value, valid);
        match at {
            Some(span) => LoadError::at(span, LoadErrorReason::InvalidData, message),
            None => LoadError::new(LoadErrorReason::InvalidData, message),
        }
    }

    fn check_member(&self, value: &str, at: Option<Span>) -> LoadResult<()> {
        if self.values.iter().any(|v| v == value) {
            Ok(())
        } else {
            Err(self.invalid(value, at))
        }
    }

    fn set_list(&mut self, mut items: Vec<String>, at: Option<Span>) -> LoadResult<()> {
        for item in &items {
            self.check_member(item, at)?;
        }
        items.sort();
        self.value = OptionValue::List(items);
        Ok(())
    }

    /// Sets the value from YAML (junction `config: options`, user configuration).
    pub fn set_from_node(&mut self, node: &Node) -> LoadResult<()> {
        let span = node.span();
        if self.kind.is_list() {
            let Node::Seq(seq) = node else {
                return Err(LoadError::at(
                    span,
                    LoadErrorReason::InvalidData,
                    format!("Value of '{}' is not of the expected type 'list'", self.name),
                ));
            };
            let items = seq.scalars()?.iter().map(|s| s.value.to_string()).collect();
            return self.set_list(items, Some(span));
        }
        let Node::Scalar(s) = node else {
            return Err(LoadError::at(
                span,
                LoadErrorReason::InvalidData,
                format!("Value of '{}' is not of the expected type 'scalar'", self.name),
            ));
        };
        match self.kind {
            OptionType::Bool => {
                let b = parse_bool(&s.value).ok_or_else(|| {
                    LoadError::at(span, LoadErrorReason::InvalidData, format!("Value of '{}' is not of the expected type 'boolean'", self.name))
                })?;
                self.value = OptionValue::Bool(b);
            }
            _ => {
                self.check_member(&s.value, Some(span))?;
                self.value = OptionValue::Str(s.value.to_string());
            }
        }
        Ok(())
    }

    /// Sets the value from a `--option NAME VALUE` string.
    pub fn set_from_cli(&mut self, text: &str) -> LoadResult<()> {
        match self.kind {
            OptionType::Bool => {
                let b = match text {
                    "True" | "true" => true,
                    "False" | "false" => false,
                    _ => return Err(self.invalid(text, None)),
                };
                self.value = OptionValue::Bool(b);
            }
            OptionType::Flags | OptionType::ElementMask => {
                let squashed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                let items: Vec<String> =
                    if squashed.is_empty() { Vec::new() } else { squashed.split(',').map(str::to_string).collect() };
                self.set_list(items, None)?;
            }
            _ => {
                self.check_member(text, None)?;
                self.value = OptionValue::Str(text.to_string());
            }
        }
        Ok(())
    }

    /// Checks the final value (host defaults of arch/os may be invalid).
    fn validate(&self) -> LoadResult<()> {
        match &self.value {
            OptionValue::Str(s) => self.check_member(s, Some(self.span)),
            _ => Ok(()),
        }
    }

    /// The value as seen by expressions.
    pub fn expression_value(&self) -> Value {
        match &self.value {
            OptionValue::Bool(b) => Value::Bool(*b),
            OptionValue::Str(s) => Value::Str(s.clone()),
            OptionValue::List(l) => Value::List(l.iter().cloned().map(Value::Str).collect()),
        }
    }
}

/// The options of one project.
#[derive(Debug, Clone, Default)]
pub struct OptionPool {
    /// Options by name, in declaration order.
    pub options: IndexMap<String, ProjectOption>,
}

const COMMON_KEYS: [&str; 3] = ["type", "description", "variable"];

fn declared_values(def: &Map, kind: OptionType, name: &str) -> LoadResult<Vec<String>> {
    let values: Vec<String> =
        def.get_str_list("values")?.unwrap_or_default().iter().map(|s| s.value.to_string()).collect();
    if values.is_empty() {
        return Err(LoadError::at(
            def.span,
            LoadErrorReason::InvalidData,
            format!("No values specified for {} option '{}'", kind.name(), name),
        ));
    }
    Ok(values)
}

impl OptionPool {
    /// Reads the `options` declarations of a project.
    pub fn declare(decls: &Map, host: &Host, element_path: &Path) -> LoadResult<OptionPool> {
        let mut pool = OptionPool::default();
        for (name, def) in decls.iter() {
            check_symbol(name, def.span(), "option name", false)?;
            let Node::Map(def) = def else {
                return Err(LoadError::at(
                    def.span(),
                    LoadErrorReason::InvalidData,
                    format!("Value of '{name}' is not of the expected type 'dict'"),
                ));
            };
            let type_node = def.req_scalar("type")?;
            let kind = match type_node.value.as_ref() {
                "bool" => OptionType::Bool,
                "enum" => OptionType::Enum,
                "flags" => OptionType::Flags,
                "arch" => OptionType::Arch,
                "os" => OptionType::Os,
                "element-mask" => OptionType::ElementMask,
                other => {
                    return Err(LoadError::at(
                        type_node.span,
                        LoadErrorReason::InvalidData,
                        format!("Invalid value for option type: {other}"),
                    ))
                }
            };
            let extra: &[&str] = match kind {
                OptionType::Bool => &["default"],
                OptionType::Enum | OptionType::Flags => &["values", "default"],
                OptionType::Arch | OptionType::Os => &["values"],
                OptionType::ElementMask => &["default"],
            };
            let allowed: Vec<&str> = COMMON_KEYS.iter().chain(extra.iter()).copied().collect();
            def.validate_keys(&allowed)?;
            def.req_scalar("description")?;
            let variable = match def.get_scalar("variable")? {
                Some(v) => {
                    check_symbol(&v.value, v.span, "variable name", true)?;
                    Some(v.value.to_string())
                }
                None => None,
            };
            let mut option = ProjectOption {
                name: name.to_string(),
                kind,
                values: Vec::new(),
                value: OptionValue::Bool(false),
                variable,
                span: def.span,
            };
            match kind {
                OptionType::Bool => {
                    let d = def.req_scalar("default")?;
                    option.value = OptionValue::Bool(parse_bool(&d.value).ok_or_else(|| {
                        LoadError::at(d.span, LoadErrorReason::InvalidData, "Value of 'default' is not of the expected type 'boolean'")
                    })?);
                }
                OptionType::Enum => {
                    option.values = declared_values(def, kind, name)?;
                    let d = def.req_scalar("default")?;
                    option.check_member(&d.value, Some(d.span))?;
                    option.value = OptionValue::Str(d.value.to_string());
                }
                OptionType::Flags => {
                    option.values = declared_values(def, kind, name)?;
                    let items =
                        def.get_str_list("default")?.unwrap_or_default().iter().map(|s| s.value.to_string()).collect();
                    option.set_list(items, Some(def.span))?;
                }
                OptionType::Arch => {
                    option.values = declared_values(def, kind, name)?;
                    for v in &option.values {
                        if canonical_arch(v).is_none() {
                            return Err(LoadError::at(
                                def.span,
                                LoadErrorReason::InvalidData,
                                format!("Invalid value for arch option '{name}': unknown architecture '{v}'"),
                            ));
                        }
                    }
                    let host_arch = canonical_arch(&host.machine).ok_or_else(|| {
                        LoadError::other(
                            "PLATFORM",
                            "",
                            None,
                            format!("Unknown host architecture: {}", host.machine),
                        )
                    })?;
                    let default = option
                        .values
                        .iter()
                        .find(|v| canonical_arch(v) == Some(host_arch))
                        .cloned()
                        .unwrap_or_else(|| host_arch.to_string());
                    option.value = OptionValue::Str(default);
                }
                OptionType::Os => {
                    option.values = declared_values(def, kind, name)?;
                    option.value = OptionValue::Str(host.system.clone());
                }
                OptionType::ElementMask => {
                    option.values = element_files(element_path, |_| true);
                    let items =
                        def.get_str_list("default")?.unwrap_or_default().iter().map(|s| s.value.to_string()).collect();
                    option.set_list(items, Some(def.span))?;
                }
            }
            pool.options.insert(name.to_string(), option);
        }
        Ok(pool)
    }

    /// Applies a mapping of option values (junction `config: options`, user config).
    pub fn apply_node_values(&mut self, values: &Map) -> LoadResult<()> {
        for (name, node) in values.iter() {
            let Some(option) = self.options.get_mut(name.as_ref()) else {
                return Err(LoadError::at(
                    node.span(),
                    LoadErrorReason::InvalidData,
                    format!("Unknown option '{name}' specified"),
                ));
            };
            option.set_from_node(node)?;
        }
        Ok(())
    }

    /// Applies `--option` values; unknown names fail unless `ignore_unknown`.
    pub fn apply_cli_values(&mut self, values: &[(String, String)], ignore_unknown: bool) -> LoadResult<()> {
        for (name, text) in values {
            match self.options.get_mut(name) {
                Some(option) => option.set_from_cli(text)?,
                None if ignore_unknown => {}
                None => {
                    return Err(LoadError::new(
                        LoadErrorReason::InvalidData,
                        format!("Unknown option '{name}' specified on the command line"),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Validates every final value.
    pub fn resolve(&self) -> LoadResult<()> {
        self.options.values().try_for_each(ProjectOption::validate)
    }

    /// The value of option `name` for expressions.
    pub fn lookup(&self, name: &str) -> Option<Value> {
        self.options.get(name).map(ProjectOption::expression_value)
    }

    /// Writes exported options into `variables` (synthetic nodes).
    pub fn export_variables(&self, variables: &mut Map) {
        for option in self.options.values() {
            if let Some(var) = &option.variable {
                variables.insert(Arc::<str>::from(var.as_str()), Node::scalar(option.string_value(), Span::synthetic(variables.span.file)));
            }
        }
    }
}
