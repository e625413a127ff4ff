//! `[pipeline.join]`: a stream-stream join by key over the pipeline's topics.

use serde::{Deserialize, Serialize};

/// Join the records of several topics that share a key (e.g. the pin, geo
/// and user records of one post, by `ind`). Each joined row holds the key
/// (as `key_as`) and the fields of every side; a field two sides both have is
/// renamed `<side name>_<field>` in the row.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// The joined topics, each with its key field; the first is the left side.
    /// Left out when the pipeline's first stage is a SQL statement whose FROM
    /// joins the topics (`FROM "t.pin" AS pin JOIN "t.geo" AS geo USING (ind)`):
    /// the statement names them, and this section only tunes the join.
    #[serde(default)]
    pub inputs: Vec<JoinInput>,
    /// `inner`: a row when every side has arrived; a record whose partners do
    /// not come within `within_ms` is a dead letter (kind `unjoined`).
    /// `left`: the same, and a left record whose partners do not come is
    /// emitted with the missing sides' fields null.
    #[serde(default)]
    pub kind: JoinKind,
    /// The output field holding the key. Default `ind`.
    #[serde(default = "default_key_as")]
    pub key_as: String,
    /// How long the first record of a key waits for the others, in
    /// milliseconds of the records' log timestamps (when they were stored).
    #[serde(default = "default_within_ms")]
    pub within_ms: u64,
    /// How long a joined key is remembered, so a resent record of it (the
    /// emulator resends rows) does not join again, in milliseconds of log time.
    /// The reports count a resent row once; so does the join within this time.
    #[serde(default = "default_dedupe_for_ms")]
    pub dedupe_for_ms: u64,
    /// Partitions of the pipeline's join topic (`<pipeline>-join`). Default: `log.partitions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    /// Memory budget for waiting records and remembered keys, per join worker,
    /// in bytes. Past it the pipeline stops with an error rather than growing.
    #[serde(default = "default_max_state_bytes")]
    pub max_state_bytes: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JoinInput {
    /// A topic of the pipeline's `topics`.
    pub topic: String,
    /// The field of its records holding the key (e.g. `ind`, or `index` for raw pins).
    pub key: String,
    /// The side's name in renamed fields and dead letters. Default: the topic's
    /// last dot-separated part (`0a1b.pin` → `pin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JoinKind {
    #[default]
    Inner,
    Left,
}

impl Default for JoinConfig {
    fn default() -> Self {
        JoinConfig {
            inputs: Vec::new(),
            kind: JoinKind::Inner,
            key_as: default_key_as(),
            within_ms: default_within_ms(),
            dedupe_for_ms: default_dedupe_for_ms(),
            partitions: None,
            max_state_bytes: default_max_state_bytes(),
        }
    }
}

impl JoinConfig {
    /// The join a SQL statement names (`(topic, side name, key)` per side),
    /// tuned by this section (which must not name inputs of its own).
    pub fn with_statement(&self, sides: &[(String, String, String)], left: bool, key_as: &str, topics: &[String]) -> Result<Self, String> {
        if !self.inputs.is_empty() {
            return Err("the pipeline's first stage joins in SQL (FROM … JOIN …) and [pipeline.join] names inputs too: name them in one place".into());
        }
        let inputs = sides.iter().map(|(topic, name, key)| JoinInput { topic: topic.clone(), key: key.clone(), name: Some(name.clone()) }).collect();
        let c = JoinConfig { inputs, kind: if left { JoinKind::Left } else { JoinKind::Inner }, key_as: key_as.to_owned(), ..self.clone() };
        c.validate(topics)?;
        Ok(c)
    }
}

fn default_key_as() -> String {
    "ind".into()
}

fn default_within_ms() -> u64 {
    300_000
}

fn default_dedupe_for_ms() -> u64 {
    86_400_000
}

fn default_max_state_bytes() -> u64 {
    256 << 20
}

/// Sides a join takes at most.
const MAX_SIDES: usize = 8;

impl JoinInput {
    pub fn side_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.topic.rsplit('.').next().unwrap_or(&self.topic).to_owned())
    }
}

impl JoinConfig {
    /// Checks against the pipeline's `topics`.
    pub fn validate(&self, topics: &[String]) -> Result<(), String> {
        if self.inputs.is_empty() {
            // A SQL statement names them; checked again once it did (`with_statement`).
            return self.validate_settings();
        }
        if !(2..=MAX_SIDES).contains(&self.inputs.len()) {
            return Err(format!("join.inputs must name 2 to {MAX_SIDES} topics"));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            if input.key.is_empty() {
                return Err(format!("join.inputs: topic `{}` has an empty key field", input.topic));
            }
            if self.inputs[..i].iter().any(|o| o.topic == input.topic) {
                return Err(format!("join.inputs: topic `{}` is named twice", input.topic));
            }
            if self.inputs[..i].iter().any(|o| o.side_name() == input.side_name()) {
                return Err(format!("join.inputs: two sides are named `{}`; give them distinct `name`s", input.side_name()));
            }
        }
        let mut joined: Vec<&str> = self.inputs.iter().map(|i| i.topic.as_str()).collect();
        let mut read: Vec<&str> = topics.iter().map(String::as_str).collect();
        joined.sort_unstable();
        read.sort_unstable();
        if joined != read {
            return Err(format!("join.inputs name the topics [{}] but the pipeline reads [{}]; they must be the same", joined.join(", "), read.join(", ")));
        }
        if self.key_as.is_empty() {
            return Err("join.key_as is empty".into());
        }
        self.validate_settings()
    }

    fn validate_settings(&self) -> Result<(), String> {
        if self.within_ms == 0 || self.max_state_bytes == 0 {
            return Err("join.within_ms and join.max_state_bytes must be above zero".into());
        }
        if self.partitions.is_some_and(|n| !(1..=1024).contains(&n)) {
            return Err("join.partitions must be between 1 and 1024".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_must_be_the_pipelines_topics_with_keys() {
        let topics: Vec<String> = vec!["u.pin".into(), "u.geo".into()];
        let ok: JoinConfig = toml::from_str("inputs = [{ topic = \"u.pin\", key = \"index\" }, { topic = \"u.geo\", key = \"ind\" }]").expect("parse");
        assert_eq!((ok.kind, ok.key_as.as_str(), ok.inputs[1].side_name()), (JoinKind::Inner, "ind", "geo".to_owned()));
        ok.validate(&topics).expect("valid");
        for (text, msg) in [
            ("inputs = [{ topic = \"u.pin\", key = \"index\" }]", "2 to 8 topics"),
            ("inputs = [{ topic = \"u.pin\", key = \"\" }, { topic = \"u.geo\", key = \"ind\" }]", "empty key field"),
            ("inputs = [{ topic = \"u.pin\", key = \"ind\" }, { topic = \"u.user\", key = \"ind\" }]", "must be the same"),
            ("inputs = [{ topic = \"u.pin\", key = \"ind\", name = \"x\" }, { topic = \"u.geo\", key = \"ind\", name = \"x\" }]", "two sides are named"),
        ] {
            let c: JoinConfig = toml::from_str(text).expect(text);
            let err = c.validate(&topics).expect_err(text);
            assert!(err.contains(msg), "{text}: {err}");
        }
        assert!(toml::from_str::<JoinConfig>("inputs = []\nkind = \"outer\"").is_err(), "only inner and left");
    }
}
