//! `[[transform]]`: a SQL stage defined in the config file.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A SQL stage the config file defines. At start it is registered under
/// `name` (a new version when its text changed since the last start; the same
/// text is the same version), so pipelines name it like any transform.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqlStageConfig {
    /// The name pipelines use (`transforms = ["sql:NAME"]`).
    pub name: String,
    /// The statement itself: `[CREATE TABLE input (…);] SELECT … FROM input [WHERE …]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Or a file holding it (relative to the directory sluice runs in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_file: Option<PathBuf>,
}

impl SqlStageConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !crate::runtime::registry::valid_name(&self.name) {
            return Err(format!("[[transform]] name `{}` must be 1-64 characters of a-z 0-9 - _", self.name));
        }
        match (&self.sql, &self.sql_file) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(format!("[[transform]] `{}`: give its statement as `sql = \"…\"` or `sql_file = \"path\"`, one of the two", self.name)),
        }
    }

    /// The statement's text.
    pub fn text(&self) -> anyhow::Result<String> {
        match (&self.sql, &self.sql_file) {
            (Some(sql), _) => Ok(sql.clone()),
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("[[transform]] `{}`: reading sql_file {}: {e}", self.name, path.display()))
            }
            (None, None) => anyhow::bail!("[[transform]] `{}` has no statement", self.name),
        }
    }
}
