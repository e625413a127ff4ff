//! Webhook body templates: text with `{{path}}` holes filled from the action record.

use serde_json::Value;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// `action` (the whole record), `idempotency_key`, or a dotted path into the record.
    Hole(Vec<String>),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| format!("`{{{{` at byte {} is never closed with `}}}}`", text.len() - rest.len() + open))?;
            let path = after[..close].trim();
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(format!("`{{{{{}}}}}` is not a field path (write e.g. {{{{category}}}} or {{{{record.category}}}})", &after[..close]));
            }
            parts.push(Part::Hole(path.split('.').map(str::to_owned).collect()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// Render for one action. A string value goes in JSON-escaped without its
    /// quotes (it usually sits inside a JSON string of the template); other
    /// values as JSON; a path that is not in the record as nothing.
    pub fn render(&self, action: &Value, key: &str, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Hole(path) if path.len() == 1 && path[0] == "action" => write_json(action, out),
                Part::Hole(path) if path.len() == 1 && path[0] == "idempotency_key" => write_escaped(key, out),
                Part::Hole(path) => match lookup(action, path) {
                    Some(Value::String(s)) => write_escaped(s, out),
                    Some(v) => write_json(v, out),
                    None => {}
                },
            }
        }
    }
}

/// `record.category` is looked up as written; a single name not at the top
/// level is also looked for in the action's `record` (the row it fired on).
fn lookup<'a>(action: &'a Value, path: &[String]) -> Option<&'a Value> {
    let walk = |mut v: &'a Value| {
        for step in path {
            v = v.get(step)?;
        }
        Some(v)
    };
    walk(action).or_else(|| if path.len() == 1 { action.get("record").and_then(|r| r.get(&path[0])) } else { None })
}

fn write_json(v: &Value, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, v).expect("a JSON value serializes");
}

fn write_escaped(s: &str, out: &mut Vec<u8>) {
    let quoted = serde_json::to_string(s).expect("a string serializes");
    out.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(template: &str, action: &Value) -> String {
        let mut out = Vec::new();
        Template::parse(template).expect("valid").render(action, "p/a/t/0/7/0", &mut out);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn holes_are_filled_from_the_action_and_its_record() {
        let action = json!({"detector": "threshold", "value": 120.0, "record": {"category": "art \"quoted\"", "post_count": 120}});
        assert_eq!(
            render(r#"{"text": "{{category}}: {{record.post_count}} posts ({{reason}}) {{idempotency_key}}"}"#, &action),
            r#"{"text": "art \"quoted\": 120 posts () p/a/t/0/7/0"}"#
        );
        assert_eq!(render("{{ action }}", &json!({"a": [1]})), r#"{"a":[1]}"#);
        assert_eq!(render("{{value}}", &action), "120.0");
    }

    #[test]
    fn a_broken_template_is_refused_with_the_place() {
        assert_eq!(Template::parse("ab {{x").unwrap_err(), "`{{` at byte 3 is never closed with `}}`");
        assert!(Template::parse("{{a..b}}").unwrap_err().contains("is not a field path"));
    }
}
