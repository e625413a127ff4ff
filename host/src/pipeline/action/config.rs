//! `[[pipeline.action]]`: a detector over a pipeline's rows and the webhook
//! its actions are delivered to.

use crate::runtime::registry::valid_name;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Built-in detector kinds, run by the built-in `detect` component.
pub const BUILTIN_KINDS: &[&str] = &["threshold", "change", "match"];

/// One action: when the detector emits something for a row, deliver it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// a-z 0-9 - _; names the action's metrics, its `/status` entry and its idempotency keys.
    pub name: String,
    /// What the detector reads: `windows` (the aggregate's window rows, the
    /// default when the pipeline aggregates) or `records` (the transforms'
    /// output, or the input records when there are no transforms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<ActionInput>,
    /// `threshold`, `change` or `match` (built in, set by `when`), or the name
    /// of an uploaded transform written with the SDK's `detect` module.
    pub detector: String,
    /// The detector's settings, handed to it with every row. For the built-ins:
    /// `threshold`: `column`, `above` and/or `below`; `change`: `column`,
    /// `factor` (> 1), `direction` (`spike`, `drop`, `both`), `min_previous`;
    /// `match`: `field`, `any_of` (a list), `case_insensitive`.
    #[serde(default)]
    pub when: Map<String, Value>,
    /// Window rows only: the columns that identify a group, so each row is
    /// compared with the same group's row of the previous window (`change`).
    /// Empty: the whole stream is one group.
    #[serde(default)]
    pub group_by: Vec<String>,
    pub webhook: WebhookConfig,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ActionInput {
    Records,
    Windows,
}

/// Where and how actions are delivered.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://…` or `https://…` (certificates checked against the system's roots). `${NAME}` is replaced by the environment
    /// variable `NAME` when the pipeline starts (secrets stay out of the file).
    pub url: String,
    /// `POST` (default), `PUT` or `PATCH`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers; values may use `${NAME}` like the URL.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body. `{{field}}` (or `{{record.category}}`, a dotted path
    /// into the action record) is replaced by the value: a string's text
    /// JSON-escaped, so it can sit inside a JSON string; anything else as JSON.
    /// `{{action}}` is the whole action record, `{{idempotency_key}}` its key.
    /// Default: the action record as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The `Content-Type` of the body.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Actions per request. Above 1 the body is a JSON array of the actions'
    /// bodies and `Idempotency-Key` lists their keys, comma-separated.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// How long one attempt may take, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests on the way at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// The first retry waits about this long (with jitter); each further one twice as long, up to `retry_max_ms`.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Past this long without success an action goes to the dead letters
    /// (kind `action_gave_up`) so the pipeline moves on; 0 retries for ever.
    #[serde(default = "default_give_up_after_ms")]
    pub give_up_after_ms: u64,
}

fn default_method() -> String {
    "POST".into()
}
fn default_content_type() -> String {
    "application/json".into()
}
fn default_batch_max() -> usize {
    1
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_max_in_flight() -> usize {
    4
}
fn default_retry_initial_ms() -> u64 {
    200
}
fn default_retry_max_ms() -> u64 {
    30_000
}
fn default_give_up_after_ms() -> u64 {
    15 * 60_000
}

impl ActionConfig {
    /// What the detector reads, given whether the pipeline aggregates.
    pub fn input(&self, aggregates: bool) -> ActionInput {
        self.on.unwrap_or(if aggregates { ActionInput::Windows } else { ActionInput::Records })
    }

    /// The component that runs the detector, and the settings it is handed
    /// (a built-in kind becomes `kind` in them).
    pub fn component(&self) -> (&str, Map<String, Value>) {
        let mut when = self.when.clone();
        if BUILTIN_KINDS.contains(&self.detector.as_str()) {
            when.insert("kind".into(), Value::String(self.detector.clone()));
            ("detect", when)
        } else {
            (&self.detector, when)
        }
    }

    pub fn validate(&self, aggregates: bool) -> Result<(), String> {
        let n = &self.name;
        if !valid_name(n) {
            return Err(format!("action name `{n}` must be 1-64 characters of a-z 0-9 - _"));
        }
        if self.input(aggregates) == ActionInput::Windows && !aggregates {
            return Err(format!("action `{n}`: on = \"windows\" needs a `[pipeline.aggregate]`; use on = \"records\""));
        }
        if BUILTIN_KINDS.contains(&self.detector.as_str()) {
            check_builtin(&self.detector, &self.when).map_err(|e| format!("action `{n}`: [pipeline.action.when] of a `{}` detector: {e}", self.detector))?;
        } else if !valid_name(&self.detector) {
            return Err(format!("action `{n}`: detector `{}` must be threshold, change, match or the name of an uploaded transform", self.detector));
        }
        self.webhook.validate().map_err(|e| format!("action `{n}`: webhook: {e}"))
    }
}

impl WebhookConfig {
    fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!("url `{}` must start with http:// or https://", self.url));
        }
        if !["POST", "PUT", "PATCH"].contains(&self.method.as_str()) {
            return Err(format!("method `{}` must be POST, PUT or PATCH", self.method));
        }
        if !(1..=1000).contains(&self.batch_max) {
            return Err("batch_max must be between 1 and 1000".into());
        }
        if !(1..=64).contains(&self.max_in_flight) {
            return Err("max_in_flight must be between 1 and 64".into());
        }
        if self.timeout_ms == 0 || self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return Err("timeout_ms and retry_initial_ms must be above 0, and retry_max_ms at least retry_initial_ms".into());
        }
        Ok(())
    }
}

