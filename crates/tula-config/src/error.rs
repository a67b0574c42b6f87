//! Config problems: each one a path into the config and a message.

use std::fmt;

use serde::Serialize;

/// One problem, e.g. path `vips[web].backends[2].weight`, message `1001 is out of range 0..=1000`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one config, in the order found; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// `Ok(())` when `errors` is empty.
    pub fn check(errors: Vec<ConfigError>) -> Result<(), ConfigErrors> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors { errors })
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// `parent.key`, or whichever of the two is not empty.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() || key.is_empty() {
        format!("{parent}{key}")
    } else {
        format!("{parent}.{key}")
    }
}

/// How errors name a VIP: `vips[NAME]`, or `vips[INDEX]` (0-based, file order) when it has no usable name.
pub(crate) fn vip_path(index: usize, name: Option<&str>) -> String {
    match name {
        Some(name) if crate::validate::is_valid_vip_name(name) => format!("vips[{name}]"),
        _ => format!("vips[{index}]"),
    }
}
