//! EventBridge event patterns, evaluated the way EventBridge evaluates them, so that the
//! embedded bus routes exactly the events the AWS rules would route.
//!
//! The semantics come from the Amazon EventBridge User Guide ("Creating Amazon EventBridge
//! event patterns", "Comparison operators for use in event patterns in Amazon EventBridge",
//! "Arrays in Amazon EventBridge event patterns", "Matching null values and empty strings in
//! Amazon EventBridge event patterns") and from the README of AWS's own matcher,
//! `aws/event-ruler`. Where the guide is silent or contradicts what AWS does, this module
//! follows AWS's observed behaviour (`TestEventPattern` results recorded by LocalStack's
//! AWS-validated pattern tests); each such place says so in a comment.
//!
//! In short: a pattern is an object whose every field must match (AND); event fields the
//! pattern does not name are ignored; nested pattern objects match nested event objects; a
//! leaf is a non-empty array of alternatives (OR), each a literal (type-aware, numbers by
//! value) or an operator: `prefix`, `suffix`, `equals-ignore-case`, `wildcard`,
//! `anything-but`, `numeric`, `cidr`, `exists`; `$or` offers alternative sub-patterns at any
//! object level. An array in the event matches when any element does, and the fields of one
//! nested pattern object must all be found in the same array element.
//!
//! Deliberately not reproduced: EventBridge joins nested keys with `.` internally, so that
//! `{"a.b": [..]}` and `{"a": {"b": [..]}}` match each other's events (a compiler quirk
//! event-ruler's README says not to rely on); its "rule is too complex" limit on wildcard
//! patterns; the legacy reading of `$or` as an ordinary field name (refused here instead);
//! and the older guide's ±5.0e9 range for numeric matching (numbers are compared as `f64`
//! throughout, as event-ruler now does).

use std::net::IpAddr;

use serde_json::{Map, Number, Value};

/// Why a pattern was refused: where in the pattern (`detail.state[0].numeric`, empty for
/// the pattern as a whole) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", if path.is_empty() { "event pattern" } else { path.as_str() })]
pub struct InvalidPattern {
    path: String,
    reason: String,
}

