//! EventBridge event patterns, evaluated as EventBridge evaluates them, so that the
//! embedded bus routes exactly what the AWS rules would route.
//!
//! Semantics (from the EventBridge user guide, "Amazon EventBridge event patterns" and
//! "Content filtering"): a pattern is an object whose every field must match (AND); fields
//! absent from the pattern are ignored; nested objects match nested objects; a leaf is an
//! array of alternatives (OR), each a literal (type-aware: `"5"` is not `5`; numbers compare
//! numerically) or an operator object; an array in the event matches when any element does;
//! `$or` at any level takes alternative sub-patterns. Operators: `prefix`, `suffix`
//! (optionally `{"equals-ignore-case": ..}`), `equals-ignore-case`, `anything-but` (a value,
//! a list, or a `prefix`/`suffix`/`equals-ignore-case` object), `numeric`, `exists`
//! (leaf fields only: `false` also matches an absent field), `cidr` and `wildcard`.

use std::net::IpAddr;

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event pattern at {path}: {reason}")]
pub struct InvalidPattern {
    pub path: String,
    pub reason: String,
}

/// A parsed EventBridge event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPattern {
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
struct Node {
    /// Every field must match.
    fields: Vec<(String, Field)>,
    /// Each `$or` entry: at least one alternative must match.
    ors: Vec<Vec<Node>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Nested(Node),
    Leaf(Vec<Matcher>),
}