/// The built-in detectors' settings, checked before the pipeline starts so a
/// typo is one clear error rather than every row refused.
fn check_builtin(kind: &str, when: &Map<String, Value>) -> Result<(), String> {
    let string = |k: &str| match when.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        Some(_) => Err(format!("`{k}` must be a non-empty string")),
        None => Err(format!("`{k}` is missing")),
    };
    let number = |k: &str, required: bool| match when.get(k) {
        Some(Value::Number(_)) => Ok(true),
        Some(_) => Err(format!("`{k}` must be a number")),
        None if required => Err(format!("`{k}` is missing")),
        None => Ok(false),
    };
    let known = |keys: &[&str]| match when.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown setting `{k}` (known: {})", keys.join(", "))),
        None => Ok(()),
    };
    match kind {
        "threshold" => {
            known(&["column", "above", "below"])?;
            string("column")?;
            if !number("above", false)? && !number("below", false)? {
                return Err("give `above`, `below` or both".into());
            }
        }
        "change" => {
            known(&["column", "factor", "direction", "min_previous"])?;
            string("column")?;
            number("factor", true)?;
            if when.get("factor").and_then(Value::as_f64).is_some_and(|f| f <= 1.0) {
                return Err("`factor` must be above 1 (2 means doubled or halved)".into());
            }
            number("min_previous", false)?;
            if let Some(d) = when.get("direction")
                && !matches!(d.as_str(), Some("spike" | "drop" | "both"))
            {
                return Err("`direction` must be \"spike\", \"drop\" or \"both\"".into());
            }
        }
        "match" => {
            known(&["field", "any_of", "case_insensitive"])?;
            string("field")?;
            match when.get("any_of") {
                Some(Value::Array(a)) if !a.is_empty() => {}
                _ => return Err("`any_of` must be a non-empty list".into()),
            }
            if when.get("case_insensitive").is_some_and(|v| !v.is_boolean()) {
                return Err("`case_insensitive` must be true or false".into());
            }
        }
        _ => unreachable!("only built-in kinds are checked"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(toml_text: &str) -> ActionConfig {
        toml::from_str(toml_text).expect("valid TOML")
    }

    #[test]
    fn defaults_and_built_in_settings() {
        let a = action(
            r#"name = "busy"
detector = "threshold"
when = { column = "post_count", above = 100 }
webhook = { url = "http://127.0.0.1:9/hook" }"#,
        );
        assert_eq!(a.webhook.method, "POST");
        assert_eq!(a.webhook.batch_max, 1);
        assert_eq!(a.input(true), ActionInput::Windows);
        assert_eq!(a.input(false), ActionInput::Records);
        a.validate(true).expect("valid");
        let (component, when) = a.component();
        assert_eq!(component, "detect");
        assert_eq!(when["kind"], "threshold");
        a.validate(false).expect("without an aggregate it reads records");
        let on_windows = ActionConfig { on: Some(ActionInput::Windows), ..a };
        assert_eq!(on_windows.validate(false).unwrap_err(), "action `busy`: on = \"windows\" needs a `[pipeline.aggregate]`; use on = \"records\"");
    }

    #[test]
    fn bad_settings_name_what_to_change() {
        let cases = [
            (
                r#"detector = "threshold"
when = { column = "n" }"#,
                "give `above`, `below` or both",
            ),
            (
                r#"detector = "threshold"
when = { column = "n", abov = 3 }"#,
                "unknown setting `abov` (known: column, above, below)",
            ),
            (
                r#"detector = "change"
when = { column = "n", factor = 0.5 }"#,
                "`factor` must be above 1 (2 means doubled or halved)",
            ),
            (
                r#"detector = "match"
when = { field = "category", any_of = [] }"#,
                "`any_of` must be a non-empty list",
            ),
        ];
        for (body, want) in cases {
            let a = action(&format!("name = \"a\"\non = \"records\"\n{body}\nwebhook = {{ url = \"http://x/\" }}"));
            let err = a.validate(false).unwrap_err();
            assert!(err.ends_with(want), "{err}");
        }
        let a = action("name = \"a\"\ndetector = \"mine\"\nwebhook = { url = \"ftp://x/\" }");
        assert_eq!(a.validate(false).unwrap_err(), "action `a`: webhook: url `ftp://x/` must start with http:// or https://");
    }
}