impl InvalidPattern {
    fn new(path: &str, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// The offending place, as dotted field names with `[i]` for list positions; empty
    /// when the pattern as a whole is at fault.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A parsed EventBridge event pattern.
#[derive(Debug, Clone)]
pub struct EventPattern {
    root: Node,
}

/// The operator names; inside `$or` they may not be used as field names, because there a
/// sub-pattern like `{"prefix": ...}` is far more likely a misplaced operator than a field.
const OPERATORS: [&str; 8] = [
    "prefix",
    "suffix",
    "equals-ignore-case",
    "wildcard",
    "anything-but",
    "numeric",
    "cidr",
    "exists",
];

/// EventBridge refuses patterns whose `$or`s expand to more than this many combinations.
const MAX_OR_COMBINATIONS: u64 = 1000;

/// One pattern object.
#[derive(Debug, Clone, Default)]
struct Node {
    /// All must match.
    fields: Vec<(String, Field)>,
    /// The `$or` alternatives, evaluated against this same object; empty when there is none.
    any_of: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Field {
    Object(Node),
    /// Any may match.
    Values(Vec<Matcher>),
}

#[derive(Debug, Clone)]
enum Matcher {
    Equals(Literal),
    Prefix(Affix),
    Suffix(Affix),
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    AnythingBut(Exclusion),
    Numeric(Range),
    Cidr(Cidr),
    Exists(bool),
}

#[derive(Debug, Clone)]
enum Literal {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
}

#[derive(Debug, Clone)]
struct Affix {
    /// Lower-cased when `ignore_case`, so matching lower-cases only the event side.
    text: String,
    ignore_case: bool,
}

#[derive(Debug, Clone)]
enum Exclusion {
    /// All strings or all numbers.
    Values(Vec<Literal>),
    Prefixes(Vec<String>),
    Suffixes(Vec<String>),
    /// Lower-cased.
    IgnoreCase(Vec<String>),
    Wildcards(Vec<Wildcard>),
}

#[derive(Debug, Clone, Copy)]
struct Bound {
    value: f64,
    inclusive: bool,
}

#[derive(Debug, Clone, Copy)]
struct Range {
    lower: Option<Bound>,
    upper: Option<Bound>,
}

#[derive(Debug, Clone, Copy)]
struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// A wildcard string cut at its unescaped `*`s: `a*b*c` is `["a", "b", "c"]`.
#[derive(Debug, Clone)]
struct Wildcard {
    parts: Vec<String>,
}

impl EventPattern {
    /// Parses and validates a pattern, refusing what EventBridge would refuse (with the
    /// path and the reason) so that a rule that loads here also deploys.
    pub fn parse(pattern: &Value) -> Result<Self, InvalidPattern> {
        let Value::Object(map) = pattern else {
            return Err(InvalidPattern::new("", "must be a JSON object"));
        };
        if map.is_empty() {
            return Err(InvalidPattern::new("", "must name at least one field"));
        }
        let root = parse_node(map, "", false)?;
        let combinations = root.combinations();
        if combinations > MAX_OR_COMBINATIONS {
            return Err(InvalidPattern::new(
                "",
                format!(
                    "its $or lists expand to {combinations} combinations; EventBridge allows at most {MAX_OR_COMBINATIONS}"
                ),
            ));
        }
        Ok(Self { root })
    }

    /// Whether `event` (the whole EventBridge event: `source`, `detail-type`, `detail`,
    /// `account`, `region`, `time`, `id`, `resources`, ...) matches.
    pub fn matches(&self, event: &Value) -> bool {
        self.root.matches_at(Some(event))
    }
}

// ---------------------------------------------------------------------------------------
// Parsing

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn parse_node(map: &Map<String, Value>, path: &str, in_or: bool) -> Result<Node, InvalidPattern> {
    // An empty object below the root is accepted and constrains nothing: AWS's
    // TestEventPattern matches `{"detail": {"automations": {}}}` against any event.
    let mut node = Node::default();
    for (key, value) in map {
        let here = join(path, key);
        if key == "$or" {
            node.any_of = parse_or(value, &here)?;
            continue;
        }
        if in_or && OPERATORS.contains(&key.as_str()) {
            return Err(InvalidPattern::new(
                &here,
                format!("\"{key}\" is an operator name and cannot be a field name inside $or"),
            ));
        }
        let field = match value {
            Value::Object(inner) => Field::Object(parse_node(inner, &here, in_or)?),
            Value::Array(items) if items.is_empty() => {
                return Err(InvalidPattern::new(&here, "empty arrays are not allowed"));
            }
            Value::Array(items) => Field::Values(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| parse_matcher(item, &format!("{here}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            _ => {
                return Err(InvalidPattern::new(
                    &here,
                    "expected an array of values or an object",
                ));
            }
        };
        node.fields.push((key.clone(), field));
    }
    Ok(node)
}

fn parse_or(value: &Value, path: &str) -> Result<Vec<Node>, InvalidPattern> {
    let need = "takes an array of at least two pattern objects";
    let Value::Array(alternatives) = value else {
        return Err(InvalidPattern::new(path, need));
    };
    if alternatives.len() < 2 {
        return Err(InvalidPattern::new(path, need));
    }
    alternatives
        .iter()
        .enumerate()
        .map(|(i, alternative)| {
            let here = format!("{path}[{i}]");
            match alternative {
                Value::Object(map) if !map.is_empty() => parse_node(map, &here, true),
                _ => Err(InvalidPattern::new(
                    &here,
                    "each $or alternative must be a non-empty object",
                )),
            }
        })
        .collect()
}

fn parse_matcher(item: &Value, path: &str) -> Result<Matcher, InvalidPattern> {
    let operator = match item {
        Value::Null => return Ok(Matcher::Equals(Literal::Null)),
        Value::Bool(b) => return Ok(Matcher::Equals(Literal::Bool(*b))),
        Value::Number(n) => return Ok(Matcher::Equals(Literal::Number(n.clone()))),
        // EventBridge compiles a literal IP address to an address range, so the event's
        // address matches however it is spelled ("2001:db8::1" is "2001:0db8:0:0:0:0:0:1").
        Value::String(s) => {
            return Ok(match s.parse::<IpAddr>() {
                Ok(ip) => Matcher::Cidr(Cidr::single(ip)),
                Err(_) => Matcher::Equals(Literal::String(s.clone())),
            });
        }
        Value::Array(_) => {
            return Err(InvalidPattern::new(
                path,
                "a value must be a string, number, true, false, null or an operator object, not an array",
            ));
        }
        Value::Object(operator) => operator,
    };
    let mut entries = operator.iter();
    let (Some((name, arg)), None) = (entries.next(), entries.next()) else {
        return Err(InvalidPattern::new(
            path,
            format!(
                "an operator object holds exactly one operator, found {}",
                operator.len()
            ),
        ));
    };
    let here = format!("{path}.{name}");
    let here = here.as_str();
    Ok(match name.as_str() {
        "prefix" => Matcher::Prefix(parse_affix(arg, here, "prefix")?),
        "suffix" => Matcher::Suffix(parse_affix(arg, here, "suffix")?),
        "equals-ignore-case" => match arg {
            Value::String(s) => Matcher::EqualsIgnoreCase(s.to_lowercase()),
            _ => return Err(InvalidPattern::new(here, "takes a string")),
        },
        "wildcard" => match arg {
            Value::String(s) => Matcher::Wildcard(Wildcard::parse(s, here)?),
            _ => return Err(InvalidPattern::new(here, "takes a string")),
        },
        "anything-but" => Matcher::AnythingBut(parse_anything_but(arg, here)?),
        "numeric" => Matcher::Numeric(parse_numeric(arg, here)?),
        "cidr" => match arg {
            Value::String(s) => Matcher::Cidr(Cidr::parse(s, here)?),
            _ => {
                return Err(InvalidPattern::new(
                    here,
                    "takes a string such as \"10.0.0.0/24\"",
                ));
            }
        },
        "exists" => match arg {
            Value::Bool(b) => Matcher::Exists(*b),
            _ => return Err(InvalidPattern::new(here, "takes true or false")),
        },
        other => {
            return Err(InvalidPattern::new(
                path,
                format!("unknown operator \"{other}\" (operator names are case-sensitive)"),
            ));
        }
    })
}

fn parse_affix(arg: &Value, path: &str, operator: &str) -> Result<Affix, InvalidPattern> {
    let usage = || {
        InvalidPattern::new(
            path,
            format!("takes a string or {{\"equals-ignore-case\": string}}, as in {operator}s"),
        )
    };
    match arg {
        Value::String(s) => Ok(Affix {
            text: s.clone(),
            ignore_case: false,
        }),
        Value::Object(m) if m.len() == 1 => match m.get("equals-ignore-case") {
            Some(Value::String(s)) => Ok(Affix {
                text: s.to_lowercase(),
                ignore_case: true,
            }),
            _ => Err(usage()),
        },
        _ => Err(usage()),
    }
}

fn parse_anything_but(arg: &Value, path: &str) -> Result<Exclusion, InvalidPattern> {
    let values = match arg {
        Value::Object(operator) => return parse_anything_but_operator(operator, path),
        Value::Array(values) => values.as_slice(),
        single => std::slice::from_ref(single),
    };
    let literals: Option<Vec<Literal>> = values.iter().map(string_or_number).collect();
    let same_type = values.iter().all(Value::is_string) || values.iter().all(Value::is_number);
    match literals {
        Some(literals) if !literals.is_empty() && same_type => Ok(Exclusion::Values(literals)),
        _ => Err(InvalidPattern::new(
            path,
            "takes a string, a number, a non-empty list of only strings or only numbers, \
             or a prefix/suffix/equals-ignore-case/wildcard object",
        )),
    }
}

fn parse_anything_but_operator(
    operator: &Map<String, Value>,
    path: &str,
) -> Result<Exclusion, InvalidPattern> {
    let mut entries = operator.iter();
    let (Some((name, arg)), None) = (entries.next(), entries.next()) else {
        return Err(InvalidPattern::new(
            path,
            format!(
                "an anything-but object holds exactly one of prefix, suffix, equals-ignore-case \
                 or wildcard, found {}",
                operator.len()
            ),
        ));
    };
    let here = format!("{path}.{name}");
    let texts = || strings(arg, &here);
    match name.as_str() {
        "prefix" | "suffix" => {
            let texts = texts()?;
            // An empty prefix or suffix would exclude every string.
            if texts.iter().any(String::is_empty) {
                return Err(InvalidPattern::new(
                    &here,
                    "an empty prefix/suffix is not allowed",
                ));
            }
            Ok(if name == "prefix" {
                Exclusion::Prefixes(texts)
            } else {
                Exclusion::Suffixes(texts)
            })
        }
        "equals-ignore-case" => Ok(Exclusion::IgnoreCase(
            texts()?.iter().map(|s| s.to_lowercase()).collect(),
        )),
        "wildcard" => Ok(Exclusion::Wildcards(
            texts()?
                .iter()
                .map(|s| Wildcard::parse(s, &here))
                .collect::<Result<_, _>>()?,
        )),
        other => Err(InvalidPattern::new(
            path,
            format!(
                "anything-but does not take \"{other}\" (only prefix, suffix, \
                 equals-ignore-case, wildcard)"
            ),
        )),
    }
}

/// A string or a non-empty list of strings.
fn strings(arg: &Value, path: &str) -> Result<Vec<String>, InvalidPattern> {
    let usage = || InvalidPattern::new(path, "takes a string or a non-empty list of strings");
    match arg {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(usage))
            .collect(),
        _ => Err(usage()),
    }
}

fn string_or_number(v: &Value) -> Option<Literal> {
    match v {
        Value::Number(n) => Some(Literal::Number(n.clone())),
        Value::String(s) => Some(Literal::String(s.clone())),
        _ => None,
    }
}

/// `["=", x]`, `[">" | ">=", x]`, `["<" | "<=", x]`, or a lower bound followed by an upper
/// one: the forms EventBridge accepts.
fn parse_numeric(arg: &Value, path: &str) -> Result<Range, InvalidPattern> {
    let usage = "expected an array such as [\">\", 0, \"<=\", 5], [\"<\", 10] or [\"=\", 3]";
    let Value::Array(items) = arg else {
        return Err(InvalidPattern::new(path, usage));
    };
    let terms = items
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            let operator = pair.first().and_then(Value::as_str).ok_or_else(|| {
                InvalidPattern::new(&format!("{path}[{}]", 2 * i), "expected an operator string")
            })?;
            let number = pair
                .get(1)
                .and_then(Value::as_f64)
                .filter(|n| n.is_finite());
            let number = number.ok_or_else(|| {
                InvalidPattern::new(
                    &format!("{path}[{}]", 2 * i + 1),
                    format!("\"{operator}\" needs a number after it"),
                )
            })?;
            Ok((operator, number))
        })
        .collect::<Result<Vec<_>, InvalidPattern>>()?;
    let bound = |operator: &str, value: f64| {
        Some(Bound {
            value,
            inclusive: operator.ends_with('='),
        })
    };
    match terms.as_slice() {
        [] => Err(InvalidPattern::new(path, usage)),
        [(operator, _), ..] if !matches!(*operator, "=" | "<" | "<=" | ">" | ">=") => Err(
            InvalidPattern::new(path, format!("unknown numeric operator \"{operator}\"")),
        ),
        [("=", value)] => Ok(Range {
            lower: bound("=", *value),
            upper: bound("=", *value),
        }),
        [(operator @ (">" | ">="), value)] => Ok(Range {
            lower: bound(operator, *value),
            upper: None,
        }),
        [(operator @ ("<" | "<="), value)] => Ok(Range {
            lower: None,
            upper: bound(operator, *value),
        }),
        [(low @ (">" | ">="), bottom), (high @ ("<" | "<="), top)] => {
            if bottom >= top {
                return Err(InvalidPattern::new(
                    path,
                    "the lower bound must be below the upper bound",
                ));
            }
            Ok(Range {
                lower: bound(low, *bottom),
                upper: bound(high, *top),
            })
        }
        [(">" | ">=", _), (operator, _)] => Err(InvalidPattern::new(
            path,
            format!("\"{operator}\" cannot follow a lower bound; only < or <= can"),
        )),
        _ => Err(InvalidPattern::new(
            path,
            format!("too many terms: {usage}"),
        )),
    }
}

impl Cidr {
    fn single(ip: IpAddr) -> Self {
        Self {
            network: ip,
            prefix_len: if ip.is_ipv4() { 32 } else { 128 },
        }
    }

    fn parse(s: &str, path: &str) -> Result<Self, InvalidPattern> {
        let bad =
            |why: &str| InvalidPattern::new(path, format!("{s:?} is not a CIDR block: {why}"));
        let Some((ip, bits)) = s.split_once('/') else {
            return Err(bad("one '/' required"));
        };
        let network: IpAddr = ip.parse().map_err(|_| bad("not an IP address"))?;
        let prefix_len: u8 = bits
            .parse()
            .map_err(|_| bad("the mask bits must be an integer"))?;
        // EventBridge refuses a block of a single address (/32, /128); a plain string
        // value does that job.
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix_len >= max {
            return Err(bad(&format!("the mask bits must be below {max}")));
        }
        Ok(Self {
            network,
            prefix_len,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl Wildcard {
    /// `*` is any run of characters (also none); `\*` is a star and `\\` a backslash. Other
    /// escapes and `**` are refused, as EventBridge refuses them.
    fn parse(s: &str, path: &str) -> Result<Self, InvalidPattern> {
        let mut parts = vec![String::new()];
        let mut previous_was_star = false;
        let mut chars = s.chars().enumerate();
        while let Some((i, c)) = chars.next() {
            let star = c == '*';
            match c {
                '*' if previous_was_star => {
                    return Err(InvalidPattern::new(
                        path,
                        format!("consecutive wildcard characters at position {i}"),
                    ));
                }
                '*' => parts.push(String::new()),
                '\\' => match chars.next() {
                    Some((_, escaped @ ('*' | '\\'))) => push_char(&mut parts, escaped),
                    _ => {
                        return Err(InvalidPattern::new(
                            path,
                            format!(
                                "invalid escape at position {i}: a backslash may only escape * or \\"
                            ),
                        ));
                    }
                },
                c => push_char(&mut parts, c),
            }
            previous_was_star = star;
        }
        Ok(Self { parts })
    }

    /// The first part must start the string and the last end it; the ones between are
    /// taken leftmost-first, which never loses a match and keeps this linear.
    fn matches(&self, s: &str) -> bool {
        let Some((first, rest)) = self.parts.split_first() else {
            return s.is_empty();
        };
        let Some(mut remaining) = s.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return remaining.is_empty();
        };
        for part in middle {
            match remaining.find(part.as_str()) {
                Some(at) => remaining = &remaining[at + part.len()..],
                None => return false,
            }
        }
        remaining.ends_with(last.as_str())
    }
}

fn push_char(parts: &mut [String], c: char) {
    if let Some(last) = parts.last_mut() {
        last.push(c);
    }
}

impl Node {
    /// How many plain rules this pattern expands into when every `$or` is multiplied out;
    /// EventBridge counts patterns this way to enforce its limit.
    fn combinations(&self) -> u64 {
        let nested = self.fields.iter().fold(1u64, |n, (_, field)| match field {
            Field::Object(node) => n.saturating_mul(node.combinations()),
            Field::Values(_) => n,
        });
        if self.any_of.is_empty() {
            nested
        } else {
            let alternatives = self.any_of.iter().fold(0u64, |n, alternative| {
                n.saturating_add(alternative.combinations())
            });
            nested.saturating_mul(alternatives)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Matching

impl Node {
    /// `value` is what the event holds where this pattern object sits (`None`: nothing).
    /// Arrays are looked through, and the whole object must match within one element, so
    /// that two fields are never satisfied by two different elements of the same array.
    /// With no object there at all, every field of this pattern is absent, which still
    /// satisfies `exists: false`.
    fn matches_at(&self, value: Option<&Value>) -> bool {
        let mut objects = Vec::new();
        if let Some(value) = value {
            collect_objects(value, &mut objects);
        }
        if objects.is_empty() {
            return self.matches_object(None);
        }
        objects
            .into_iter()
            .any(|object| self.matches_object(Some(object)))
    }

    fn matches_object(&self, object: Option<&Map<String, Value>>) -> bool {
        let fields_match = self.fields.iter().all(|(key, field)| {
            let value = object.and_then(|o| o.get(key));
            match field {
                Field::Object(node) => node.matches_at(value),
                Field::Values(matchers) => values_match(matchers, value),
            }
        });
        fields_match
            && (self.any_of.is_empty()
                || self
                    .any_of
                    .iter()
                    .any(|alternative| alternative.matches_object(object)))
    }
}

fn collect_objects<'a>(value: &'a Value, out: &mut Vec<&'a Map<String, Value>>) {
    match value {
        Value::Object(object) => out.push(object),
        Value::Array(items) => items.iter().for_each(|item| collect_objects(item, out)),
        _ => {}
    }
}

/// The leaf values of an event field: a scalar (or null) itself, the scalars of an array
/// (nested arrays flattened). Objects are intermediate nodes, not values, so an object or
/// an empty array gives no values, and the field then does not "exist".
fn collect_leaves<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(_) => {}
        Value::Array(items) => items.iter().for_each(|item| collect_leaves(item, out)),
        leaf => out.push(leaf),
    }
}

fn values_match(matchers: &[Matcher], value: Option<&Value>) -> bool {
    let mut leaves = Vec::new();
    if let Some(value) = value {
        collect_leaves(value, &mut leaves);
    }
    matchers.iter().any(|matcher| match matcher {
        Matcher::Exists(expected) => leaves.is_empty() != *expected,
        matcher => leaves.iter().any(|leaf| matcher.accepts(leaf)),
    })
}

impl Matcher {
    fn accepts(&self, leaf: &Value) -> bool {
        let text = leaf.as_str();
        match self {
            Matcher::Equals(literal) => literal.equals(leaf),
            Matcher::Prefix(affix) => text.is_some_and(|s| affix.begins(s)),
            Matcher::Suffix(affix) => text.is_some_and(|s| affix.ends(s)),
            Matcher::EqualsIgnoreCase(lower) => text.is_some_and(|s| s.to_lowercase() == *lower),
            Matcher::Wildcard(wildcard) => text.is_some_and(|s| wildcard.matches(s)),
            // Any present value that is not excluded, whatever its type: AWS matches
            // `{"anything-but": {"prefix": "init"}}` against a number and against null.
            Matcher::AnythingBut(exclusion) => !exclusion.excludes(leaf),
            Matcher::Numeric(range) => {
                leaf.is_number() && leaf.as_f64().is_some_and(|n| range.contains(n))
            }
            Matcher::Cidr(cidr) => text
                .and_then(|s| s.parse::<IpAddr>().ok())
                .is_some_and(|ip| cidr.contains(ip)),
            // Presence is a property of the whole field, decided in `values_match`.
            Matcher::Exists(_) => false,
        }
    }
}

impl Literal {
    fn equals(&self, value: &Value) -> bool {
        match (self, value) {
            (Literal::Null, Value::Null) => true,
            (Literal::Bool(a), Value::Bool(b)) => a == b,
            (Literal::String(a), Value::String(b)) => a == b,
            // The guide says 300, 300.0 and 3.0e2 are different, but AWS matches a pattern
            // `[300]` against an event `300.0` (EventBridge also compares numbers as
            // doubles), so numbers match by value.
            (Literal::Number(a), Value::Number(b)) => {
                a == b || a.as_f64().zip(b.as_f64()).is_some_and(|(x, y)| x == y)
            }
            _ => false,
        }
    }
}

impl Affix {
    fn begins(&self, s: &str) -> bool {
        if self.ignore_case {
            s.to_lowercase().starts_with(&self.text)
        } else {
            s.starts_with(&self.text)
        }
    }

    fn ends(&self, s: &str) -> bool {
        if self.ignore_case {
            s.to_lowercase().ends_with(&self.text)
        } else {
            s.ends_with(&self.text)
        }
    }
}

impl Exclusion {
    fn excludes(&self, leaf: &Value) -> bool {
        let text = leaf.as_str();
        match self {
            Exclusion::Values(values) => values.iter().any(|v| v.equals(leaf)),
            Exclusion::Prefixes(prefixes) => {
                text.is_some_and(|s| prefixes.iter().any(|p| s.starts_with(p.as_str())))
            }
            Exclusion::Suffixes(suffixes) => {
                text.is_some_and(|s| suffixes.iter().any(|p| s.ends_with(p.as_str())))
            }
            Exclusion::IgnoreCase(lowered) => {
                text.is_some_and(|s| lowered.contains(&s.to_lowercase()))
            }
            Exclusion::Wildcards(wildcards) => {
                text.is_some_and(|s| wildcards.iter().any(|w| w.matches(s)))
            }
        }
    }
}

impl Range {
    fn contains(&self, n: f64) -> bool {
        let above = self.lower.is_none_or(|b| {
            if b.inclusive {
                n >= b.value
            } else {
                n > b.value
            }
        });
        let below = self.upper.is_none_or(|b| {
            if b.inclusive {
                n <= b.value
            } else {
                n < b.value
            }
        });
        above && below
    }
}
