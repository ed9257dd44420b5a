//! The EventBridge pattern matcher, through its public API: each operator matching and not
//! matching, type-awareness, arrays, `$or`, absent fields, invalid patterns, the examples
//! of the Amazon EventBridge User Guide (page titles cited next to each), and the route
//! table's own rules.
//!
//! Where a case pins behaviour that AWS shows but its guide does not state (or states
//! otherwise), the comment says "AWS TestEventPattern": those cases were recorded against
//! the real service by LocalStack's AWS-validated pattern tests.

use backend::event_pattern::{EventPattern, InvalidPattern};
use serde_json::{Value, json};

fn pattern(p: &Value) -> EventPattern {
    EventPattern::parse(p).unwrap_or_else(|e| panic!("{p} should be a valid pattern: {e}"))
}

fn matches(p: Value, event: Value) -> bool {
    pattern(&p).matches(&event)
}

fn invalid(p: Value) -> InvalidPattern {
    match EventPattern::parse(&p) {
        Ok(_) => panic!("{p} should be refused"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------
// Structure: AND over fields, OR over values, nesting, absent fields

#[test]
fn every_field_named_in_the_pattern_must_match() {
    let p = json!({"source": ["a"], "detail-type": ["T"]});
    assert!(matches(
        p.clone(),
        json!({"source": "a", "detail-type": "T"})
    ));
    assert!(!matches(
        p.clone(),
        json!({"source": "a", "detail-type": "U"})
    ));
    assert!(!matches(p, json!({"source": "b", "detail-type": "T"})));
}

#[test]
fn event_fields_the_pattern_does_not_name_are_ignored() {
    let p = json!({"source": ["a"]});
    assert!(matches(
        p,
        json!({"source": "a", "id": "1", "detail": {"anything": [1, 2]}})
    ));
}

#[test]
fn a_value_list_matches_when_any_value_matches() {
    let p = json!({"source": ["aws.ec2", "aws.fargate"]});
    assert!(matches(p.clone(), json!({"source": "aws.fargate"})));
    assert!(!matches(p, json!({"source": "aws.s3"})));
}

#[test]
fn nested_pattern_objects_match_nested_event_objects() {
    let p = json!({"detail": {"order": {"status": ["received"]}}});
    assert!(matches(
        p.clone(),
        json!({"detail": {"order": {"status": "received"}}})
    ));
    assert!(!matches(
        p.clone(),
        json!({"detail": {"order": {"status": "completed"}}})
    ));
    assert!(
        !matches(p.clone(), json!({"detail": {"status": "received"}})),
        "wrong level"
    );
    assert!(!matches(p, json!({"status": "received"})), "wrong level");
}

#[test]
fn a_field_absent_from_the_event_does_not_match_a_value() {
    let p = json!({"detail": {"state": ["running"]}});
    assert!(!matches(p.clone(), json!({"detail": {}})));
    assert!(
        !matches(p.clone(), json!({"source": "a"})),
        "parent absent too"
    );
    assert!(!matches(p.clone(), json!({"detail": null})));
    assert!(
        !matches(p, json!({"detail": "running"})),
        "a scalar has no fields"
    );
}

#[test]
fn a_detail_holding_a_json_string_is_not_an_object() {
    // AWS TestEventPattern: a string detail is not parsed as JSON.
    let p = json!({"detail": {"my-key": ["my-value"]}});
    assert!(!matches(p, json!({"detail": "{\"my-key\": \"my-value\"}"})));
}

#[test]
fn field_names_are_case_sensitive() {
    assert!(!matches(json!({"MY_KEY": ["v"]}), json!({"my_key": "v"})));
}

#[test]
fn strings_match_character_for_character() {
    // "Creating Amazon EventBridge event patterns": exact matching, no case-folding or
    // other normalization.
    let s = "A CamelCase string with an emoji 🚀 and trailing whitespace ";
    assert!(matches(json!({"s": [s]}), json!({"s": s})));
    assert!(!matches(json!({"s": [s]}), json!({"s": s.trim_end()})));
    assert!(!matches(json!({"s": ["abc"]}), json!({"s": "ABC"})));
}

#[test]
fn an_empty_nested_object_adds_no_condition() {
    // AWS TestEventPattern accepts `{"detail": {"automations": {}}}` and matches it.
    let p = json!({"source": ["a"], "detail": {"automations": {}}});
    assert!(matches(
        p.clone(),
        json!({"source": "a", "detail": {"automations": [{"k": 1}]}})
    ));
    assert!(matches(p.clone(), json!({"source": "a"})));
    assert!(!matches(p, json!({"source": "b"})));
}

#[test]
fn the_last_of_duplicate_keys_is_the_one_used() {
    // "Comparison operators for use in event patterns in Amazon EventBridge" (complex
    // example): "if you include a key more than once the last reference will be the one
    // used". The pattern arrives as text, where duplicate keys can exist.
    let text = r#"{"detail": {"location": [{"prefix": "us-"}], "location": [{"anything-but": "us-east"}]}}"#;
    let p: Value = serde_json::from_str(text).expect("json");
    assert!(matches(
        p.clone(),
        json!({"detail": {"location": "eu-west"}})
    ));
    assert!(!matches(p, json!({"detail": {"location": "us-east"}})));
}

// ---------------------------------------------------------------------------------------
// Literals are type-aware

#[test]
fn a_string_never_matches_a_number_and_vice_versa() {
    assert!(!matches(json!({"n": ["5"]}), json!({"n": 5})));
    assert!(!matches(json!({"n": [5]}), json!({"n": "5"})));
}

#[test]
fn numbers_match_by_value_however_they_are_written() {
    // The guide ("Creating Amazon EventBridge event patterns") says 300, 300.0 and 3.0e2
    // are not equal; AWS TestEventPattern matches `[300]` against `300.0`, and the
    // brief asks for value equality, so this pins value equality.
    assert!(matches(json!({"n": [300]}), json!({"n": 300.0})));
    let p: Value = serde_json::from_str(r#"{"n": [3.0e2]}"#).expect("json");
    assert!(matches(p, json!({"n": 300})));
    assert!(matches(json!({"n": [5]}), json!({"n": 5})));
    assert!(matches(json!({"n": [-1.5]}), json!({"n": -1.5})));
    assert!(!matches(json!({"n": [300]}), json!({"n": 300.5})));
}

#[test]
fn large_integers_such_as_account_ids_match_exactly() {
    assert!(matches(
        json!({"n": [123456789012_u64]}),
        json!({"n": 123456789012_u64})
    ));
    assert!(!matches(
        json!({"n": [123456789012_u64]}),
        json!({"n": 123456789013_u64})
    ));
}

#[test]
fn booleans_match_only_the_same_boolean() {
    assert!(matches(json!({"b": [false]}), json!({"b": false})));
    assert!(!matches(json!({"b": [false]}), json!({"b": true})));
    assert!(!matches(json!({"b": [true]}), json!({"b": "true"})));
    assert!(!matches(json!({"b": ["true"]}), json!({"b": true})));
}

#[test]
fn null_matches_only_a_json_null() {
    let p = json!({"r": [null]});
    assert!(matches(p.clone(), json!({"r": null})));
    assert!(!matches(p.clone(), json!({"r": "null"})));
    assert!(!matches(p.clone(), json!({"r": ""})));
    assert!(!matches(p.clone(), json!({})), "absent is not null");
    assert!(
        !matches(p, json!({"r": []})),
        "an empty array holds no null"
    );
}

#[test]
fn the_empty_string_is_a_value_distinct_from_null() {
    let p = json!({"v": [""]});
    assert!(matches(p.clone(), json!({"v": ""})));
    assert!(!matches(p.clone(), json!({"v": null})));
    assert!(!matches(p, json!({})));
}

// ---------------------------------------------------------------------------------------
// Arrays in events

#[test]
fn an_event_array_matches_when_any_element_matches() {
    let p = json!({"resources": ["arn:1", "arn:9"]});
    assert!(matches(p.clone(), json!({"resources": ["arn:0", "arn:1"]})));
    assert!(!matches(p, json!({"resources": ["arn:0", "arn:2"]})));
}

#[test]
fn an_empty_event_array_holds_no_value() {
    assert!(!matches(
        json!({"resources": ["arn:1"]}),
        json!({"resources": []})
    ));
}

#[test]
fn nested_event_arrays_are_flattened() {
    assert!(matches(json!({"a": [3]}), json!({"a": [[1, 2], [3]]})));
    assert!(!matches(json!({"a": [4]}), json!({"a": [[1, 2], [3]]})));
}

#[test]
fn operators_apply_to_each_element_of_an_event_array() {
    assert!(matches(
        json!({"a": [{"prefix": "x"}]}),
        json!({"a": ["ya", "xb"]})
    ));
    assert!(matches(
        json!({"a": [{"numeric": [">", 10]}]}),
        json!({"a": [1, 20]})
    ));
    assert!(!matches(
        json!({"a": [{"numeric": [">", 10]}]}),
        json!({"a": [1, 2]})
    ));
}

#[test]
fn an_array_of_objects_matches_a_nested_pattern_element_by_element() {
    // event-ruler README, "JSON Array Matching".
    let event = json!({"employees": [
        {"firstName": "John", "lastName": "Doe"},
        {"firstName": "Anna", "lastName": "Smith"},
        {"firstName": "Peter", "lastName": "Jones"}
    ]});
    assert!(matches(
        json!({"employees": {"firstName": ["Anna"]}}),
        event.clone()
    ));
    assert!(matches(
        json!({"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}}),
        event.clone()
    ));
    // Anna and Jones are in different elements: the fields of one pattern object must all
    // be satisfied by the same element.
    assert!(!matches(
        json!({"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}),
        event.clone()
    ));
    // An array of objects is not a value.
    assert!(!matches(json!({"employees": ["Anna"]}), event));
}

#[test]
fn arrays_of_arrays_of_objects_are_looked_through() {
    // event-ruler README, "JSON Array Matching" (multi-level arrays) and its tests.
    let event = json!({"employees": [
        [
            {"firstName": "John", "lastName": "Doe", "ids": [1234, 1000, 9999]},
            {"firstName": "Anna", "lastName": "Smith"}
        ],
        [{"firstName": "Peter", "lastName": "Jones", "ids": []}]
    ]});
    assert!(matches(
        json!({"employees": {"firstName": ["Anna"]}}),
        event.clone()
    ));
    assert!(matches(
        json!({"employees": {"firstName": ["John"], "ids": [1000]}}),
        event.clone()
    ));
    assert!(!matches(
        json!({"employees": {"firstName": ["Anna"], "ids": [1000]}}),
        event.clone()
    ));
    assert!(matches(
        json!({"employees": {"firstName": ["Anna"], "ids": [{"exists": false}]}}),
        event.clone()
    ));
    assert!(!matches(
        json!({"employees": {"firstName": ["Anna"], "ids": [{"exists": true}]}}),
        event.clone()
    ));
    assert!(matches(
        json!({"employees": {"firstName": ["Peter"], "ids": [{"exists": false}]}}),
        event
    ));
}

// ---------------------------------------------------------------------------------------
// prefix, suffix, equals-ignore-case

#[test]
fn prefix_matches_strings_that_start_with_it() {
    let p = json!({"time": [{"prefix": "2017-10-02"}]});
    assert!(matches(p.clone(), json!({"time": "2017-10-02T18:43:48Z"})));
    assert!(matches(p.clone(), json!({"time": "2017-10-02"})));
    assert!(!matches(p.clone(), json!({"time": "2017-10-03T18:43:48Z"})));
    assert!(!matches(p.clone(), json!({"time": "x2017-10-02"})));
    assert!(!matches(p, json!({})));
}

#[test]
fn prefix_and_suffix_apply_to_strings_only() {
    assert!(!matches(json!({"n": [{"prefix": "1"}]}), json!({"n": 10})));
    assert!(!matches(json!({"n": [{"suffix": "0"}]}), json!({"n": 10})));
    assert!(!matches(
        json!({"n": [{"prefix": "n"}]}),
        json!({"n": null})
    ));
    assert!(!matches(
        json!({"n": [{"prefix": "t"}]}),
        json!({"n": true})
    ));
}

#[test]
fn an_empty_prefix_or_suffix_matches_every_string_but_nothing_else() {
    assert!(matches(
        json!({"source": [{"prefix": ""}]}),
        json!({"source": "anything"})
    ));
    assert!(matches(
        json!({"source": [{"suffix": ""}]}),
        json!({"source": ""})
    ));
    assert!(!matches(
        json!({"source": [{"prefix": ""}]}),
        json!({"source": 1})
    ));
    assert!(!matches(json!({"source": [{"prefix": ""}]}), json!({})));
}

#[test]
fn prefix_with_equals_ignore_case_ignores_case() {
    let p = json!({"service": [{"prefix": {"equals-ignore-case": "EventB"}}]});
    assert!(matches(p.clone(), json!({"service": "eventbridge"})));
    assert!(matches(p.clone(), json!({"service": "EVENTBRIDGE"})));
    assert!(!matches(p.clone(), json!({"service": "Events"})));
    assert!(!matches(
        json!({"service": [{"prefix": "EventB"}]}),
        json!({"service": "eventbridge"})
    ));
}

#[test]
fn suffix_matches_strings_that_end_with_it_case_sensitively() {
    let p = json!({"FileName": [{"suffix": ".png"}]});
    assert!(matches(p.clone(), json!({"FileName": "image.png"})));
    assert!(!matches(p.clone(), json!({"FileName": "image.PNG"})));
    assert!(!matches(p, json!({"FileName": "image.png.bak"})));
}

#[test]
fn suffix_with_equals_ignore_case_ignores_case() {
    let p = json!({"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]});
    assert!(matches(p.clone(), json!({"FileName": "image.PNG"})));
    assert!(matches(p.clone(), json!({"FileName": "image.Png"})));
    assert!(!matches(p, json!({"FileName": "image.jpg"})));
}

#[test]
fn equals_ignore_case_matches_whole_strings_in_any_case() {
    let p = json!({"name": [{"equals-ignore-case": "alice"}]});
    assert!(matches(p.clone(), json!({"name": "ALICE"})));
    assert!(matches(p.clone(), json!({"name": "Alice"})));
    assert!(!matches(p.clone(), json!({"name": "Alice2"})));
    assert!(!matches(p.clone(), json!({"name": "bob"})));
    assert!(!matches(p, json!({})));
    assert!(matches(
        json!({"v": [{"equals-ignore-case": ""}]}),
        json!({"v": ""})
    ));
    assert!(!matches(
        json!({"v": [{"equals-ignore-case": ""}]}),
        json!({"v": "x"})
    ));
    assert!(!matches(
        json!({"v": [{"equals-ignore-case": "5"}]}),
        json!({"v": 5})
    ));
}

// ---------------------------------------------------------------------------------------
// wildcard

#[test]
fn a_wildcard_star_matches_any_run_of_characters_including_none() {
    let p = json!({"key": [{"wildcard": "dir/*.png"}]});
    assert!(matches(p.clone(), json!({"key": "dir/a.png"})));
    assert!(matches(p.clone(), json!({"key": "dir/.png"})));
    assert!(
        matches(p.clone(), json!({"key": "dir/sub/a.png"})),
        "* crosses slashes"
    );
    assert!(!matches(p.clone(), json!({"key": "dir/a.jpg"})));
    assert!(
        !matches(p.clone(), json!({"key": "xdir/a.png"})),
        "anchored at the start"
    );
    assert!(
        !matches(p, json!({"key": "dir/a.png.bak"})),
        "anchored at the end"
    );
}

#[test]
fn a_wildcard_with_several_stars_needs_its_parts_in_order() {
    let p = json!({"arn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]});
    assert!(matches(
        p.clone(),
        json!({"arn": "arn:aws:events:us-east-1:123456789012:event-bus/myEventBus"})
    ));
    assert!(!matches(
        p,
        json!({"arn": "arn:aws:events:us-west-2:123456789012:event-bus/b"})
    ));
    let title = json!({"t": [{"wildcard": "*Title*"}]});
    assert!(matches(title.clone(), json!({"t": "Title"})));
    assert!(matches(title.clone(), json!({"t": "The Title of it"})));
    assert!(!matches(title, json!({"t": "title"})));
}

#[test]
fn a_wildcard_tries_later_occurrences_when_an_early_one_fails() {
    let p = json!({"f": [{"wildcard": "/Users/*/dir/dir/doc.txt"}]});
    assert!(matches(
        p.clone(),
        json!({"f": "/Users/me/dir/dir/dir/dir/doc.txt"})
    ));
    assert!(!matches(
        p,
        json!({"f": "/Users/me/dir/dir/dir/other/doc.txt"})
    ));
    assert!(matches(
        json!({"f": [{"wildcard": "*ab"}]}),
        json!({"f": "aab"})
    ));
    assert!(matches(
        json!({"f": [{"wildcard": "a*a"}]}),
        json!({"f": "aa"})
    ));
    assert!(
        !matches(json!({"f": [{"wildcard": "a*a"}]}), json!({"f": "a"})),
        "parts may not overlap"
    );
    // A middle part taken at its last occurrence would leave no room for the final "a".
    assert!(matches(
        json!({"f": [{"wildcard": "*a*a"}]}),
        json!({"f": "aXa"})
    ));
    assert!(matches(
        json!({"f": [{"wildcard": "x*ab*b"}]}),
        json!({"f": "xabab"})
    ));
    assert!(!matches(
        json!({"f": [{"wildcard": "x*ab*b"}]}),
        json!({"f": "xab"})
    ));
}

#[test]
fn escaped_stars_and_backslashes_in_a_wildcard_are_literal() {
    let star = json!({"k": [{"wildcard": "a\\*b"}]});
    assert!(matches(star.clone(), json!({"k": "a*b"})));
    assert!(!matches(star, json!({"k": "axb"})));
    let backslash = json!({"k": [{"wildcard": "a\\\\*"}]});
    assert!(matches(backslash.clone(), json!({"k": "a\\b"})));
    assert!(!matches(backslash, json!({"k": "ab"})));
}

#[test]
fn a_wildcard_without_stars_is_an_exact_match_and_applies_to_strings_only() {
    assert!(matches(
        json!({"k": [{"wildcard": "abc"}]}),
        json!({"k": "abc"})
    ));
    assert!(!matches(
        json!({"k": [{"wildcard": ""}]}),
        json!({"k": "abc"})
    ));
    assert!(matches(json!({"k": [{"wildcard": ""}]}), json!({"k": ""})));
    assert!(!matches(json!({"k": [{"wildcard": "*"}]}), json!({"k": 1})));
}

// ---------------------------------------------------------------------------------------
// anything-but

#[test]
fn anything_but_a_value_matches_every_other_value() {
    let p = json!({"state": [{"anything-but": "initializing"}]});
    assert!(matches(p.clone(), json!({"state": "running"})));
    assert!(!matches(p, json!({"state": "initializing"})));
    let n = json!({"x": [{"anything-but": 123}]});
    assert!(matches(n.clone(), json!({"x": 789})));
    assert!(!matches(n.clone(), json!({"x": 123})));
    assert!(
        !matches(n.clone(), json!({"x": 123.0})),
        "numbers compare by value"
    );
    assert!(
        matches(n, json!({"x": "123"})),
        "a string is not the number"
    );
}

#[test]
fn anything_but_a_list_excludes_each_listed_value() {
    let p = json!({"state": [{"anything-but": ["stopped", "overloaded"]}]});
    assert!(matches(p.clone(), json!({"state": "running"})));
    assert!(!matches(p.clone(), json!({"state": "stopped"})));
    assert!(!matches(p, json!({"state": "overloaded"})));
    let n = json!({"x": [{"anything-but": [100, 200, 300]}]});
    assert!(matches(n.clone(), json!({"x": 999})));
    assert!(!matches(n, json!({"x": 200})));
}

#[test]
fn anything_but_needs_the_field_to_be_present() {
    // AWS TestEventPattern: every anything-but form fails on a missing field.
    for op in [
        json!("initializing"),
        json!(["a", "b"]),
        json!({"prefix": "init"}),
        json!({"suffix": ".txt"}),
        json!({"equals-ignore-case": "x"}),
        json!({"wildcard": "*/init/*"}),
    ] {
        let p = json!({"detail": {"state": [{"anything-but": op}]}});
        assert!(!matches(p.clone(), json!({"detail": {}})), "{p}");
        assert!(!matches(p.clone(), json!({"detail": {"state": []}})), "{p}");
        assert!(
            !matches(p.clone(), json!({"detail": {"state": {"nested": "x"}}})),
            "{p}: an object is no value"
        );
    }
}

#[test]
fn anything_but_matches_values_of_any_other_type_including_null() {
    // AWS TestEventPattern: a null state matches every anything-but form, and a number
    // matches anything-but prefix and wildcard.
    for op in [
        json!("initializing"),
        json!(["stopped", "running"]),
        json!({"prefix": "init"}),
        json!({"suffix": ".txt"}),
        json!({"equals-ignore-case": "initializing"}),
        json!({"wildcard": "*/dir/*"}),
    ] {
        let p = json!({"state": [{"anything-but": op}]});
        assert!(matches(p.clone(), json!({"state": null})), "{p}");
        assert!(matches(p.clone(), json!({"state": 12})), "{p}");
        assert!(matches(p.clone(), json!({"state": true})), "{p}");
    }
}

#[test]
fn anything_but_prefix_and_suffix_exclude_strings_by_their_ends() {
    let pre = json!({"state": [{"anything-but": {"prefix": "init"}}]});
    assert!(matches(pre.clone(), json!({"state": "post-init"})));
    assert!(!matches(pre, json!({"state": "init-prefix"})));
    let pres = json!({"state": [{"anything-but": {"prefix": ["init", "post"]}}]});
    assert!(!matches(pres.clone(), json!({"state": "post-init"})));
    assert!(matches(pres, json!({"state": "running"})));
    let suf = json!({"FileName": [{"anything-but": {"suffix": ".txt"}}]});
    assert!(matches(suf.clone(), json!({"FileName": "file.txt.bak"})));
    assert!(!matches(suf, json!({"FileName": "file.txt"})));
    let sufs = json!({"FileName": [{"anything-but": {"suffix": [".txt", ".jpg"]}}]});
    assert!(!matches(sufs.clone(), json!({"FileName": "file.jpg"})));
    assert!(matches(sufs, json!({"FileName": "file.png"})));
}

#[test]
fn anything_but_equals_ignore_case_excludes_any_casing() {
    let p = json!({"state": [{"anything-but": {"equals-ignore-case": ["Stopped", "OverLoaded"]}}]});
    assert!(!matches(p.clone(), json!({"state": "STOPPED"})));
    assert!(!matches(p.clone(), json!({"state": "overloaded"})));
    assert!(matches(p, json!({"state": "running"})));
}

#[test]
fn anything_but_wildcard_excludes_strings_the_wildcard_matches() {
    let p = json!({"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]});
    assert!(matches(p.clone(), json!({"FilePath": "dir/bin/file"})));
    assert!(!matches(p, json!({"FilePath": "dir/lib/file"})));
    let list = json!({"s": [{"anything-but": {"wildcard": ["*/init/*", "*/dir/*"]}}]});
    assert!(matches(list.clone(), json!({"s": "dir/post/x"})));
    assert!(!matches(list, json!({"s": "a/dir/b"})));
    // AWS TestEventPattern: an empty wildcard excludes only the empty string.
    assert!(matches(
        json!({"s": [{"anything-but": {"wildcard": ""}}]}),
        json!({"s": "dir/init/file"})
    ));
}

#[test]
fn anything_but_on_an_event_array_matches_when_any_element_is_not_excluded() {
    let p = json!({"tags": [{"anything-but": "banned"}]});
    assert!(matches(p.clone(), json!({"tags": ["banned", "ok"]})));
    assert!(!matches(p, json!({"tags": ["banned"]})));
}

// ---------------------------------------------------------------------------------------
// numeric

#[test]
fn numeric_ranges_honour_open_and_closed_bounds() {
    let p = json!({"c": [{"numeric": [">", 0, "<=", 5]}]});
    assert!(!matches(p.clone(), json!({"c": 0})));
    assert!(matches(p.clone(), json!({"c": 0.000001})));
    assert!(matches(p.clone(), json!({"c": 5})));
    assert!(!matches(p.clone(), json!({"c": 5.000001})));
    let q = json!({"c": [{"numeric": [">=", 0, "<", 5]}]});
    assert!(matches(q.clone(), json!({"c": 0})));
    assert!(!matches(q, json!({"c": 5})));
}

#[test]
fn numeric_single_bounds_and_equality() {
    assert!(matches(
        json!({"d": [{"numeric": ["<", 10]}]}),
        json!({"d": -3})
    ));
    assert!(!matches(
        json!({"d": [{"numeric": ["<", 10]}]}),
        json!({"d": 10})
    ));
    assert!(matches(
        json!({"d": [{"numeric": ["<=", 10]}]}),
        json!({"d": 10})
    ));
    assert!(matches(
        json!({"d": [{"numeric": [">", 100]}]}),
        json!({"d": 101.0})
    ));
    assert!(matches(
        json!({"d": [{"numeric": [">=", 100]}]}),
        json!({"d": 100})
    ));
    assert!(matches(
        json!({"x": [{"numeric": ["=", 3.018e2]}]}),
        json!({"x": 301.8})
    ));
    assert!(!matches(
        json!({"x": [{"numeric": ["=", 3.018e2]}]}),
        json!({"x": 301.81})
    ));
}

#[test]
fn numeric_matches_json_numbers_only() {
    let p = json!({"n": [{"numeric": [">", 100]}]});
    assert!(!matches(p.clone(), json!({"n": "300"})));
    assert!(!matches(p.clone(), json!({"n": null})));
    assert!(!matches(p.clone(), json!({"n": true})));
    assert!(!matches(p, json!({})));
}

#[test]
fn several_operators_in_one_list_are_alternatives() {
    let p = json!({"n": [{"numeric": ["<", 0]}, {"numeric": [">", 100]}, "none"]});
    assert!(matches(p.clone(), json!({"n": -1})));
    assert!(matches(p.clone(), json!({"n": 101})));
    assert!(matches(p.clone(), json!({"n": "none"})));
    assert!(!matches(p, json!({"n": 50})));
}

// ---------------------------------------------------------------------------------------
// exists

#[test]
fn exists_true_needs_a_value_at_the_field() {
    let p = json!({"detail": {"state": [{"exists": true}]}});
    assert!(matches(p.clone(), json!({"detail": {"state": "pending"}})));
    assert!(matches(p.clone(), json!({"detail": {"state": ""}})));
    assert!(
        matches(p.clone(), json!({"detail": {"state": null}})),
        "null is a value"
    );
    assert!(matches(
        p.clone(),
        json!({"detail": {"state": ["initializing", "running"]}})
    ));
    assert!(!matches(p.clone(), json!({"detail": {}})));
    assert!(!matches(p, json!({"source": "a"})));
}

#[test]
fn exists_true_does_not_match_an_object_or_an_empty_array() {
    // "Exists matching only works on leaf nodes. It does not work on intermediate nodes."
    // AWS TestEventPattern agrees for objects and for `"resources": []`.
    assert!(!matches(
        json!({"k": [{"exists": true}]}),
        json!({"k": {"S": "x"}})
    ));
    assert!(matches(
        json!({"k": {"S": [{"exists": true}]}}),
        json!({"k": {"S": "x"}})
    ));
    assert!(!matches(
        json!({"resources": [{"exists": true}]}),
        json!({"resources": []})
    ));
}

#[test]
fn exists_false_matches_an_absent_field() {
    let p = json!({"detail": {"c-count": [{"exists": false}]}});
    assert!(matches(p.clone(), json!({"detail": {"state": "running"}})));
    assert!(!matches(p.clone(), json!({"detail": {"c-count": 5}})));
    assert!(
        !matches(p.clone(), json!({"detail": {"c-count": null}})),
        "null is present"
    );
    assert!(!matches(p, json!({"detail": {"c-count": [5]}})));
}

#[test]
fn exists_false_matches_when_a_parent_is_missing_or_not_an_object() {
    // AWS TestEventPattern: a missing intermediate level makes the leaf absent.
    let p = json!({"detail": {"level1": {"level2": {"level3": [{"exists": false}]}}}});
    assert!(matches(
        p.clone(),
        json!({"detail": {"level1": {"level2x": {}}}})
    ));
    assert!(matches(
        p.clone(),
        json!({"detail": {"level1": "a string"}})
    ));
    assert!(matches(p.clone(), json!({"source": "no detail at all"})));
    assert!(!matches(
        p,
        json!({"detail": {"level1": {"level2": {"level3": "v"}}}})
    ));
}

#[test]
fn exists_false_matches_an_object_because_it_is_not_a_leaf() {
    // event-ruler README, "Exists matching": exists false on `c-count` matches an event
    // whose `c-count` is an object.
    let p = json!({"detail": {"c-count": [{"exists": false}]}});
    assert!(matches(
        p.clone(),
        json!({"detail": {"c-count": {"c1": 100}}})
    ));
    assert!(
        matches(p, json!({"detail": {"c-count": []}})),
        "an empty array holds no value"
    );
}

#[test]
fn exists_false_is_an_alternative_like_any_other() {
    // AWS TestEventPattern: `S` is absent, so anything-but fails and exists false matches.
    let p = json!({"dynamodb": {"NewImage": {"homemade": {"S": [
        {"anything-but": ["roses"]},
        {"exists": false}
    ]}}}});
    assert!(matches(
        p.clone(),
        json!({"dynamodb": {"NewImage": {"homemade": {"N": "789"}}}})
    ));
    assert!(matches(
        p.clone(),
        json!({"dynamodb": {"NewImage": {"purchased": {"N": "789"}}}})
    ));
    assert!(matches(
        p.clone(),
        json!({"dynamodb": {"NewImage": {"homemade": {"S": "tulips"}}}})
    ));
    assert!(!matches(
        p,
        json!({"dynamodb": {"NewImage": {"homemade": {"S": "roses"}}}})
    ));
}

// ---------------------------------------------------------------------------------------
// cidr

#[test]
fn cidr_matches_ipv4_addresses_in_the_block() {
    let p = json!({"ip": [{"cidr": "10.0.0.0/24"}]});
    assert!(matches(p.clone(), json!({"ip": "10.0.0.0"})));
    assert!(matches(p.clone(), json!({"ip": "10.0.0.255"})));
    assert!(!matches(p.clone(), json!({"ip": "10.0.1.0"})));
    assert!(!matches(p, json!({"ip": "10.0.0.256"})), "not an address");
    let wide = json!({"ip": [{"cidr": "10.0.0.0/8"}]});
    assert!(matches(wide.clone(), json!({"ip": "10.200.3.4"})));
    assert!(!matches(wide, json!({"ip": "11.0.0.1"})));
    assert!(matches(
        json!({"ip": [{"cidr": "0.0.0.0/0"}]}),
        json!({"ip": "203.0.113.9"})
    ));
}

#[test]
fn cidr_matches_ipv6_addresses_in_the_block() {
    let p = json!({"ip": [{"cidr": "2001:db8:1234:1a00::/64"}]});
    assert!(matches(
        p.clone(),
        json!({"ip": "2001:0db8:1234:1a00:0000:0000:0000:0000"})
    ));
    assert!(matches(
        p.clone(),
        json!({"ip": "2001:db8:1234:1a00:ffff::1"})
    ));
    assert!(!matches(
        p.clone(),
        json!({"ip": "2001:0db8:123f:1a01:0000:0000:0000:0000"})
    ));
    assert!(
        !matches(p, json!({"ip": "10.0.0.1"})),
        "an IPv4 address is not in an IPv6 block"
    );
}

#[test]
fn cidr_ignores_values_that_are_not_address_strings() {
    let p = json!({"ip": [{"cidr": "10.0.0.0/24"}]});
    assert!(!matches(p.clone(), json!({"ip": 123})));
    assert!(!matches(p.clone(), json!({"ip": "ten.0.0.1"})));
    assert!(!matches(p, json!({"ip": null})));
}

#[test]
fn an_ip_address_value_matches_the_same_address_however_it_is_written() {
    let p = json!({"ip": ["2001:db8::1"]});
    assert!(matches(p.clone(), json!({"ip": "2001:0db8:0:0:0:0:0:1"})));
    assert!(!matches(p, json!({"ip": "2001:db8::2"})));
    assert!(matches(
        json!({"ip": ["10.0.0.1"]}),
        json!({"ip": "10.0.0.1"})
    ));
}

// ---------------------------------------------------------------------------------------
// $or

#[test]
fn or_matches_when_any_alternative_matches() {
    let p = json!({"$or": [{"source": ["aws.ec2"]}, {"source": ["aws.s3"]}]});
    assert!(matches(p.clone(), json!({"source": "aws.s3"})));
    assert!(!matches(p, json!({"source": "my.app"})));
}

#[test]
fn or_is_combined_with_the_other_fields_by_and() {
    // event-ruler README, "Normal Or": source && (metricName || namespace).
    let p = json!({
        "source": ["aws.cloudwatch"],
        "$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"namespace": ["AWS/EC2", "AWS/ES"]}]
    });
    assert!(matches(
        p.clone(),
        json!({"source": "aws.cloudwatch", "namespace": "AWS/ES"})
    ));
    assert!(matches(
        p.clone(),
        json!({"source": "aws.cloudwatch", "metricName": "ReadLatency"})
    ));
    assert!(!matches(
        p.clone(),
        json!({"source": "aws.cloudwatch", "metricName": "Other"})
    ));
    assert!(!matches(
        p,
        json!({"source": "aws.ec2", "namespace": "AWS/ES"})
    ));
}

#[test]
fn or_alternatives_can_hold_several_fields_and_nested_ors() {
    // event-ruler README, "Nested Or and And".
    let p = json!({
        "source": ["aws.cloudwatch"],
        "$or": [
            {"metricName": ["CPUUtilization", "ReadLatency"]},
            {
                "metricType": ["MetricType"],
                "namespace": ["AWS/EC2", "AWS/ES"],
                "$or": [{"metricId": [1234]}, {"spaceId": [1000]}]
            },
            {"scope": ["Service"]}
        ]
    });
    let cw = |extra: Value| -> Value {
        let mut event = extra;
        event["source"] = json!("aws.cloudwatch");
        event
    };
    assert!(matches(p.clone(), cw(json!({"scope": "Service"}))));
    assert!(matches(
        p.clone(),
        cw(json!({"metricType": "MetricType", "namespace": "AWS/EC2", "spaceId": 1000}))
    ));
    assert!(!matches(
        p.clone(),
        cw(json!({"metricType": "MetricType", "namespace": "AWS/EC2"}))
    ));
    assert!(!matches(
        p,
        cw(json!({"metricType": "MetricType", "spaceId": 1000}))
    ));
}

#[test]
fn parallel_ors_at_different_levels_must_each_match() {
    // event-ruler README, "Parallel Or".
    let p = json!({
        "$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"namespace": ["AWS/EC2", "AWS/ES"]}],
        "detail": {"$or": [{"source": ["aws.cloudwatch"]}, {"detail-type": ["CloudWatch Alarm State Change"]}]}
    });
    assert!(matches(
        p.clone(),
        json!({"namespace": "AWS/EC2", "detail": {"source": "aws.cloudwatch"}})
    ));
    assert!(!matches(
        p.clone(),
        json!({"namespace": "AWS/EC2", "detail": {"source": "x"}})
    ));
    assert!(!matches(
        p,
        json!({"namespace": "x", "detail": {"source": "aws.cloudwatch"}})
    ));
}

#[test]
fn or_alternatives_with_exists_false_see_absent_fields() {
    let p = json!({"detail": {"$or": [{"a": ["1"]}, {"a": [{"exists": false}]}]}});
    assert!(matches(p.clone(), json!({"detail": {"a": "1"}})));
    assert!(matches(p.clone(), json!({"detail": {}})));
    assert!(matches(p.clone(), json!({})));
    assert!(!matches(p, json!({"detail": {"a": "2"}})));
}

// ---------------------------------------------------------------------------------------
// Invalid patterns are refused, naming the place and the reason

#[test]
fn the_error_names_the_path_and_the_reason() {
    let e = invalid(json!({"detail": {"order": {"status": "received"}}}));
    assert_eq!(e.path(), "detail.order.status");
    assert_eq!(e.reason(), "expected an array of values or an object");
    assert_eq!(
        e.to_string(),
        "detail.order.status: expected an array of values or an object"
    );
    let whole = invalid(json!([]));
    assert_eq!(whole.path(), "");
    assert_eq!(whole.to_string(), "event pattern: must be a JSON object");
}

#[test]
fn invalid_patterns_are_refused_at_the_right_place() {
    // Most of these are refusals AWS TestEventPattern also gives ("Event pattern is not
    // valid").
    #[rustfmt::skip]
    let cases = [
        (json!("source"), "", "JSON object"),
        (json!({}), "", "at least one field"),
        (json!({"int": 42}), "int", "array of values or an object"),
        (json!({"string": "my-value"}), "string", "array of values or an object"),
        (json!({"b": true}), "b", "array of values or an object"),
        (json!({"n": null}), "n", "array of values or an object"),
        (json!({"resources": []}), "resources", "empty arrays"),
        (json!({"a": [["x"]]}), "a[0]", "not an array"),
        (json!({"a": ["x", {"bogus": 1}]}), "a[1]", "unknown operator \"bogus\""),
        (json!({"a": [{"EXISTS": true}]}), "a[0]", "case-sensitive"),
        (json!({"a": [{"NUMERIC": ["=", 5]}]}), "a[0]", "unknown operator"),
        (json!({"a": [{}]}), "a[0]", "exactly one operator, found 0"),
        (json!({"a": [{"prefix": "x", "suffix": "y"}]}), "a[0]", "exactly one operator, found 2"),
        (json!({"time": [{"prefix": 123}]}), "time[0].prefix", "takes a string"),
        (json!({"time": [{"prefix": ["2022"]}]}), "time[0].prefix", "takes a string"),
        (json!({"f": [{"suffix": 123}]}), "f[0].suffix", "takes a string"),
        (json!({"f": [{"prefix": {"wildcard": "x"}}]}), "f[0].prefix", "equals-ignore-case"),
        (json!({"d": [{"equals-ignore-case": ["x"]}]}), "d[0].equals-ignore-case", "takes a string"),
        (json!({"d": [{"equals-ignore-case": {"prefix": "ec2"}}]}), "d[0].equals-ignore-case", "takes a string"),
        (json!({"e": [{"exists": "yes"}]}), "e[0].exists", "true or false"),
        (json!({"w": [{"wildcard": 123}]}), "w[0].wildcard", "takes a string"),
        (json!({"w": [{"wildcard": ["a*"]}]}), "w[0].wildcard", "takes a string"),
        (json!({"w": [{"wildcard": "arn:**:x"}]}), "w[0].wildcard", "consecutive wildcard characters at position 5"),
        (json!({"w": [{"wildcard": "a\\b"}]}), "w[0].wildcard", "invalid escape at position 1"),
        (json!({"w": [{"wildcard": "a\\"}]}), "w[0].wildcard", "invalid escape"),
        (json!({"c": [{"numeric": 10}]}), "c[0].numeric", "expected an array"),
        (json!({"c": [{"numeric": []}]}), "c[0].numeric", "expected an array"),
        (json!({"c": [{"numeric": [">", 0, "<"]}]}), "c[0].numeric[3]", "\"<\" needs a number"),
        (json!({"c": [{"numeric": [">", "0"]}]}), "c[0].numeric[1]", "needs a number"),
        (json!({"c": [{"numeric": [0, ">"]}]}), "c[0].numeric[0]", "operator string"),
        (json!({"c": [{"numeric": ["==", 0]}]}), "c[0].numeric", "unknown numeric operator \"==\""),
        (json!({"c": [{"numeric": [">", 0, ">", 0]}]}), "c[0].numeric", "cannot follow a lower bound"),
        (json!({"c": [{"numeric": ["<", 5, ">", 0]}]}), "c[0].numeric", "too many terms"),
        (json!({"c": [{"numeric": ["=", 5, "<", 6]}]}), "c[0].numeric", "too many terms"),
        (json!({"c": [{"numeric": [">", 5, "<", 5]}]}), "c[0].numeric", "lower bound must be below"),
        (json!({"c": [{"numeric": [">=", 9, "<=", 1]}]}), "c[0].numeric", "lower bound must be below"),
        (json!({"c": [{"numeric": [">", 0, "<", 9, "<", 10]}]}), "c[0].numeric", "too many terms"),
        (json!({"ip": [{"cidr": "bad-filter"}]}), "ip[0].cidr", "one '/' required"),
        (json!({"ip": [{"cidr": "xx.11.xx/8"}]}), "ip[0].cidr", "not an IP address"),
        (json!({"ip": [{"cidr": "xxxx:db8:1234:1a00::/64"}]}), "ip[0].cidr", "not an IP address"),
        (json!({"ip": [{"cidr": "10.0.0.0/x"}]}), "ip[0].cidr", "must be an integer"),
        (json!({"ip": [{"cidr": "10.0.0.1/32"}]}), "ip[0].cidr", "below 32"),
        (json!({"ip": [{"cidr": "::1/128"}]}), "ip[0].cidr", "below 128"),
        (json!({"ip": [{"cidr": ["10.0.0.0/8"]}]}), "ip[0].cidr", "takes a string"),
        (json!({"s": [{"anything-but": null}]}), "s[0].anything-but", "takes a string, a number"),
        (json!({"s": [{"anything-but": true}]}), "s[0].anything-but", "takes a string, a number"),
        (json!({"s": [{"anything-but": []}]}), "s[0].anything-but", "a non-empty list"),
        (json!({"s": [{"anything-but": {}}]}), "s[0].anything-but", "found 0"),
        (json!({"s": [{"anything-but": ["stopped", null]}]}), "s[0].anything-but", "only strings or only numbers"),
        (json!({"s": [{"anything-but": ["a", 1]}]}), "s[0].anything-but", "only strings or only numbers"),
        (json!({"s": [{"anything-but": {"prefix": ""}}]}), "s[0].anything-but.prefix", "empty prefix/suffix"),
        (json!({"s": [{"anything-but": {"suffix": ""}}]}), "s[0].anything-but.suffix", "empty prefix/suffix"),
        (json!({"s": [{"anything-but": {"prefix": 123}}]}), "s[0].anything-but.prefix", "string"),
        (json!({"s": [{"anything-but": {"suffix": [null, ".txt"]}}]}), "s[0].anything-but.suffix", "string"),
        (json!({"s": [{"anything-but": {"prefix": {"equals-ignore-case": "f"}}}]}), "s[0].anything-but.prefix", "string"),
        (json!({"s": [{"anything-but": {"equals-ignore-case": 123}}]}), "s[0].anything-but.equals-ignore-case", "string"),
        (json!({"s": [{"anything-but": {"equals-ignore-case": [123, 456]}}]}), "s[0].anything-but.equals-ignore-case", "string"),
        (json!({"s": [{"anything-but": {"wildcard": [123, "*/dir/*"]}}]}), "s[0].anything-but.wildcard", "string"),
        (json!({"s": [{"anything-but": {"wildcard": "a**"}}]}), "s[0].anything-but.wildcard", "consecutive"),
        (json!({"s": [{"anything-but": {"numeric": [">", 1]}}]}), "s[0].anything-but", "does not take \"numeric\""),
        (json!({"s": [{"anything-but": {"prefix": "a", "suffix": "b"}}]}), "s[0].anything-but", "exactly one of prefix, suffix"),
        (json!({"$or": [{"a": ["1"]}]}), "$or", "at least two"),
        (json!({"$or": {"a": ["1"]}}), "$or", "at least two"),
        (json!({"detail": {"$or": [{"a": ["1"]}, ["b"]]}}), "detail.$or[1]", "non-empty object"),
        (json!({"$or": [{"a": ["1"]}, {}]}), "$or[1]", "non-empty object"),
        (json!({"$or": [{"numeric": [">", 1]}, {"prefix": ["a"]}]}), "$or[0].numeric", "operator name"),
        (json!({"$or": [{"a": {"cidr": ["x"]}}, {"b": ["2"]}]}), "$or[0].a.cidr", "operator name"),
        (json!({"detail": {"$or": [{"a": ["1"]}, {"b": {"c": []}}]}}), "detail.$or[1].b.c", "empty arrays"),
    ];
    for (p, path, reason) in cases {
        let e = invalid(p.clone());
        assert_eq!(e.path(), path, "{p}: {e}");
        assert!(
            e.reason().contains(reason),
            "{p}: {e:?} should say {reason:?}"
        );
    }
}

#[test]
fn or_may_expand_to_at_most_a_thousand_combinations() {
    // "Comparison operators for use in event patterns in Amazon EventBridge": a pattern
    // whose $or arrays multiply out to over 1000 rule combinations is refused.
    let or_of =
        |n: usize, field: &str| Value::Array((0..n).map(|i| json!({ field: [i] })).collect());
    let ten_by_ten_by_ten = json!({
        "$or": or_of(10, "a"),
        "b": {"$or": or_of(10, "c")},
        "d": {"$or": or_of(10, "e")}
    });
    assert!(EventPattern::parse(&ten_by_ten_by_ten).is_ok());
    let too_many = json!({
        "$or": or_of(10, "a"),
        "b": {"$or": or_of(10, "c")},
        "d": {"$or": or_of(11, "e")}
    });
    let e = invalid(too_many);
    assert_eq!(e.path(), "");
    assert!(e.reason().contains("1100 combinations"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Examples from the Amazon EventBridge User Guide, copied with their events

#[test]
fn docs_creating_event_patterns_ec2_termination() {
    // "Creating Amazon EventBridge event patterns".
    let event = json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "111122223333",
        "time": "2017-12-22T18:43:48Z",
        "region": "us-west-1",
        "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
        "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated"}
    });
    let p = json!({
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
        "detail": {"state": ["terminated"]}
    });
    assert!(matches(p.clone(), event.clone()));
    let mut running = event.clone();
    running["detail"]["state"] = json!("running");
    assert!(!matches(p, running));
    // "Creating Amazon EventBridge event patterns", matching values: either source.
    assert!(matches(
        json!({"source": ["aws.ec2", "aws.fargate"]}),
        event
    ));
}

#[test]
fn docs_value_matching_macie_finding() {
    // "Amazon EventBridge event patterns" (example events and event patterns: value
    // matching), the Macie finding, truncated as in the guide.
    let event = json!({
        "version": "0",
        "id": "0948ba87-d3b8-c6d4-f2da-732a1example",
        "detail-type": "Macie Finding",
        "source": "aws.macie",
        "account": "123456789012",
        "time": "2021-04-29T23:12:15Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "schemaVersion": "1.0",
            "id": "64b917aa-3843-014c-91d8-937ffexample",
            "accountId": "123456789012",
            "partition": "aws",
            "region": "us-east-1",
            "type": "Policy:IAMUser/S3BucketEncryptionDisabled",
            "title": "Encryption is disabled for the S3 bucket",
            "severity": {"score": 1, "description": "Low"},
            "createdAt": "2021-04-29T15:46:02Z",
            "updatedAt": "2021-04-29T23:12:15Z",
            "count": 2
        }
    });
    let p = json!({
        "source": ["aws.macie"],
        "detail-type": ["Macie Finding"],
        "detail": {"severity": {"score": [1]}, "count": [2]}
    });
    assert!(matches(p.clone(), event.clone()));
    let mut three = event;
    three["detail"]["count"] = json!(3);
    assert!(!matches(p, three));
}

#[test]
fn docs_arrays_resources_intersection() {
    // "Arrays in Amazon EventBridge event patterns".
    let p = json!({"resources": [
        "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
        "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
        "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f"
    ]});
    let asg = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:autoScalingGroupName/ASGTerminate";
    assert!(matches(
        p.clone(),
        json!({"resources": [asg, "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"]})
    ));
    assert!(!matches(p, json!({"resources": [asg]})));
}

#[test]
fn docs_null_values_and_empty_strings() {
    // "Matching null values and empty strings in Amazon EventBridge event patterns".
    let event = json!({
        "version": "0",
        "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
        "detail-type": "EC2 Instance Launch Successful",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": "2015-11-11T21:31:47Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"eventVersion": "", "responseElements": null}
    });
    assert!(matches(
        json!({"detail": {"eventVersion": [""]}}),
        event.clone()
    ));
    assert!(matches(
        json!({"detail": {"responseElements": [null]}}),
        event.clone()
    ));
    // "Null values and empty strings are not interchangeable in pattern matching."
    assert!(!matches(
        json!({"detail": {"eventVersion": [null]}}),
        event.clone()
    ));
    assert!(!matches(
        json!({"detail": {"responseElements": [""]}}),
        event.clone()
    ));
    assert!(matches(
        json!({
            "source": ["aws.autoscaling"],
            "detail-type": ["EC2 Instance Launch Successful"],
            "detail": {"responseElements": [null]}
        }),
        event
    ));
}

#[test]
fn docs_operator_summary_table() {
    // "Comparison operators for use in event patterns in Amazon EventBridge": the summary
    // table's rule syntax, one row each.
    #[rustfmt::skip]
    let cases = [
        (json!({"Location": ["New York"], "Day": ["Monday"]}), json!({"Location": "New York", "Day": "Monday"}), json!({"Location": "New York", "Day": "Tuesday"})),
        (json!({"state": [{"anything-but": "initializing"}]}), json!({"state": "running"}), json!({"state": "initializing"})),
        (json!({"Region": [{"anything-but": {"prefix": "us-"}}]}), json!({"Region": "eu-west-1"}), json!({"Region": "us-east-1"})),
        (json!({"FileName": [{"anything-but": {"suffix": ".png"}}]}), json!({"FileName": "a.jpg"}), json!({"FileName": "a.png"})),
        (json!({"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]}), json!({"state": "pending"}), json!({"state": "INITIALIZING"})),
        (json!({"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}), json!({"FilePath": "/usr/bin/x"}), json!({"FilePath": "/usr/lib/x"})),
        (json!({"Region": [{"prefix": "us-"}]}), json!({"Region": "us-east-1"}), json!({"Region": "eu-west-1"})),
        (json!({"service": [{"prefix": {"equals-ignore-case": "eventb"}}]}), json!({"service": "EventBridge"}), json!({"service": "Events"})),
        (json!({"LastName": [""]}), json!({"LastName": ""}), json!({"LastName": "Doe"})),
        (json!({"Name": ["Alice"]}), json!({"Name": "Alice"}), json!({"Name": "alice"})),
        (json!({"Name": [{"equals-ignore-case": "alice"}]}), json!({"Name": "ALICE"}), json!({"Name": "Bob"})),
        (json!({"FileName": [{"suffix": ".png"}]}), json!({"FileName": "a.png"}), json!({"FileName": "a.PNG"})),
        (json!({"service": [{"suffix": {"equals-ignore-case": "tbridge"}}]}), json!({"service": "EVENTBRIDGE"}), json!({"service": "EventBus"})),
        (json!({"ProductName": [{"exists": true}]}), json!({"ProductName": "Widget"}), json!({"Product": "Widget"})),
        (json!({"ProductName": [{"exists": false}]}), json!({"Product": "Widget"}), json!({"ProductName": "Widget"})),
        (json!({"Weather": [{"anything-but": ["Raining"]}]}), json!({"Weather": "Sunny"}), json!({"Weather": "Raining"})),
        (json!({"UserID": [null]}), json!({"UserID": null}), json!({"UserID": "u1"})),
        (json!({"Price": [{"numeric": ["=", 100]}]}), json!({"Price": 100}), json!({"Price": 101})),
        (json!({"Price": [{"numeric": [">", 10, "<=", 20]}]}), json!({"Price": 20}), json!({"Price": 10})),
        (json!({"PaymentType": ["Credit", "Debit"]}), json!({"PaymentType": "Debit"}), json!({"PaymentType": "Cash"})),
        (json!({"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]}), json!({"Location": "Paris", "Day": "Monday"}), json!({"Location": "Paris", "Day": "Sunday"})),
        (json!({"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}), json!({"sourceIPAddress": "10.0.0.42"}), json!({"sourceIPAddress": "10.0.1.42"})),
        (json!({"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]}), json!({"EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/b"}), json!({"EventBusArn": "arn:aws:events:us-west-2:123456789012:event-bus/b"})),
    ];
    for (p, yes, no) in cases {
        assert!(matches(p.clone(), yes.clone()), "{p} should match {yes}");
        assert!(!matches(p.clone(), no.clone()), "{p} should not match {no}");
    }
}

#[test]
fn docs_content_filtering_prefix_and_suffix() {
    // "Comparison operators for use in event patterns in Amazon EventBridge" (formerly
    // "Content filtering in Amazon EventBridge event patterns"): prefix and suffix
    // matching, with and without equals-ignore-case.
    assert!(matches(
        json!({"time": [{"prefix": "2017-10-02"}]}),
        json!({"time": "2017-10-02T18:43:48Z"})
    ));
    let service = json!({"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}});
    for s in ["EventBridge", "EVENTBRIDGE", "eventbridge", "eVeNtBridge"] {
        assert!(
            matches(service.clone(), json!({"detail": {"service": s}})),
            "{s}"
        );
    }
    assert!(matches(
        json!({"FileName": [{"suffix": ".png"}]}),
        json!({"FileName": "image.png"})
    ));
    let ignore = json!({"detail": {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}});
    assert!(matches(
        ignore.clone(),
        json!({"detail": {"FileName": "image.PNG"}})
    ));
    assert!(!matches(
        ignore,
        json!({"detail": {"FileName": "image.jpg"}})
    ));
}

#[test]
fn docs_content_filtering_anything_but() {
    // "Comparison operators for use in event patterns in Amazon EventBridge":
    // anything-but with strings, numbers, lists, prefix, suffix, ignore case, wildcard.
    let state = |s: &str| json!({"detail": {"state": s}});
    let limit = |n: f64| json!({"detail": {"x-limit": n}});
    assert!(matches(
        json!({"detail": {"state": [{"anything-but": "initializing"}]}}),
        state("running")
    ));
    assert!(!matches(
        json!({"detail": {"state": [{"anything-but": "initializing"}]}}),
        state("initializing")
    ));
    assert!(matches(
        json!({"detail": {"x-limit": [{"anything-but": 123}]}}),
        limit(124.0)
    ));
    assert!(!matches(
        json!({"detail": {"x-limit": [{"anything-but": 123}]}}),
        limit(123.0)
    ));
    let list = json!({"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}});
    assert!(matches(list.clone(), state("running")));
    assert!(!matches(list, state("overloaded")));
    let numbers = json!({"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}});
    assert!(matches(numbers.clone(), limit(301.8)));
    assert!(!matches(numbers, limit(300.0)));
    let init = json!({"detail": {"state": [{"anything-but": {"prefix": "init"}}]}});
    assert!(matches(init.clone(), state("running")));
    assert!(!matches(init, state("initializing")));
    let png = json!({"detail": {"FileName": [{"anything-but": {"suffix": ".png"}}]}});
    assert!(matches(
        png.clone(),
        json!({"detail": {"FileName": "a.txt"}})
    ));
    assert!(!matches(png, json!({"detail": {"FileName": "a.png"}})));
    let ignore = json!({"detail": {"state": [{"anything-but": {"equals-ignore-case": ["Stopped", "OverLoaded"]}}]}});
    assert!(!matches(ignore.clone(), state("stopped")));
    assert!(!matches(ignore.clone(), state("OVERLOADED")));
    assert!(matches(ignore, state("running")));
    let lib = json!({"detail": {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}});
    assert!(matches(
        lib.clone(),
        json!({"detail": {"FilePath": "/usr/bin/tool"}})
    ));
    assert!(!matches(
        lib,
        json!({"detail": {"FilePath": "/usr/lib/libc.so"}})
    ));
}

#[test]
fn docs_content_filtering_numeric() {
    // "Comparison operators for use in event patterns in Amazon EventBridge": numeric
    // matching; the pattern matches only events for which every field holds.
    let p = json!({"detail": {
        "c-count": [{"numeric": [">", 0, "<=", 5]}],
        "d-count": [{"numeric": ["<", 10]}],
        "x-limit": [{"numeric": ["=", 3.018e2]}]
    }});
    assert!(matches(
        p.clone(),
        json!({"detail": {"c-count": 3, "d-count": 9, "x-limit": 301.8}})
    ));
    assert!(!matches(
        p.clone(),
        json!({"detail": {"c-count": 42, "d-count": 9, "x-limit": 301.8}})
    ));
    assert!(!matches(p, json!({"detail": {"c-count": 3, "d-count": 9}})));
}

#[test]
fn docs_content_filtering_ip_address() {
    // "Comparison operators for use in event patterns in Amazon EventBridge": IP address
    // matching, "IP addresses that start with 10.0.0 and end with a number between 0 and
    // 255".
    let p = json!({"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}});
    for last in [0, 1, 128, 255] {
        assert!(matches(
            p.clone(),
            json!({"detail": {"sourceIPAddress": format!("10.0.0.{last}")}})
        ));
    }
    assert!(!matches(
        p,
        json!({"detail": {"sourceIPAddress": "10.0.1.0"}})
    ));
}

#[test]
fn docs_content_filtering_exists() {
    // "Comparison operators for use in event patterns in Amazon EventBridge": exists
    // matching, with the guide's two events.
    let p = json!({"detail": {"state": [{"exists": true}]}});
    let with_state = json!({
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2015-11-11T21:29:54Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
        "detail": {"instance-id": "i-abcd1111", "state": "pending"}
    });
    let without_state = json!({
        "detail-type": ["EC2 Instance State-change Notification"],
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-02ebd4584a2ebd341"],
        "detail": {"c-count": {"c1": 100}}
    });
    assert!(matches(p.clone(), with_state.clone()));
    assert!(!matches(p, without_state.clone()));
    let absent = json!({"detail": {"state": [{"exists": false}]}});
    assert!(!matches(absent.clone(), with_state));
    assert!(matches(absent, without_state));
}

#[test]
fn docs_content_filtering_equals_ignore_case() {
    // "Comparison operators for use in event patterns in Amazon EventBridge":
    // equals-ignore-case on detail-type.
    let p =
        json!({"detail-type": [{"equals-ignore-case": "ec2 instance state-change notification"}]});
    assert!(matches(
        p.clone(),
        json!({"detail-type": "EC2 Instance State-change Notification"})
    ));
    assert!(!matches(
        p,
        json!({"detail-type": "EC2 Spot Instance Interruption Warning"})
    ));
}

#[test]
fn docs_content_filtering_complex_example() {
    // "Comparison operators for use in event patterns in Amazon EventBridge": complex
    // example with multiple matching, against the event-ruler README's sample event.
    let p = json!({
        "time": [{"prefix": "2017-10-02"}],
        "detail": {
            "state": [{"anything-but": "initializing"}],
            "c-count": [{"numeric": [">", 0, "<=", 5]}],
            "d-count": [{"numeric": ["<", 10]}],
            "x-limit": [{"anything-but": [100, 200, 300]}]
        }
    });
    let event = json!({
        "version": "0",
        "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "012345679012",
        "time": "2017-10-02T16:24:49Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
        "detail": {
            "c-count": 5,
            "d-count": 3,
            "x-limit": 301.8,
            "source-ip": "10.0.0.33",
            "instance-id": "i-000000aaaaaa00000",
            "state": "running"
        }
    });
    assert!(matches(p.clone(), event.clone()));
    let mut initializing = event.clone();
    initializing["detail"]["state"] = json!("initializing");
    assert!(!matches(p.clone(), initializing));
    let mut next_day = event;
    next_day["time"] = json!("2017-10-03T16:24:49Z");
    assert!(!matches(p, next_day));
}

#[test]
fn docs_content_filtering_or_example() {
    // "Comparison operators for use in event patterns in Amazon EventBridge": complex
    // example with $or matching.
    let p = json!({"detail": {"$or": [
        {"c-count": [{"numeric": [">", 0, "<=", 5]}]},
        {"d-count": [{"numeric": ["<", 10]}]},
        {"x-limit": [{"numeric": ["=", 3.018e2]}]}
    ]}});
    assert!(matches(p.clone(), json!({"detail": {"c-count": 3}})));
    assert!(matches(p.clone(), json!({"detail": {"d-count": 9}})));
    assert!(matches(p.clone(), json!({"detail": {"x-limit": 301.8}})));
    assert!(matches(
        p.clone(),
        json!({"detail": {"c-count": 42, "x-limit": 301.8}})
    ));
    assert!(!matches(
        p.clone(),
        json!({"detail": {"c-count": 42, "d-count": 10, "x-limit": 300}})
    ));
    assert!(!matches(p, json!({"detail": {}})));
}

#[test]
fn ruler_readme_sample_rules_match_its_sample_event() {
    // event-ruler README, "Ruler by Example": every rule in its examples matches the
    // sample event.
    let event = json!({
        "version": "0",
        "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "012345679012",
        "time": "2017-10-02T16:24:49Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
        "detail": {
            "c-count": 5,
            "d-count": 3,
            "x-limit": 301.8,
            "source-ip": "10.0.0.33",
            "instance-id": "i-000000aaaaaa00000",
            "state": "running"
        }
    });
    let rules = [
        json!({
            "detail-type": ["EC2 Instance State-change Notification"],
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
            "detail": {"state": ["initializing", "running"]}
        }),
        json!({"source": [{"prefix": {"equals-ignore-case": "AWS"}}]}),
        json!({"source": [{"suffix": "ec2"}]}),
        json!({"source": [{"suffix": {"equals-ignore-case": "EC2"}}]}),
        json!({"source": [{"equals-ignore-case": "AWS.EC2"}]}),
        json!({"source": [{"wildcard": "aws.*"}]}),
        json!({"detail": {"state": [{"anything-but": {"prefix": ["init", "error"]}}]}}),
        json!({"detail": {"instance-id": [{"anything-but": {"suffix": ["1234", "6789"]}}]}}),
        json!({"detail": {"state": [{"anything-but": {"wildcard": ["*/bin/*.jar", "*/bin/*.class"]}}]}}),
        json!({"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}),
        json!({"detail": {"c-count": [{"exists": true}]}}),
        json!({"detail": {"e-count": [{"exists": false}]}}),
        json!({
            "time": [{"prefix": "2017-10-02"}],
            "detail": {
                "state": [{"anything-but": "initializing"}],
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"anything-but": [100, 200, 300]}],
                "source-ip": [{"cidr": "10.0.0.0/8"}]
            }
        }),
    ];
    for rule in rules {
        assert!(matches(rule.clone(), event.clone()), "{rule}");
    }
}

// ---------------------------------------------------------------------------------------
// The route table's own rules

fn route_table() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../events-schema/routes.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

/// An event as the bus publishes it (brief, "EventBridge contract").
fn order_event(source: &str, detail_type: &str, status: &str) -> Value {
    json!({
        "version": "0",
        "id": "0190a6e2-0000-7000-8000-000000000001",
        "detail-type": detail_type,
        "source": source,
        "account": "000000000000",
        "time": "2026-01-01T00:00:00Z",
        "region": "local",
        "resources": [],
        "detail": {
            "event": {
                "eventId": "0190a6e2-0000-7000-8000-000000000002",
                "orderId": "order-1",
                "version": 2,
                "type": detail_type,
                "schemaVersion": 1,
                "occurredAt": "2026-01-01T00:00:00Z",
                "status": status,
                "data": {},
                "metadata": {"correlationId": "c", "causationId": "c", "actor": "test"}
            },
            "order": {
                "orderId": "order-1",
                "description": "two coffees",
                "status": status,
                "version": 2
            }
        }
    })
}

const DETAIL_TYPES: [&str; 5] = [
    "OrderPlaced",
    "OrderStarted",
    "OrderCompleted",
    "OrderCanceled",
    "OrderDetailsRevised",
];

#[test]
fn every_route_rule_matches_exactly_the_events_of_its_own_status() {
    let table = route_table();
    let source = table["source"].as_str().expect("source");
    let routes = table["routes"].as_array().expect("routes");
    assert!(!routes.is_empty());
    // The brief's statuses; a rule must pick out its own among them.
    let statuses = ["received", "inprocess", "completed", "canceled"];
    for route in routes {
        let own = route["status"].as_str().expect("status");
        let rule = EventPattern::parse(&route["eventPattern"])
            .unwrap_or_else(|e| panic!("rule {}: {e}", route["rule"]));
        assert!(statuses.contains(&own), "route for an unknown status {own}");
        for status in statuses {
            for detail_type in DETAIL_TYPES {
                let event = order_event(source, detail_type, status);
                assert_eq!(
                    rule.matches(&event),
                    status == own,
                    "rule {} on a {detail_type} event with status {status}",
                    route["rule"]
                );
            }
        }
    }
}

#[test]
fn route_rules_ignore_other_sources_and_malformed_details() {
    let table = route_table();
    for route in table["routes"].as_array().expect("routes") {
        let rule = pattern(&route["eventPattern"]);
        let status = route["status"].as_str().expect("status");
        assert!(!rule.matches(&order_event("someone.else", "OrderPlaced", status)));
        assert!(!rule.matches(&order_event(
            "ordersource.orders.replica",
            "OrderPlaced",
            status
        )));

        let mut upper = order_event("ordersource.orders", "OrderPlaced", status);
        upper["detail"]["order"]["status"] = json!(status.to_uppercase());
        assert!(!rule.matches(&upper), "statuses are case-sensitive");

        let mut no_order = order_event("ordersource.orders", "OrderPlaced", status);
        if let Some(detail) = no_order["detail"].as_object_mut() {
            detail.remove("order");
        }
        assert!(
            !rule.matches(&no_order),
            "the envelope's status alone does not count"
        );

        let mut string_detail = order_event("ordersource.orders", "OrderPlaced", status);
        string_detail["detail"] = json!(string_detail["detail"].to_string());
        assert!(
            !rule.matches(&string_detail),
            "a detail left as a JSON string does not match"
        );
    }
}
