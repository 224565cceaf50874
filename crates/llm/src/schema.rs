//! Checking a parsed JSON value against a JSON schema: the subset that llama.cpp's grammar
//! conversion and OpenAI's structured outputs use: `type` (object, array, string, integer,
//! number, boolean), `properties`, `required`, `additionalProperties: false`, `items`,
//! `minItems`/`maxItems`, `enum`, `minLength`/`maxLength`, `pattern`, `minimum`/`maximum`.
//! Used after generation:
//! grammars guarantee the shape on the embedded backend, but not every constraint (llama.cpp
//! does not enforce `minimum`/`maximum` on numbers) and not at all on a remote server.

/// `Err` says what is wrong and where (`field: reason`).
pub fn validate(v: &serde_json::Value, s: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{v} not in enum {e:?}"));
    }
    match s.get("type").and_then(Value::as_str) {
        Some("object") => {
            let o = v.as_object().ok_or(format!("{v} is not an object"))?;
            let props = s.get("properties").and_then(Value::as_object);
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(r) = r.as_str() else { continue };
                if !o.contains_key(r) {
                    return Err(format!("missing required {r}"));
                }
            }
            for (k, x) in o {
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => validate(x, ps).map_err(|e| format!("{k}: {e}"))?,
                    None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return Err(format!("unexpected property {k}"));
                    }
                    None => {}
                }
            }
        }
        Some("array") => {
            let a = v.as_array().ok_or(format!("{v} is not an array"))?;
            if let Some(it) = s.get("items") {
                for (i, x) in a.iter().enumerate() {
                    validate(x, it).map_err(|e| format!("[{i}]: {e}"))?;
                }
            }
            if let Some(m) = s.get("minItems").and_then(Value::as_u64)
                && (a.len() as u64) < m
            {
                return Err(format!("{} items < minItems {m}", a.len()));
            }
            if let Some(m) = s.get("maxItems").and_then(Value::as_u64)
                && (a.len() as u64) > m
            {
                return Err(format!("{} items > maxItems {m}", a.len()));
            }
        }
        Some("string") => {
            let t = v.as_str().ok_or(format!("{v} is not a string"))?;
            if let Some(m) = s.get("maxLength").and_then(Value::as_u64)
                && t.chars().count() as u64 > m
            {
                return Err(format!("{t:?} longer than {m}"));
            }
            if let Some(m) = s.get("minLength").and_then(Value::as_u64)
                && (t.chars().count() as u64) < m
            {
                return Err(format!("{t:?} shorter than {m}"));
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                // JSON Schema's pattern matches anywhere in the string (ECMA-262 semantics);
                // a pattern this engine cannot compile is said, never skipped.
                let re = regex::Regex::new(p)
                    .map_err(|e| format!("pattern {p:?} is not supported here: {e}"))?;
                if !re.is_match(t) {
                    return Err(format!("{t:?} does not match pattern {p:?}"));
                }
            }
        }
        Some("integer") if !(v.is_i64() || v.is_u64()) => {
            return Err(format!("{v} is not an integer"));
        }
        Some("number") if !v.is_number() => return Err(format!("{v} is not a number")),
        Some("boolean") if !v.is_boolean() => return Err(format!("{v} is not a boolean")),
        _ => {}
    }
    if let (Some(x), Some(m)) = (v.as_f64(), s.get("minimum").and_then(Value::as_f64))
        && x < m
    {
        return Err(format!("{x} < minimum {m}"));
    }
    if let (Some(x), Some(m)) = (v.as_f64(), s.get("maximum").and_then(Value::as_f64))
        && x > m
    {
        return Err(format!("{x} > maximum {m}"));
    }
    Ok(())
}

/// The largest repetition bound (`maxLength`, `maxItems`) that llama.cpp-based servers compile:
/// llama-cpp-python 0.3.36 (its bundled llama.cpp) refuses a grammar whose repetition passes
/// its limit and then dies, and a string of `maxLength` 1,100 already does (1,000 passes).
pub const PORTABLE_MAX_REPETITION: u64 = 1000;

