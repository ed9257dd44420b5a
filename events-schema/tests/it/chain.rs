//! The hash chain: recomputable by outsiders, and broken by any change to a stored event.

use crate::support::*;
use events_schema::*;
use sha2::{Digest, Sha256};

fn sample() -> History {
    History::given(&[
        place("Mantenimiento básico ✓"),
        Command::Start,
        Command::Complete,
    ])
}

#[test]
fn first_event_links_to_sixty_four_zeros_and_each_next_to_the_previous_hash() {
    let h = sample();
    let envs = h.envelopes();
    assert_eq!(envs[0].prev_hash.to_string(), GENESIS_HASH);
    for pair in envs.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
}

#[test]
fn the_hash_is_sha256_of_the_jcs_canonical_envelope_without_hash() {
    // Recomputed the way the README tells an outside auditor to: drop `hash`, sort keys,
    // no whitespace, then SHA-256. Keys here are ASCII, so sorting by bytes equals JCS order.
    for raw in sample().raw() {
        let mut v: serde_json::Value = serde_json::from_str(&raw).expect("json");
        let stored = v["hash"].as_str().expect("hash").to_owned();
        v.as_object_mut().expect("object").remove("hash");
        let canonical = serde_json::to_string(&v).expect("json"); // BTreeMap: sorted keys
        assert_eq!(hex::encode(Sha256::digest(canonical.as_bytes())), stored);
    }
}

#[test]
fn an_untouched_history_verifies_clean() {
    let raw = sample().raw();
    assert_eq!(verify_chain(raw.iter().map(String::as_str)), vec![]);
}

#[test]
fn changing_one_byte_of_an_events_data_is_detected_at_that_version() {
    let mut raw = sample().raw();
    raw[0] = raw[0].replace("básico", "básicp");
    let breaks = verify_chain(raw.iter().map(String::as_str));
    assert!(
        matches!(
            breaks.as_slice(),
            [ChainBreak::HashMismatch { version: 1, .. }]
        ),
        "{breaks:?}"
    );
}

#[test]
fn every_single_byte_change_anywhere_is_detected() {
    let raw = sample().raw();
    for (i, event) in raw.iter().enumerate() {
        for pos in 0..event.len() {
            if !event.is_char_boundary(pos) || !event.is_char_boundary(pos + 1) {
                continue;
            }
            let original = event.as_bytes()[pos];
            let replacement = if original == b'1' { b'2' } else { b'1' };
            let mut bytes = event.clone().into_bytes();
            bytes[pos] = replacement;
            let Ok(tampered) = String::from_utf8(bytes) else {
                continue;
            };
            let mut copy = raw.clone();
            copy[i] = tampered;
            let breaks = verify_chain(copy.iter().map(String::as_str));
            // Whitespace between tokens is the one thing JSON lets change without meaning;
            // serde_json writes none, so every position is significant.
            assert!(
                !breaks.is_empty(),
                "change at event {i} byte {pos} went unnoticed"
            );
        }
    }
}

#[test]
fn a_missing_event_is_a_version_gap() {
    let mut raw = sample().raw();
    raw.remove(1);
    let breaks = verify_chain(raw.iter().map(String::as_str));
    assert!(breaks.iter().any(|b| matches!(
        b,
        ChainBreak::VersionGap {
            expected: 2,
            found: 3
        }
    )));
    assert!(
        breaks
            .iter()
            .any(|b| matches!(b, ChainBreak::PrevHashMismatch { version: 3, .. }))
    );
}
