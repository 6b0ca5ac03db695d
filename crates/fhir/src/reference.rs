//! Reading and rewriting FHIR references.

use std::collections::HashMap;

use serde_json::Value;

use crate::ResourceType;

/// A reference to a resource on this server: `Type/id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalRef {
    /// The resource type.
    pub rtype: ResourceType,
    /// The logical id.
    pub id: String,
}

impl LocalRef {
    /// `Type/id`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.rtype.as_str(), self.id)
    }
}

/// Reads a literal reference as a reference to a resource here: `Type/id`,
/// `Type/id/_history/v`, or an absolute URL ending in one of those. Contained (`#x`),
/// `urn:uuid:`/`urn:oid:` and unknown-type references give `None`.
pub fn parse_reference(s: &str) -> Option<LocalRef> {
    if s.starts_with('#') || s.starts_with("urn:") {
        return None;
    }
    let trimmed = match s.find("/_history/") {
        Some(p) => &s[..p],
        None => s,
    };
    let mut parts = trimmed.rsplit('/');
    let id = parts.next()?;
    let rtype: ResourceType = parts.next()?.parse().ok()?;
    if !crate::is_valid_id(id) {
        return None;
    }
    Some(LocalRef { rtype, id: id.to_owned() })
}

/// Replaces every `reference` string found in `map` (for example `urn:uuid:…` → `Patient/123`)
/// anywhere in the resource. Returns how many were replaced.
pub fn rewrite_references(v: &mut Value, map: &HashMap<String, String>) -> usize {
    let mut n = 0;
    rewrite_inner(v, map, &mut n);
    n
}

fn rewrite_inner(v: &mut Value, map: &HashMap<String, String>, n: &mut usize) {
    match v {
        Value::Object(obj) => {
            for (k, child) in obj.iter_mut() {
                if k == "reference" {
                    if let Value::String(s) = child
                        && let Some(new) = map.get(s.as_str())
                    {
                        *s = new.clone();
                        *n += 1;
                    }
                } else {
                    rewrite_inner(child, map, n);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_inner(item, map, n);
            }
        }
        _ => {}
    }
}

/// Every `reference` string in the resource (for checking that a transaction refers only to
/// things that exist).
pub fn collect_references(v: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    collect_inner(v, &mut out);
    out
}

fn collect_inner<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(obj) => {
            for (k, child) in obj {
                if k == "reference" {
                    if let Value::String(s) = child {
                        out.push(s);
                    }
                } else {
                    collect_inner(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_inner(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_forms() {
        assert_eq!(parse_reference("Patient/p1").unwrap().key(), "Patient/p1");
        assert_eq!(parse_reference("Patient/p1/_history/3").unwrap().id, "p1");
        assert_eq!(parse_reference("https://x.example/fhir/Observation/o-1").unwrap().key(), "Observation/o-1");
        assert!(parse_reference("#contained").is_none());
        assert!(parse_reference("urn:uuid:1234").is_none());
        assert!(parse_reference("Unknown/1").is_none());
        assert!(parse_reference("Patient/").is_none());
        assert!(parse_reference("Patient/a b").is_none());
    }

    #[test]
    fn rewrites_nested() {
        let mut v = json!({"subject": {"reference": "urn:uuid:a"}, "x": [{"y": {"reference": "urn:uuid:a"}}, {"reference": "keep"}]});
        let map = HashMap::from([("urn:uuid:a".to_owned(), "Patient/1".to_owned())]);
        assert_eq!(rewrite_references(&mut v, &map), 2);
        assert_eq!(v["subject"]["reference"], "Patient/1");
        assert_eq!(v["x"][0]["y"]["reference"], "Patient/1");
        assert_eq!(collect_references(&v), vec!["Patient/1", "Patient/1", "keep"]);
    }
}