/// Whether a schema is compact enough for llama.cpp-based servers: `Err` names the first bound
/// over [`PORTABLE_MAX_REPETITION`]. A schema meant for any OpenAI-compatible server keeps to
/// this; the embedded backend's own llama.cpp takes more.
pub fn portable(s: &serde_json::Value) -> Result<(), String> {
    fn walk(s: &serde_json::Value, at: &str) -> Result<(), String> {
        match s {
            serde_json::Value::Object(o) => {
                for k in ["maxLength", "maxItems"] {
                    if let Some(n) = o.get(k).and_then(serde_json::Value::as_u64)
                        && n > PORTABLE_MAX_REPETITION
                    {
                        return Err(format!(
                            "{at}{k} {n} exceeds {PORTABLE_MAX_REPETITION}, more than \
                             llama.cpp-based servers compile"
                        ));
                    }
                }
                for (k, v) in o {
                    walk(v, &format!("{at}{k}."))?;
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{at}[{i}]."))?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    walk(s, "")
}

/// Checks a schema itself before it is turned into a grammar, walking every sub-schema:
/// each `pattern` must compile, and each lower bound must not exceed its upper bound
/// (`minLength`/`maxLength`, `minItems`/`maxItems`, `minProperties`/`maxProperties`,
/// `minimum`/`maximum`), and each `$ref` must point into the schema. llama.cpp's grammar parser loops without end, allocating, on a
/// repetition whose minimum exceeds its maximum, so these are refused here, naming the place.
pub fn check(s: &serde_json::Value) -> Result<(), String> {
    check_at(s, s, "")
}

fn check_at(root: &serde_json::Value, s: &serde_json::Value, at: &str) -> Result<(), String> {
    use serde_json::Value;
    let here = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match s {
        Value::Object(o) => {
            if let Some(p) = o.get("pattern") {
                let p = p
                    .as_str()
                    .ok_or_else(|| format!("{}: not a string", here("pattern")))?;
                regex::Regex::new(p).map_err(|e| {
                    let why = e.to_string();
                    let why = why.lines().last().unwrap_or("").trim();
                    let why = why.strip_prefix("error: ").unwrap_or(why);
                    format!("{}: {p:?} is not a valid pattern: {why}", here("pattern"))
                })?;
            }
            if let Some(r) = o.get("$ref") {
                let r = r.as_str().unwrap_or("");
                let found = r
                    .strip_prefix('#')
                    .is_some_and(|ptr| root.pointer(ptr).is_some());
                if !found {
                    return Err(format!(
                        "{}: {r:?} does not point into this schema (only local refs like \"#/$defs/x\" are followed)",
                        here("$ref")
                    ));
                }
            }
            for (lo, hi) in [
                ("minLength", "maxLength"),
                ("minItems", "maxItems"),
                ("minProperties", "maxProperties"),
                ("minimum", "maximum"),
            ] {
                if let (Some(a), Some(b)) = (
                    o.get(lo).and_then(Value::as_f64),
                    o.get(hi).and_then(Value::as_f64),
                ) && a > b
                {
                    return Err(format!("{}: {lo} {a} exceeds {hi} {b}", at_or_root(at)));
                }
            }
            for (k, v) in o {
                if k != "enum" && k != "const" && k != "default" && k != "examples" {
                    check_at(root, v, &here(k))?;
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                check_at(root, v, &format!("{at}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn at_or_root(at: &str) -> &str {
    if at.is_empty() { "(root)" } else { at }
}

#[cfg(test)]
mod tests {
    use super::{check, validate};
    use serde_json::json;

    #[test]
    fn violations_are_named_with_their_place() {
        let s = json!({"type":"object","properties":{
            "name":{"type":"string","maxLength":5},
            "tags":{"type":"array","items":{"type":"integer","maximum":9},"maxItems":3},
            "kind":{"type":"string","enum":["a","b"]}},
            "required":["name"],"additionalProperties":false});
        assert_eq!(
            validate(&json!({"name":"ok","tags":[1,2],"kind":"a"}), &s),
            Ok(())
        );
        assert!(
            validate(&json!({"tags":[]}), &s)
                .unwrap_err()
                .contains("missing required name")
        );
        assert!(
            validate(&json!({"name":"toolong"}), &s)
                .unwrap_err()
                .starts_with("name: ")
        );
        assert!(
            validate(&json!({"name":"x","tags":[1,12]}), &s)
                .unwrap_err()
                .starts_with("tags: [1]: 12")
        );
        assert!(
            validate(&json!({"name":"x","tags":[1,2,3,4]}), &s)
                .unwrap_err()
                .contains("maxItems")
        );
        assert!(
            validate(&json!({"name":"x","kind":"c"}), &s)
                .unwrap_err()
                .contains("enum")
        );
        assert!(
            validate(&json!({"name":"x","extra":1}), &s)
                .unwrap_err()
                .contains("unexpected property extra")
        );
        assert!(
            validate(&json!({"name":"x","tags":[1.5]}), &s)
                .unwrap_err()
                .contains("not an integer")
        );
    }

    #[test]
    fn pattern_and_min_length_are_enforced_not_skipped() {
        let s = json!({"type":"string","pattern":"^[A-Z][a-z]+\\?$","minLength":3});
        assert_eq!(validate(&json!("Why?"), &s), Ok(()));
        assert!(
            validate(&json!("why?"), &s)
                .unwrap_err()
                .contains("does not match pattern")
        );
        assert!(
            validate(&json!("A?"), &s)
                .unwrap_err()
                .contains("shorter than 3")
        );
        // unanchored, as JSON Schema means it
        assert_eq!(
            validate(
                &json!("xx42yy"),
                &json!({"type":"string","pattern":"[0-9]+"})
            ),
            Ok(())
        );
        // a pattern this engine cannot run is an error, not a pass
        let lookahead = json!({"type":"string","pattern":"(?=a)a"});
        assert!(
            validate(&json!("a"), &lookahead)
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn schemas_that_would_hang_the_grammar_parser_are_refused_with_their_place() {
        assert_eq!(
            check(
                &json!({"type":"object","properties":{"a":{"type":"string","pattern":"^[a-z]{2,5}$"}}})
            ),
            Ok(())
        );
        let e = check(
            &json!({"type":"object","properties":{"a":{"type":"string","pattern":"^[a-z]{2,1}$"}}}),
        )
        .unwrap_err();
        assert!(e.starts_with("properties.a.pattern: "), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        let e =
            check(&json!({"type":"array","items":{"type":"string","minLength":5,"maxLength":2}}))
                .unwrap_err();
        assert_eq!(e, "items: minLength 5 exceeds maxLength 2");
        let e = check(&json!({"type":"array","minItems":3,"maxItems":1})).unwrap_err();
        assert_eq!(e, "(root): minItems 3 exceeds maxItems 1");
        assert!(check(&json!({"type":"string","pattern":"^(a|b$"})).is_err());
        let e = check(&json!({"type":"object","properties":{"a":{"$ref":"#/nope"}}})).unwrap_err();
        assert!(
            e.starts_with("properties.a.$ref: \"#/nope\" does not point"),
            "{e}"
        );
        assert_eq!(
            check(
                &json!({"$defs":{"x":{"type":"integer"}},"type":"object","properties":{"a":{"$ref":"#/$defs/x"}}})
            ),
            Ok(())
        );
        // enum values are data, not schemas
        assert_eq!(
            check(&json!({"enum":[{"minLength":5,"maxLength":1}]})),
            Ok(())
        );
    }
}
