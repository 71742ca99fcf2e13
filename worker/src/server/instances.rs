//! [`Instances`]: the REAPI instance names this server answers for, and the
//! check every request goes through.
//!
//! Key decision: every instance shares one store graph and one Action Cache
//! (instance names partition clients by configuration, not storage); a
//! request naming an instance that is not configured is `INVALID_ARGUMENT`.
//! The digest function must be SHA-256 (or unset, meaning SHA-256).

use std::collections::BTreeSet;

use weir_proto::reapi::digest_function;

use super::ServerError;

/// The instance names served.
#[derive(Debug, Clone)]
pub struct Instances {
    names: BTreeSet<String>,
}

impl Instances {
    /// Serves exactly `names` (each validated as a REAPI instance name).
    pub fn new(names: impl IntoIterator<Item = String>) -> Result<Self, ServerError> {
        let names: BTreeSet<String> = names.into_iter().collect();
        for name in &names {
            if !name.is_empty() {
                weir_proto::resource_name::validate_instance_name(name)?;
            }
        }
        if names.is_empty() {
            return Err(ServerError::InvalidArgument("at least one instance name must be served".into()));
        }
        Ok(Instances { names })
    }

    /// The served names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Fails unless `name` is served.
    pub fn check(&self, name: &str) -> Result<(), ServerError> {
        if self.names.contains(name) {
            Ok(())
        } else {
            Err(ServerError::UnknownInstance(name.chars().take(200).collect()))
        }
    }

    /// Fails unless `name` is served and `function` is SHA-256 or unset.
    pub fn check_with_function(&self, name: &str, function: i32) -> Result<(), ServerError> {
        self.check(name)?;
        check_digest_function(function)
    }
}

/// Fails unless `function` (a `DigestFunction.Value`) is SHA-256 or unset.
pub fn check_digest_function(function: i32) -> Result<(), ServerError> {
    if function == digest_function::Value::Unknown as i32 || function == digest_function::Value::Sha256 as i32 {
        Ok(())
    } else {
        Err(ServerError::InvalidArgument(format!("digest function {function} is not supported; only SHA256")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_names_and_functions() {
        let instances = Instances::new(["".to_string(), "main".to_string()]).unwrap();
        assert!(instances.check("").is_ok());
        assert!(instances.check("main").is_ok());
        assert!(matches!(instances.check("other"), Err(ServerError::UnknownInstance(_))));
        assert!(instances.check_with_function("main", digest_function::Value::Sha256 as i32).is_ok());
        assert!(instances.check_with_function("main", digest_function::Value::Blake3 as i32).is_err());
        assert!(Instances::new(["blobs".to_string()]).is_err());
        assert!(Instances::new(Vec::<String>::new()).is_err());
    }
}
