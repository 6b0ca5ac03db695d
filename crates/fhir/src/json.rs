//! Small helpers for walking FHIR JSON without copying it.

use serde_json::Value;

/// The string at `obj[key]`, if it is a string.
pub fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Calls `f` for each value reached by following `path` from `v`, flattening arrays at every
/// step (FHIRPath's implicit flattening). A path segment ending in `[x]` matches every key that
/// starts with the stem (a choice type such as `effective[x]`).
pub fn walk<'a>(v: &'a Value, path: &[&str], f: &mut dyn FnMut(&'a str, &'a Value)) {
    walk_inner(v, path, "", f)
}

fn walk_inner<'a>(v: &'a Value, path: &[&str], key: &'a str, f: &mut dyn FnMut(&'a str, &'a Value)) {
    match v {
        Value::Array(items) => {
            for item in items {
                walk_inner(item, path, key, f);
            }
        }
        _ => {
            let Some((first, rest)) = path.split_first() else {
                f(key, v);
                return;
            };
            let Some(obj) = v.as_object() else { return };
            if let Some(stem) = first.strip_suffix("[x]") {
                for (k, child) in obj {
                    if k.len() > stem.len()
                        && k.starts_with(stem)
                        && k[stem.len()..].starts_with(|c: char| c.is_ascii_uppercase())
                    {
                        walk_inner(child, rest, k.as_str(), f);
                    }
                }
            } else if let Some((k, child)) = obj.get_key_value(*first) {
                walk_inner(child, rest, k.as_str(), f);
            }
        }
    }
}

/// The codings of a CodeableConcept (or a single Coding), as `(system, code)` pairs.
pub fn codings(v: &Value) -> impl Iterator<Item = (&str, &str)> {
    let list: Vec<&Value> = match v.get("coding") {
        Some(Value::Array(a)) => a.iter().collect(),
        _ if v.get("code").is_some() => vec![v],
        _ => Vec::new(),
    };
    list.into_iter().filter_map(|c| {
        let code = c.get("code")?.as_str()?;
        Some((c.get("system").and_then(Value::as_str).unwrap_or(""), code))
    })
}

/// The value of the first extension with `url` directly on `v`.
pub fn extension<'a>(v: &'a Value, url: &str) -> Option<&'a Value> {
    v.get("extension")?.as_array()?.iter().find(|e| e.get("url").and_then(Value::as_str) == Some(url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walk_flattens_and_matches_choices() {
        let v = json!({"a": [{"b": 1}, {"b": [2, 3]}], "valueQuantity": {"value": 5}, "valueString": "x"});
        let mut got = Vec::new();
        walk(&v, &["a", "b"], &mut |_, x| got.push(x.clone()));
        assert_eq!(got, vec![json!(1), json!(2), json!(3)]);
        let mut keys = Vec::new();
        walk(&v, &["value[x]"], &mut |k, _| keys.push(k.to_owned()));
        keys.sort();
        assert_eq!(keys, vec!["valueQuantity", "valueString"]);
    }

    #[test]
    fn codings_of_concept_and_coding() {
        let cc = json!({"coding": [{"system": "s", "code": "c"}, {"code": "d"}, {"system": "x"}]});
        assert_eq!(codings(&cc).collect::<Vec<_>>(), vec![("s", "c"), ("", "d")]);
        let c = json!({"system": "s", "code": "c"});
        assert_eq!(codings(&c).collect::<Vec<_>>(), vec![("s", "c")]);
    }
}