#[derive(Debug, Clone, PartialEq)]
enum Text {
    Exact(String),
    IgnoreCase(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    Literal(Value),
    Prefix(Text),
    Suffix(Text),
    EqualsIgnoreCase(String),
    AnythingBut(AnythingBut),
    Numeric(Vec<(Cmp, f64)>),
    Exists(bool),
    Cidr(IpAddr, u8),
    Wildcard(Vec<WildPart>),
}

#[derive(Debug, Clone, PartialEq)]
enum AnythingBut {
    Values(Vec<Value>),
    Prefix(Text),
    Suffix(Text),
    IgnoreCase(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum WildPart {
    Text(String),
    Star,
}

fn invalid(path: &str, reason: impl Into<String>) -> InvalidPattern {
    InvalidPattern {
        path: if path.is_empty() {
            "(root)".into()
        } else {
            path.into()
        },
        reason: reason.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl EventPattern {
    pub fn parse(pattern: &Value) -> Result<Self, InvalidPattern> {
        match pattern {
            Value::Object(map) => Ok(Self {
                root: parse_node(map, "")?,
            }),
            _ => Err(invalid("", "a pattern must be a JSON object")),
        }
    }

    /// Whether `event` (the whole EventBridge event: `source`, `detail-type`, `detail`,
    /// ...) matches.
    pub fn matches(&self, event: &Value) -> bool {
        node_matches(&self.root, Some(event))
    }
}

fn parse_node(map: &Map<String, Value>, path: &str) -> Result<Node, InvalidPattern> {
    if map.is_empty() {
        return Err(invalid(
            path,
            "an empty object matches nothing useful; remove it",
        ));
    }
    let mut node = Node {
        fields: Vec::new(),
        ors: Vec::new(),
    };
    for (key, value) in map {
        let here = join(path, key);
        if key == "$or" {
            let Value::Array(alternatives) = value else {
                return Err(invalid(&here, "$or takes an array of patterns"));
            };
            if alternatives.len() < 2 {
                return Err(invalid(&here, "$or needs at least two alternatives"));
            }
            let mut parsed = Vec::with_capacity(alternatives.len());
            for alt in alternatives {
                match alt {
                    Value::Object(m) => parsed.push(parse_node(m, &here)?),
                    _ => return Err(invalid(&here, "each $or alternative must be an object")),
                }
            }
            node.ors.push(parsed);
            continue;
        }
        let field = match value {
            Value::Object(m) => Field::Nested(parse_node(m, &here)?),
            Value::Array(items) if items.is_empty() => {
                return Err(invalid(&here, "an empty array matches nothing"));
            }
            Value::Array(items) => Field::Leaf(
                items
                    .iter()
                    .map(|i| parse_matcher(i, &here))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(invalid(&here, "expected an array of values or an object")),
        };
        node.fields.push((key.clone(), field));
    }
    Ok(node)
}

fn parse_text(v: &Value, path: &str, op: &str) -> Result<Text, InvalidPattern> {
    match v {
        Value::String(s) => Ok(Text::Exact(s.clone())),
        Value::Object(m) if m.len() == 1 => match m.get("equals-ignore-case") {
            Some(Value::String(s)) => Ok(Text::IgnoreCase(s.clone())),
            _ => Err(invalid(
                path,
                format!("{op} takes a string or {{\"equals-ignore-case\": string}}"),
            )),
        },
        _ => Err(invalid(
            path,
            format!("{op} takes a string or {{\"equals-ignore-case\": string}}"),
        )),
    }
}

fn parse_matcher(item: &Value, path: &str) -> Result<Matcher, InvalidPattern> {
    let Value::Object(op) = item else {
        return match item {
            Value::Array(_) => Err(invalid(path, "nested arrays are not allowed")),
            literal => Ok(Matcher::Literal(literal.clone())),
        };
    };
    let mut entries = op.iter();
    let (Some((name, arg)), None) = (entries.next(), entries.next()) else {
        return Err(invalid(path, "an operator object has exactly one operator"));
    };
    Ok(match name.as_str() {
        "prefix" => Matcher::Prefix(parse_text(arg, path, "prefix")?),
        "suffix" => Matcher::Suffix(parse_text(arg, path, "suffix")?),
        "equals-ignore-case" => match arg {
            Value::String(s) => Matcher::EqualsIgnoreCase(s.clone()),
            _ => return Err(invalid(path, "equals-ignore-case takes a string")),
        },
        "exists" => match arg {
            Value::Bool(b) => Matcher::Exists(*b),
            _ => return Err(invalid(path, "exists takes true or false")),
        },
        "anything-but" => Matcher::AnythingBut(parse_anything_but(arg, path)?),
        "numeric" => Matcher::Numeric(parse_numeric(arg, path)?),
        "cidr" => {
            let Value::String(s) = arg else {
                return Err(invalid(path, "cidr takes a string such as \"10.0.0.0/24\""));
            };
            parse_cidr(s).ok_or_else(|| invalid(path, format!("{s:?} is not a CIDR block")))?
        }
        "wildcard" => match arg {
            Value::String(s) => Matcher::Wildcard(parse_wildcard(s, path)?),
            _ => return Err(invalid(path, "wildcard takes a string")),
        },
        other => return Err(invalid(path, format!("unknown operator {other:?}"))),
    })
}

fn parse_anything_but(arg: &Value, path: &str) -> Result<AnythingBut, InvalidPattern> {
    Ok(match arg {
        Value::Array(values) if values.is_empty() => {
            return Err(invalid(path, "anything-but needs at least one value"));
        }
        Value::Array(values) => {
            if values.iter().any(|v| !(v.is_string() || v.is_number())) {
                return Err(invalid(path, "anything-but lists only strings or numbers"));
            }
            AnythingBut::Values(values.clone())
        }
        Value::String(_) | Value::Number(_) => AnythingBut::Values(vec![arg.clone()]),
        Value::Object(m) if m.len() == 1 => {
            let (name, inner) = m
                .iter()
                .next()
                .ok_or_else(|| invalid(path, "empty anything-but"))?;
            match name.as_str() {
                "prefix" => AnythingBut::Prefix(parse_text(inner, path, "prefix")?),
                "suffix" => AnythingBut::Suffix(parse_text(inner, path, "suffix")?),
                "equals-ignore-case" => match inner {
                    Value::String(s) => AnythingBut::IgnoreCase(vec![s.clone()]),
                    Value::Array(list) => AnythingBut::IgnoreCase(
                        list.iter()
                            .map(|v| v.as_str().map(str::to_owned))
                            .collect::<Option<_>>()
                            .ok_or_else(|| {
                                invalid(path, "equals-ignore-case lists only strings")
                            })?,
                    ),
                    _ => {
                        return Err(invalid(
                            path,
                            "equals-ignore-case takes a string or strings",
                        ));
                    }
                },
                other => {
                    return Err(invalid(
                        path,
                        format!("anything-but does not take {other:?}"),
                    ));
                }
            }
        }
        _ => {
            return Err(invalid(
                path,
                "anything-but takes a value, a list, or a prefix/suffix/equals-ignore-case object",
            ));
        }
    })
}

fn parse_numeric(arg: &Value, path: &str) -> Result<Vec<(Cmp, f64)>, InvalidPattern> {
    let Value::Array(items) = arg else {
        return Err(invalid(
            path,
            "numeric takes an array such as [\">\", 0, \"<=\", 5]",
        ));
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(invalid(
            path,
            "numeric takes one or two (operator, number) pairs",
        ));
    }
    items
        .chunks(2)
        .map(|pair| {
            let cmp = match pair[0].as_str() {
                Some("<") => Cmp::Lt,
                Some("<=") => Cmp::Le,
                Some("=") => Cmp::Eq,
                Some(">=") => Cmp::Ge,
                Some(">") => Cmp::Gt,
                _ => {
                    return Err(invalid(
                        path,
                        format!("{} is not a numeric operator", pair[0]),
                    ));
                }
            };
            let n = pair[1]
                .as_f64()
                .ok_or_else(|| invalid(path, format!("{} is not a number", pair[1])))?;
            Ok((cmp, n))
        })
        .collect()
}

fn parse_cidr(s: &str) -> Option<Matcher> {
    let (ip, bits) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some(Matcher::Cidr(ip, bits))
}

fn parse_wildcard(s: &str, path: &str) -> Result<Vec<WildPart>, InvalidPattern> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('*' | '\\')) => text.push(escaped),
                _ => return Err(invalid(path, "in a wildcard, \\ escapes only * or \\")),
            },
            '*' => {
                if matches!(parts.last(), Some(WildPart::Star)) && text.is_empty() {
                    return Err(invalid(path, "consecutive * in a wildcard"));
                }
                if !text.is_empty() {
                    parts.push(WildPart::Text(std::mem::take(&mut text)));
                }
                parts.push(WildPart::Star);
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(WildPart::Text(text));
    }
    Ok(parts)
}

fn node_matches(node: &Node, value: Option<&Value>) -> bool {
    // An array of objects matches a nested pattern when any of its objects does.
    if let Some(Value::Array(items)) = value {
        return items
            .iter()
            .any(|i| i.is_object() && node_matches(node, Some(i)));
    }
    let object = value.and_then(Value::as_object);
    node.fields.iter().all(|(key, field)| {
        let v = object.and_then(|o| o.get(key));
        match field {
            Field::Nested(child) => v.is_some_and(|v| node_matches(child, Some(v))),
            Field::Leaf(matchers) => matchers.iter().any(|m| leaf_matches(m, v)),
        }
    }) && node
        .ors
        .iter()
        .all(|alts| alts.iter().any(|alt| node_matches(alt, value)))
}

/// Leaf values of a field: an array counts as each of its (non-object) elements.
fn leaves(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter(|i| !i.is_object() && !i.is_array())
            .collect(),
        Value::Object(_) => Vec::new(),
        other => vec![other],
    }
}

fn leaf_matches(m: &Matcher, v: Option<&Value>) -> bool {
    match m {
        Matcher::Exists(expected) => {
            let exists = v.is_some_and(|v| !leaves(v).is_empty());
            exists == *expected
        }
        _ => v.is_some_and(|v| leaves(v).into_iter().any(|leaf| value_matches(m, leaf))),
    }
}

fn text_matches(t: &Text, s: &str, at_start: bool) -> bool {
    let fits = |needle: &str, hay: &str| {
        if at_start {
            hay.starts_with(needle)
        } else {
            hay.ends_with(needle)
        }
    };
    match t {
        Text::Exact(needle) => fits(needle, s),
        Text::IgnoreCase(needle) => fits(&needle.to_lowercase(), &s.to_lowercase()),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn value_matches(m: &Matcher, v: &Value) -> bool {
    match m {
        Matcher::Literal(literal) => equal(literal, v),
        Matcher::Prefix(t) => v.as_str().is_some_and(|s| text_matches(t, s, true)),
        Matcher::Suffix(t) => v.as_str().is_some_and(|s| text_matches(t, s, false)),
        Matcher::EqualsIgnoreCase(expected) => v
            .as_str()
            .is_some_and(|s| s.to_lowercase() == expected.to_lowercase()),
        Matcher::AnythingBut(but) => match but {
            AnythingBut::Values(values) => !values.iter().any(|x| equal(x, v)),
            AnythingBut::Prefix(t) => v.as_str().is_some_and(|s| !text_matches(t, s, true)),
            AnythingBut::Suffix(t) => v.as_str().is_some_and(|s| !text_matches(t, s, false)),
            AnythingBut::IgnoreCase(list) => v
                .as_str()
                .is_some_and(|s| !list.iter().any(|x| x.to_lowercase() == s.to_lowercase())),
        },
        Matcher::Numeric(conditions) => v.as_f64().is_some_and(|n| {
            v.is_number()
                && conditions.iter().all(|(cmp, x)| match cmp {
                    Cmp::Lt => n < *x,
                    Cmp::Le => n <= *x,
                    Cmp::Eq => n == *x,
                    Cmp::Ge => n >= *x,
                    Cmp::Gt => n > *x,
                })
        }),
        Matcher::Exists(_) => false,
        Matcher::Cidr(net, bits) => v
            .as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .is_some_and(|ip| in_cidr(ip, *net, *bits)),
        Matcher::Wildcard(parts) => v.as_str().is_some_and(|s| wildcard_matches(parts, s)),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Glob matching with `*` as "any run of characters", by backtracking on the last star.
fn wildcard_matches(parts: &[WildPart], s: &str) -> bool {
    match parts.split_first() {
        None => s.is_empty(),
        Some((WildPart::Text(t), rest)) => s
            .strip_prefix(t.as_str())
            .is_some_and(|r| wildcard_matches(rest, r)),
        Some((WildPart::Star, rest)) => s
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(s.len()))
            .any(|i| wildcard_matches(rest, &s[i..])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matches(pattern: Value, event: Value) -> bool {
        EventPattern::parse(&pattern)
            .expect("valid pattern")
            .matches(&event)
    }

    fn order_event(status: &str) -> Value {
        json!({
            "version": "0", "id": "1", "detail-type": "OrderPlaced", "source": "ordersource.orders",
            "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
            "resources": [], "detail": { "event": { "type": "OrderPlaced" }, "order": { "status": status, "version": 1 } }
        })
    }

    #[test]
    fn every_route_rule_matches_its_own_status_only() {
        let raw = include_str!("../../events-schema/routes.json");
        let table: Value = serde_json::from_str(raw).expect("json");
        let routes = table["routes"].as_array().expect("routes");
        for route in routes {
            let pattern = EventPattern::parse(&route["eventPattern"]).expect("valid");
            for other in routes {
                let status = other["status"].as_str().expect("status");
                assert_eq!(
                    pattern.matches(&order_event(status)),
                    route["status"] == other["status"],
                    "{route} vs {status}"
                );
            }
            let mut foreign = order_event(route["status"].as_str().expect("status"));
            foreign["source"] = json!("someone.else");
            assert!(!pattern.matches(&foreign));
        }
    }

    // "Amazon EventBridge event patterns": the EC2 state-change example.
    #[test]
    fn the_user_guide_ec2_example_matches_on_source_detail_type_and_state() {
        let pattern = json!({
            "source": ["aws.ec2"],
            "detail-type": ["EC2 Instance State-change Notification"],
            "detail": { "state": ["running"] }
        });
        let event = json!({
            "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
            "account": "111122223333", "time": "2017-12-22T18:43:48Z", "region": "us-west-1",
            "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
            "detail": { "instance-id": "i-1234567890abcdef0", "state": "running" }
        });
        assert!(matches(pattern.clone(), event.clone()));
        let mut stopped = event;
        stopped["detail"]["state"] = json!("stopped");
        assert!(!matches(pattern, stopped));
    }

    #[test]
    fn literals_are_type_aware_and_numbers_compare_numerically() {
        assert!(!matches(json!({"a": ["5"]}), json!({"a": 5})));
        assert!(matches(json!({"a": [5]}), json!({"a": 5.0})));
        assert!(matches(json!({"a": [null]}), json!({"a": null})));
        assert!(!matches(json!({"a": [null]}), json!({})));
        assert!(matches(json!({"a": [true]}), json!({"a": true})));
    }

    #[test]
    fn an_array_in_the_event_matches_when_any_element_does() {
        // "Content filtering": "resources" arrays.
        assert!(matches(
            json!({"resources": ["arn:1"]}),
            json!({"resources": ["arn:0", "arn:1"]})
        ));
        assert!(!matches(
            json!({"resources": ["arn:2"]}),
            json!({"resources": ["arn:0", "arn:1"]})
        ));
        assert!(matches(
            json!({"a": {"b": ["x"]}}),
            json!({"a": [{"b": "y"}, {"b": "x"}]})
        ));
    }

    #[test]
    fn prefix_and_suffix_with_and_without_case() {
        // "Content filtering": prefix matching on "time" and suffix on file names.
        assert!(matches(
            json!({"time": [{"prefix": "2017-10-02"}]}),
            json!({"time": "2017-10-02T18:43:48Z"})
        ));
        assert!(!matches(
            json!({"time": [{"prefix": "2017-10-03"}]}),
            json!({"time": "2017-10-02T18:43:48Z"})
        ));
        assert!(matches(
            json!({"FileName": [{"suffix": ".png"}]}),
            json!({"FileName": "image.png"})
        ));
        assert!(!matches(
            json!({"FileName": [{"suffix": ".png"}]}),
            json!({"FileName": "image.PNG"})
        ));
        assert!(matches(
            json!({"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}),
            json!({"FileName": "image.PNG"})
        ));
        assert!(matches(
            json!({"a": [{"prefix": {"equals-ignore-case": "ALP"}}]}),
            json!({"a": "alpha"})
        ));
        assert!(
            !matches(json!({"a": [{"prefix": "1"}]}), json!({"a": 10})),
            "prefix applies to strings only"
        );
    }

    #[test]
    fn equals_ignore_case() {
        assert!(matches(
            json!({"name": [{"equals-ignore-case": "alice"}]}),
            json!({"name": "ALICE"})
        ));
        assert!(!matches(
            json!({"name": [{"equals-ignore-case": "alice"}]}),
            json!({"name": "bob"})
        ));
    }

    #[test]
    fn anything_but_values_lists_prefix_suffix_and_case() {
        // "Content filtering": anything-but on "state" and on a list of states.
        let but = json!({"detail": {"state": [{"anything-but": "initializing"}]}});
        assert!(matches(
            but.clone(),
            json!({"detail": {"state": "running"}})
        ));
        assert!(!matches(
            but.clone(),
            json!({"detail": {"state": "initializing"}})
        ));
        assert!(
            !matches(but, json!({"detail": {}})),
            "anything-but needs the field"
        );
        let list = json!({"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}});
        assert!(matches(
            list.clone(),
            json!({"detail": {"state": "running"}})
        ));
        assert!(!matches(list, json!({"detail": {"state": "stopped"}})));
        assert!(matches(
            json!({"n": [{"anything-but": [100, 200]}]}),
            json!({"n": 300})
        ));
        assert!(!matches(
            json!({"n": [{"anything-but": [100]}]}),
            json!({"n": 100.0})
        ));
        let pre = json!({"state": [{"anything-but": {"prefix": "init"}}]});
        assert!(matches(pre.clone(), json!({"state": "running"})));
        assert!(!matches(pre, json!({"state": "initializing"})));
        let suf = json!({"f": [{"anything-but": {"suffix": ".txt"}}]});
        assert!(!matches(suf, json!({"f": "a.txt"})));
        let case =
            json!({"s": [{"anything-but": {"equals-ignore-case": ["Stopped", "Overloaded"]}}]});
        assert!(!matches(case.clone(), json!({"s": "STOPPED"})));
        assert!(matches(case, json!({"s": "running"})));
    }

    #[test]
    fn numeric_ranges() {
        // "Content filtering": numeric matching example.
        let p = json!({"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}], "d-count": [{"numeric": ["<", 10]}], "x-limit": [{"numeric": ["=", 3.018e2]}]}});
        assert!(matches(
            p.clone(),
            json!({"detail": {"c-count": 5, "d-count": 7, "x-limit": 301.8}})
        ));
        assert!(!matches(
            p.clone(),
            json!({"detail": {"c-count": 0, "d-count": 7, "x-limit": 301.8}})
        ));
        assert!(
            !matches(
                p,
                json!({"detail": {"c-count": 5, "d-count": 7, "x-limit": "301.8"}})
            ),
            "numbers only"
        );
    }

    #[test]
    fn exists_applies_to_leaves_and_false_matches_absent_fields() {
        // "Content filtering": exists matching.
        let yes = json!({"detail": {"state": [{"exists": true}]}});
        assert!(matches(
            yes.clone(),
            json!({"detail": {"state": "running"}})
        ));
        assert!(!matches(yes.clone(), json!({"detail": {}})));
        assert!(
            !matches(yes, json!({"detail": {"state": {"nested": 1}}})),
            "objects are not leaves"
        );
        let no = json!({"detail": {"state": [{"exists": false}]}});
        assert!(matches(no.clone(), json!({"detail": {}})));
        assert!(!matches(no, json!({"detail": {"state": "running"}})));
    }

    #[test]
    fn cidr_blocks_for_ipv4_and_ipv6() {
        let p = json!({"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]});
        assert!(matches(p.clone(), json!({"sourceIPAddress": "10.0.0.255"})));
        assert!(!matches(p, json!({"sourceIPAddress": "10.0.1.1"})));
        let v6 = json!({"ip": [{"cidr": "2001:db8::/32"}]});
        assert!(matches(v6.clone(), json!({"ip": "2001:db8:1::1"})));
        assert!(!matches(v6, json!({"ip": "2001:db9::1"})));
    }

    #[test]
    fn wildcards_with_escapes() {
        let p = json!({"key": [{"wildcard": "dir/*.png"}]});
        assert!(matches(p.clone(), json!({"key": "dir/a.png"})));
        assert!(matches(p.clone(), json!({"key": "dir/sub/a.png"})));
        assert!(!matches(p, json!({"key": "dir/a.jpg"})));
        assert!(matches(
            json!({"k": [{"wildcard": "a\\*b"}]}),
            json!({"k": "a*b"})
        ));
        assert!(!matches(
            json!({"k": [{"wildcard": "a\\*b"}]}),
            json!({"k": "axb"})
        ));
    }

    #[test]
    fn or_combines_alternative_sub_patterns() {
        // "Content filtering": $or example.
        let p = json!({"detail": {"$or": [{"c-count": [{"numeric": [">", 0, "<=", 5]}]}, {"d-count": [{"numeric": ["<", 10]}]}]}});
        assert!(matches(p.clone(), json!({"detail": {"c-count": 3}})));
        assert!(matches(p.clone(), json!({"detail": {"d-count": 3}})));
        assert!(!matches(
            p,
            json!({"detail": {"c-count": 9, "d-count": 12}})
        ));
    }

    #[test]
    fn all_fields_must_match_and_unlisted_fields_are_ignored() {
        let p = json!({"source": ["a"], "detail": {"x": ["1"]}});
        assert!(matches(
            p.clone(),
            json!({"source": "a", "detail": {"x": "1", "y": "2"}, "extra": 1})
        ));
        assert!(!matches(
            p.clone(),
            json!({"source": "a", "detail": {"x": "2"}})
        ));
        assert!(!matches(p, json!({"source": "a"})));
    }

    #[test]
    fn invalid_patterns_are_rejected_with_the_path() {
        for (pattern, path) in [
            (json!({"source": []}), "source"),
            (json!({"source": "aws.ec2"}), "source"),
            (json!({"detail": {"n": [{"numeric": [">"]}]}}), "detail.n"),
            (json!({"a": [{"bogus": 1}]}), "a"),
            (json!({"a": [{"prefix": 1}]}), "a"),
            (json!({"a": [{"cidr": "10.0.0.0/33"}]}), "a"),
            (json!({"$or": [{"a": ["1"]}]}), "$or"),
            (json!([]), "(root)"),
        ] {
            let err = EventPattern::parse(&pattern).expect_err("invalid");
            assert_eq!(err.path, path, "{pattern}: {err}");
        }
    }
}
