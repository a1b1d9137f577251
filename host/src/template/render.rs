//! `{{ placeholder }}` substitution.

use serde_json::{Map, Value};

/// A piece of a template string.
#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Literal(&'a str),
    Placeholder(&'a str),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Splits `s` into literal text and placeholders. A `{{` not followed by a well-formed
/// `name }}` is literal text.
fn parse(s: &str) -> Vec<Segment<'_>> {
    let mut segments = Vec::new();
    let mut literal_start = 0;
    let mut pos = 0;
    while let Some(offset) = s[pos..].find("{{") {
        let open = pos + offset;
        let inner_start = open + 2;
        let placeholder = s[inner_start..].find("}}").and_then(|close_offset| {
            let inner = &s[inner_start..inner_start + close_offset];
            let name = inner.trim();
            (!name.is_empty() && name.chars().all(is_name_char))
                .then_some((name, inner_start + close_offset + 2))
        });
        match placeholder {
            Some((name, end)) => {
                if open > literal_start {
                    segments.push(Segment::Literal(&s[literal_start..open]));
                }
                segments.push(Segment::Placeholder(name));
                literal_start = end;
                pos = end;
            }
            None => pos = open + 1,
        }
    }
    if literal_start < s.len() {
        segments.push(Segment::Literal(&s[literal_start..]));
    }
    segments
}

/// Looks a placeholder name up: first as a literal variable name, then as a dotted path walking
/// into objects (and lists, by index). Null counts as missing.
pub(crate) fn lookup<'v>(variables: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    if let Some(value) = variables.get(name) {
        return (!value.is_null()).then_some(value);
    }
    let mut parts = name.split('.');
    let mut current = variables.get(parts.next()?)?;
    for part in parts {
        current = match current {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!current.is_null()).then_some(current)
}

/// The text of a value inserted into a longer string.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders one value; `None` means "remove me" (a whole-value placeholder with no value).
pub(crate) fn render_value(value: &Value, variables: &Map<String, Value>) -> Option<Value> {
    match value {
        Value::String(s) => render_string(s, variables),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| render_value(v, variables).map(|v| (k.clone(), v)))
                .collect(),
        )),
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .filter_map(|v| render_value(v, variables))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

fn render_string(s: &str, variables: &Map<String, Value>) -> Option<Value> {
    let segments = parse(s);
    match segments.as_slice() {
        [Segment::Placeholder(name)] => lookup(variables, name).cloned(),
        _ if !segments
            .iter()
            .any(|seg| matches!(seg, Segment::Placeholder(_))) =>
        {
            Some(Value::String(s.to_owned()))
        }
        _ => {
            let mut out = String::with_capacity(s.len());
            for segment in &segments {
                match segment {
                    Segment::Literal(text) => out.push_str(text),
                    Segment::Placeholder(name) => {
                        if let Some(value) = lookup(variables, name) {
                            out.push_str(&text_of(value));
                        }
                    }
                }
            }
            Some(Value::String(out))
        }
    }
}

/// Calls `f` with the name of every placeholder in `value`'s strings.
pub(crate) fn for_each_placeholder(value: &Value, f: &mut dyn FnMut(&str)) {
    match value {
        Value::String(s) => {
            for segment in parse(s) {
                if let Segment::Placeholder(name) = segment {
                    f(name);
                }
            }
        }
        Value::Object(map) => map.values().for_each(|v| for_each_placeholder(v, f)),
        Value::Array(items) => items.iter().for_each(|v| for_each_placeholder(v, f)),
        _ => {}
    }
}

/// A JSON type's name, for error messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_splits_literals_and_placeholders() {
        assert_eq!(
            parse("a-{{x}}-{{  y.z  }}b"),
            vec![
                Segment::Literal("a-"),
                Segment::Placeholder("x"),
                Segment::Literal("-"),
                Segment::Placeholder("y.z"),
                Segment::Literal("b"),
            ]
        );
        assert_eq!(parse("{{ name }}"), vec![Segment::Placeholder("name")]);
    }

    #[test]
    fn malformed_braces_are_literal() {
        assert_eq!(parse("{{ }}"), vec![Segment::Literal("{{ }}")]);
        assert_eq!(parse("{{ a b }}"), vec![Segment::Literal("{{ a b }}")]);
        assert_eq!(parse("{{ open"), vec![Segment::Literal("{{ open")]);
        assert_eq!(parse("{ x }"), vec![Segment::Literal("{ x }")]);
        assert_eq!(
            parse("{{{ x }}"),
            vec![Segment::Literal("{"), Segment::Placeholder("x")]
        );
    }
}
