//! One order's verdict, as `orders audit verify` gives it: versions gapless from 1, every
//! `hash` recomputed from the canonical envelope, every `prevHash` linked to the previous
//! `hash`, the stored key equal to the envelope's, the state stored with each event equal
//! to the fold of the events, and the read model row equal to the fold at its version.
//!
//! Each history takes a fast path that gives the verdict of [`verify_chain`] (the reference
//! check over the raw JSON) without its generic JSON round trip: when the stored text has
//! exactly the members of the canonical form of its parse, byte for byte, plus `hash`, the
//! canonical form computed from the typed envelope is the RFC 8785 form of that text (a
//! property test in `chain` pins this). Any difference, however small, sends the whole
//! order through `verify_chain` itself.
//!
//! The read model lags the events by design; a lagging row is not a problem. Where the
//! backend says how far the projector got ([`Projected::Through`]), only events past that
//! point may be missing from the read model; elsewhere [`Checked::recheck`] asks the caller
//! to read the order again.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, de};
use serde_json::value::RawValue;

use super::{Projected, ProjectedOrder, RawEvent};
use crate::{
    chain::{ChainBreak, ChainHash, canonical, hash_of_canonical, verify_chain},
    event::Envelope,
    order::{Order, evolve},
};

/// A property of the stored data that does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Property {
    /// Versions do not run 1, 2, 3, ... without gaps.
    VersionGap,
    /// The stored `hash` is not the hash of the canonical envelope.
    Hash,
    /// The `prevHash` is not the previous event's `hash`.
    PrevHash,
    /// The stored text is not a readable envelope.
    Unreadable,
    /// The key the event is stored under is not the envelope's order id and version.
    Key,
    /// The history cannot be folded into a state.
    Fold,
    /// The state stored with an event is not the fold of the events up to it.
    StateSnapshot,
    /// The read model's row is not the fold of the events up to its version.
    ReadModel,
    /// The read model has no row for an order whose events were projected.
    ReadModelMissing,
    /// The read model's row is older than events that were projected.
    ReadModelBehind,
    /// The read model has a row for an order without events.
    ReadModelOrphan,
}

impl Property {
    /// The property's name in reports (kebab-case, as in `--json`).
    pub fn name(self) -> &'static str {
        match self {
            Property::VersionGap => "version-gap",
            Property::Hash => "hash",
            Property::PrevHash => "prev-hash",
            Property::Unreadable => "unreadable",
            Property::Key => "key",
            Property::Fold => "fold",
            Property::StateSnapshot => "state-snapshot",
            Property::ReadModel => "read-model",
            Property::ReadModelMissing => "read-model-missing",
            Property::ReadModelBehind => "read-model-behind",
            Property::ReadModelOrphan => "read-model-orphan",
        }
    }
}

/// One problem: which order, which version (when it is about one event), what property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub order_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub property: Property,
    pub detail: String,
}

impl Finding {
    fn new(order_id: &str, version: Option<u64>, property: Property, detail: String) -> Self {
        Self {
            order_id: order_id.to_owned(),
            version,
            property,
            detail,
        }
    }
}

/// `order <id>, version <n>: <property>: <detail>` (or `order <id>: ...` when the problem
/// is not about one event).
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order {}", self.order_id)?;
        if let Some(v) = self.version {
            write!(f, ", version {v}")?;
        }
        write!(f, ": {}: {}", self.property.name(), self.detail)
    }
}

/// The verdict on one order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checked {
    pub findings: Vec<Finding>,
    /// Events the projector has not applied yet (not a problem).
    pub pending: u64,
    /// The read model could not be judged against this read; read both again.
    pub recheck: bool,
}

fn from_break(order_id: &str, b: ChainBreak) -> Finding {
    match b {
        ChainBreak::VersionGap { expected, found } => Finding::new(
            order_id,
            Some(found),
            Property::VersionGap,
            format!(
                "version {found} where version {expected} was expected (versions run 1, 2, 3, ... without gaps)"
            ),
        ),
        ChainBreak::HashMismatch {
            version,
            stored,
            computed,
        } => Finding::new(
            order_id,
            Some(version),
            Property::Hash,
            format!(
                "stored hash {stored} is not the recomputed {computed}: the event changed after it was written"
            ),
        ),
        ChainBreak::PrevHashMismatch {
            version,
            expected,
            found,
        } => Finding::new(
            order_id,
            Some(version),
            Property::PrevHash,
            format!("prevHash {found} is not the previous event's hash {expected}"),
        ),
        ChainBreak::Unreadable { index, reason } => Finding::new(
            order_id,
            Some(index as u64),
            Property::Unreadable,
            format!("not a readable envelope: {reason}"),
        ),
    }
}

/// The fast path: every envelope parsed, its stored text exactly the canonical form of the
/// parse plus the `hash` member (members compared byte for byte, in any order), keys,
/// versions and links right, and every hash recomputed from those canonical bytes. `None`
/// as soon as anything differs (then [`verify_chain`] decides).
///
/// Why this is `verify_chain`'s verdict: the stored object minus `hash` then has exactly
/// the members of the canonical form, each with the same bytes; so its RFC 8785 form is
/// the canonical form (which a property test in events-schema pins to a generic JCS
/// encoder), and so is the hash `verify_chain` computes.
fn fast_chain(order_id: &str, events: &[RawEvent]) -> Option<Vec<Envelope>> {
    let mut prev = ChainHash::GENESIS;
    let mut envelopes = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let envelope: Envelope = serde_json::from_str(&e.envelope).ok()?;
        let canonical = canonical(&envelope);
        let intact = envelope.version == i as u64 + 1
            && envelope.version == e.version
            && envelope.order_id.as_str() == order_id
            && e.order_id == order_id
            && envelope.prev_hash == prev
            && is_canonical_with_hash(&e.envelope, &canonical)
            && hash_of_canonical(&canonical) == envelope.hash;
        if !intact {
            return None;
        }
        prev = envelope.hash;
        envelopes.push(envelope);
    }
    Some(envelopes)
}

/// Whether `stored` is a compact JSON object with exactly the members of `canonical` (a
/// compact object), each with the same bytes, plus one `hash` member holding a plain
/// 64-character string.
/// Whether `stored` is a JSON object with exactly the members of `canonical` (a compact
/// object, members in RFC 8785 order), each value with the same bytes, plus one `hash`
/// member holding a plain 64-character string. Whitespace between members does not matter
/// (RFC 8785 drops it); an escaped member name, a repeated member or any other difference
/// is a `false`.
fn is_canonical_with_hash(stored: &str, canonical: &[u8]) -> bool {
    let Ok(Members(mut members)) = serde_json::from_str::<Members>(stored) else {
        return false;
    };
    let Some(at) = members.iter().position(|(name, _)| *name == "hash") else {
        return false;
    };
    let hash = members.swap_remove(at).1.get();
    if hash.len() != 66 || hash.contains('\\') {
        return false;
    }
    // The rest, in RFC 8785 order (for the ASCII names an envelope has, byte order), written
    // compactly, must be the canonical bytes: compared piece by piece, without a copy. A
    // second `hash` or any other repeated name makes it longer than the canonical form.
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut rest = canonical;
    let mut eat = |piece: &[u8]| match rest.strip_prefix(piece) {
        Some(after) => {
            rest = after;
            true
        }
        None => false,
    };
    if !eat(b"{") {
        return false;
    }
    for (i, (name, value)) in members.iter().enumerate() {
        let separator: &[u8] = if i == 0 { b"\"" } else { b",\"" };
        if !(eat(separator) && eat(name.as_bytes()) && eat(b"\":") && eat(value.get().as_bytes())) {
            return false;
        }
    }
    eat(b"}") && rest.is_empty()
}

/// A JSON object's members in document order, repeats kept, each value's text as written.
/// Names are borrowed, so a name written with an escape fails to parse (the caller then
/// takes the reference path).
struct Members<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> de::Visitor<'de> for Visitor<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: de::MapAccess<'de>>(self, mut map: M) -> Result<Members<'a>, M::Error> {
                let mut out = Vec::with_capacity(12);
                while let Some(member) = map.next_entry::<&'de str, &'de RawValue>()? {
                    out.push(member);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// The reference path, for an order the fast path did not clear.
fn slow_chain(
    order_id: &str,
    events: &[RawEvent],
    findings: &mut Vec<Finding>,
) -> Vec<Option<Envelope>> {
    findings.extend(
        verify_chain(events.iter().map(|e| e.envelope.as_str()))
            .into_iter()
            .map(|b| from_break(order_id, b)),
    );
    events
        .iter()
        .map(|e| {
            let envelope = serde_json::from_str::<Envelope>(&e.envelope).ok()?;
            if envelope.order_id.as_str() != e.order_id || envelope.version != e.version {
                findings.push(Finding::new(
                    order_id,
                    Some(e.version),
                    Property::Key,
                    format!(
                        "stored under order {} version {}, but the envelope says order {} version {}",
                        e.order_id, e.version, envelope.order_id, envelope.version
                    ),
                ));
            }
            Some(envelope)
        })
        .collect()
}

/// The hash chain's verdict on one order's stored events (in version order): versions
/// gapless from 1, hashes, links, each event stored under its own key. Returns each event's
/// envelope, `None` where it is not a readable one.
fn chain(
    order_id: &str,
    events: &[RawEvent],
    findings: &mut Vec<Finding>,
) -> Vec<Option<Envelope>> {
    match fast_chain(order_id, events) {
        Some(envelopes) => envelopes.into_iter().map(Some).collect(),
        None => slow_chain(order_id, events, findings),
    }
}

/// The problems of an order's stored events (in version order) as a hash chain alone:
/// [`Property::VersionGap`], [`Property::Hash`], [`Property::PrevHash`],
/// [`Property::Unreadable`] and [`Property::Key`] findings, as [`check_order`] finds them.
pub fn chain_findings(order_id: &str, events: &[RawEvent]) -> Vec<Finding> {
    let mut findings = Vec::new();
    chain(order_id, events, &mut findings);
    findings
}

/// The top-level fields in which two orders differ, e.g. `status ("completed" ≠ "canceled")`.
fn differences(expected: &Order, found: &Order) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(expected), serde_json::to_value(found))
    else {
        return "they differ".into();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show =
                |v: Option<&serde_json::Value>| v.map_or("absent".to_owned(), ToString::to_string);
            format!("{k} (fold {}, stored {})", show(a.get(k)), show(b.get(k)))
        })
        .collect();
    if diffs.is_empty() {
        "they differ".into()
    } else {
        diffs.join(", ")
    }
}

/// Whether `stored` (JSON text) is `state`, given `state` serialized: byte for byte as
/// written, or, when the text is formatted otherwise, as a value.
fn same_state(state: &Order, serialized: &[u8], stored: &str) -> Result<(), String> {
    if serialized == stored.as_bytes() {
        return Ok(());
    }
    match serde_json::from_str::<Order>(stored) {
        Ok(found) if found == *state => Ok(()),
        Ok(found) => Err(differences(state, &found)),
        Err(e) => Err(format!("not a readable order: {e}")),
    }
}

/// The version of a read model row (its `version` member), without parsing the rest.
fn row_version(body: &str) -> Result<u64, String> {
    #[derive(Deserialize)]
    struct Row {
        version: u64,
    }
    match serde_json::from_str::<Row>(body) {
        Ok(row) => Ok(row.version),
        Err(_) => serde_json::from_str::<Order>(body)
            .map(|o| o.version)
            .map_err(|e| format!("the read model's row is not a readable order: {e}")),
    }
}

/// Checks one order's stored history and its read model row. `last_try` turns a read that
/// cannot be judged (see [`Checked::recheck`]) into a problem.
pub fn check_order(
    order_id: &str,
    events: &[RawEvent],
    projected: Option<&ProjectedOrder>,
    mark: Projected,
    last_try: bool,
) -> Checked {
    let mut out = Checked::default();
    let row = projected.map(|p| row_version(&p.body).map(|v| (v, p.body.as_str())));
    if events.is_empty() {
        if let Some(row) = row {
            if last_try {
                out.findings.push(Finding::new(
                    order_id,
                    row.ok().map(|(v, _)| v),
                    Property::ReadModelOrphan,
                    "the read model has this order, but the event store has no events for it"
                        .into(),
                ));
            } else {
                out.recheck = true;
            }
        }
        return out;
    }
    let envelopes = chain(order_id, events, &mut out.findings);

    // Fold, checking the state stored with each event and, at its version, the read model.
    let row_version = row.as_ref().and_then(|r| r.as_ref().ok()).map(|(v, _)| *v);
    let mut buf = Vec::with_capacity(1024);
    let mut state: Option<Order> = None;
    let mut at_row: Option<Result<(), String>> = None;
    let mut folded = 0u64;
    for (e, envelope) in events.iter().zip(&envelopes) {
        let Some(envelope) = envelope else {
            out.findings.push(Finding::new(
                order_id,
                Some(e.version),
                Property::Fold,
                "cannot fold past this event: not a readable envelope".into(),
            ));
            break;
        };
        match evolve(state.as_ref(), envelope) {
            Ok(next) => state = Some(next),
            Err(err) => {
                out.findings.push(Finding::new(
                    order_id,
                    Some(envelope.version),
                    Property::Fold,
                    err.to_string(),
                ));
                break;
            }
        }
        let Some(s) = &state else { break };
        buf.clear();
        let _ = serde_json::to_writer(&mut buf, s);
        if let Err(diff) = same_state(s, &buf, &e.order_state) {
            out.findings.push(Finding::new(
                order_id,
                Some(envelope.version),
                Property::StateSnapshot,
                format!("the state stored with the event is not the fold of the events: {diff}"),
            ));
        }
        folded += 1;
        if Some(s.version) == row_version
            && let Some(Ok((_, body))) = &row
        {
            at_row = Some(same_state(s, &buf, body));
        }
    }

    // The read model, against what the projector is known to have applied.
    let n = events.len() as u64;
    let settled = match mark {
        Projected::Through(c) => events
            .iter()
            .filter(|e| e.position.is_none_or(|p| p <= c))
            .count() as u64,
        Projected::Unknown => n,
    };
    let exact = matches!(mark, Projected::Through(_));
    match row {
        None if settled == 0 => out.pending = n,
        None if exact || last_try => out.findings.push(Finding::new(
            order_id,
            Some(settled),
            Property::ReadModelMissing,
            format!("the read model has no row for this order, though its events through version {settled} were projected"),
        )),
        None => out.recheck = true,
        Some(Err(reason)) => out.findings.push(Finding::new(
            order_id,
            None,
            Property::ReadModel,
            reason,
        )),
        Some(Ok((version, _))) if version > n => {
            if last_try {
                out.findings.push(Finding::new(
                    order_id,
                    Some(version),
                    Property::ReadModel,
                    format!("the read model is at version {version}, beyond the latest event (version {n})"),
                ));
            } else {
                out.recheck = true; // events appended since the history was read
            }
        }
        Some(Ok((version, _))) => {
            match at_row {
                Some(Err(diff)) => out.findings.push(Finding::new(
                    order_id,
                    Some(version),
                    Property::ReadModel,
                    format!("the read model's row is not the fold of the events: {diff}"),
                )),
                Some(Ok(())) => {}
                // The fold stopped before the row's version: already reported.
                None if folded < version => {}
                None => out.findings.push(Finding::new(
                    order_id,
                    Some(version),
                    Property::ReadModel,
                    format!("the read model is at version {version}, which no event has"),
                )),
            }
            if version < settled {
                if exact || last_try {
                    out.findings.push(Finding::new(
                        order_id,
                        Some(settled),
                        Property::ReadModelBehind,
                        format!("the read model is at version {version}, though version {settled} was projected"),
                    ));
                } else {
                    out.recheck = true;
                }
            } else {
                out.pending = n - version;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! The verdicts of [`check_order`] on histories built with the real `record` and
    //! serialized as the event store writes them, then damaged one way at a time.

    use super::*;
    use crate::{
        Description,
        audit::fixtures::{history, row, stored},
    };

    fn properties(c: &Checked) -> Vec<(Option<u64>, Property)> {
        c.findings.iter().map(|f| (f.version, f.property)).collect()
    }

    const ALL: Projected = Projected::Through(u64::MAX);

    #[test]
    fn an_intact_history_with_its_read_model_row_is_clean() {
        let h = history("ORD-1");
        let c = check_order("ORD-1", &stored(&h), Some(&row(&h[2].order)), ALL, false);
        assert_eq!(c, Checked::default());
    }

    #[test]
    fn every_single_byte_change_in_an_events_data_is_detected_at_its_version() {
        let h = history("ORD-1");
        let clean = stored(&h);
        let text = &clean[0].envelope;
        let data_at = text.find("\"data\":").unwrap();
        let data_end = data_at + text[data_at..].find('}').unwrap();
        for at in data_at..data_end {
            let mut damaged = clean.clone();
            let mut bytes = damaged[0].envelope.clone().into_bytes();
            bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
            let Ok(s) = String::from_utf8(bytes) else {
                continue;
            };
            damaged[0].envelope = s;
            let c = check_order("ORD-1", &damaged, Some(&row(&h[2].order)), ALL, false);
            assert!(
                c.findings.iter().any(|f| f.version == Some(1)),
                "byte {at} changed and nothing found: {:?}",
                c.findings
            );
        }
    }

    #[test]
    fn a_changed_description_is_a_hash_break_a_wrong_snapshot_and_a_wrong_read_model() {
        let h = history("ORD-1");
        let mut s = stored(&h);
        s[0].envelope = s[0].envelope.replace("Mantenimiento", "Mantenimiente");
        let c = check_order("ORD-1", &s, Some(&row(&h[2].order)), ALL, false);
        let props = properties(&c);
        assert!(props.contains(&(Some(1), Property::Hash)), "{props:?}");
        assert!(
            props.contains(&(Some(1), Property::StateSnapshot)),
            "{props:?}"
        );
        assert!(props.contains(&(Some(3), Property::ReadModel)), "{props:?}");
    }

    #[test]
    fn a_removed_event_is_a_version_gap_and_a_broken_link() {
        let h = history("ORD-1");
        let mut s = stored(&h);
        s.remove(1);
        let c = check_order("ORD-1", &s, Some(&row(&h[2].order)), ALL, false);
        let props = properties(&c);
        assert!(
            props.contains(&(Some(3), Property::VersionGap)),
            "{props:?}"
        );
        assert!(props.contains(&(Some(3), Property::PrevHash)), "{props:?}");
    }

    #[test]
    fn a_changed_state_snapshot_alone_is_named() {
        let h = history("ORD-1");
        let mut s = stored(&h);
        s[1].order_state = s[1].order_state.replace("inprocess", "completed");
        let c = check_order("ORD-1", &s, Some(&row(&h[2].order)), ALL, false);
        assert_eq!(properties(&c), vec![(Some(2), Property::StateSnapshot)]);
        assert!(c.findings[0].detail.contains("status"), "{:?}", c.findings);
    }

    #[test]
    fn an_event_under_another_key_is_named() {
        let h = history("ORD-1");
        let mut s = stored(&h);
        s[2].version = 4;
        let c = check_order("ORD-1", &s, Some(&row(&h[2].order)), ALL, false);
        assert!(
            properties(&c).contains(&(Some(4), Property::Key)),
            "{:?}",
            c.findings
        );
    }

    #[test]
    fn a_read_model_row_that_differs_at_its_version_is_named_with_the_field() {
        let h = history("ORD-1");
        let mut wrong = h[2].order.clone();
        wrong.description = Description::parse("something else").unwrap();
        let c = check_order("ORD-1", &stored(&h), Some(&row(&wrong)), ALL, false);
        assert_eq!(properties(&c), vec![(Some(3), Property::ReadModel)]);
        assert!(
            c.findings[0].detail.contains("description"),
            "{:?}",
            c.findings
        );
    }

    #[test]
    fn an_unreadable_read_model_row_is_named() {
        let h = history("ORD-1");
        let bad = ProjectedOrder {
            order_id: "ORD-1".into(),
            body: "{\"orderId\":".into(),
        };
        let c = check_order("ORD-1", &stored(&h), Some(&bad), ALL, false);
        assert_eq!(properties(&c), vec![(None, Property::ReadModel)]);
    }

    #[test]
    fn a_read_model_behind_unprojected_events_is_pending_not_a_problem() {
        let h = history("ORD-1");
        // Projected through position 1: versions 2 and 3 are not applied yet.
        let c = check_order(
            "ORD-1",
            &stored(&h),
            Some(&row(&h[0].order)),
            Projected::Through(1),
            false,
        );
        assert_eq!(c.findings, vec![]);
        assert_eq!(c.pending, 2);
        let c = check_order("ORD-1", &stored(&h), None, Projected::Through(0), false);
        assert_eq!((c.findings.len(), c.pending), (0, 3));
    }

    #[test]
    fn a_read_model_behind_projected_events_is_a_problem() {
        let h = history("ORD-1");
        let c = check_order(
            "ORD-1",
            &stored(&h),
            Some(&row(&h[0].order)),
            Projected::Through(3),
            false,
        );
        assert_eq!(properties(&c), vec![(Some(3), Property::ReadModelBehind)]);
        let c = check_order("ORD-1", &stored(&h), None, Projected::Through(2), false);
        assert_eq!(properties(&c), vec![(Some(2), Property::ReadModelMissing)]);
    }

    #[test]
    fn without_a_projector_position_a_lagging_row_is_read_again_before_it_counts() {
        let h = history("ORD-1");
        let c = check_order(
            "ORD-1",
            &stored(&h),
            Some(&row(&h[0].order)),
            Projected::Unknown,
            false,
        );
        assert!(c.recheck && c.findings.is_empty());
        let c = check_order(
            "ORD-1",
            &stored(&h),
            Some(&row(&h[0].order)),
            Projected::Unknown,
            true,
        );
        assert_eq!(properties(&c), vec![(Some(3), Property::ReadModelBehind)]);
    }

    #[test]
    fn a_row_newer_than_the_history_read_is_read_again_and_a_row_without_events_is_an_orphan() {
        let h = history("ORD-1");
        let c = check_order(
            "ORD-1",
            &stored(&h[..2]),
            Some(&row(&h[2].order)),
            ALL,
            false,
        );
        assert!(c.recheck && c.findings.is_empty());
        let c = check_order("ORD-1", &[], Some(&row(&h[2].order)), ALL, false);
        assert!(c.recheck);
        let c = check_order("ORD-1", &[], Some(&row(&h[2].order)), ALL, true);
        assert_eq!(properties(&c), vec![(Some(3), Property::ReadModelOrphan)]);
    }

    #[test]
    fn a_member_the_typed_parse_would_ignore_is_still_a_hash_break() {
        let h = history("ORD-1");
        let mut s = stored(&h);
        s[1].envelope = s[1]
            .envelope
            .replacen("\"hash\":", "\"extra\":1,\"hash\":", 1);
        assert!(serde_json::from_str::<Envelope>(&s[1].envelope).is_ok());
        let c = check_order("ORD-1", &s, Some(&row(&h[2].order)), ALL, false);
        assert_eq!(properties(&c), vec![(Some(2), Property::Hash)]);
    }

    #[test]
    fn a_stored_envelope_must_have_the_canonical_members_plus_one_hash() {
        let canonical = br#"{"a":1,"b":"x"}"#;
        let hash = format!("\"{}\"", "0".repeat(64));
        let ok = format!(r#"{{"b":"x","a":1,"hash":{hash}}}"#);
        assert!(is_canonical_with_hash(&ok, canonical));
        for bad in [
            format!(r#"{{"b":"x","a":2,"hash":{hash}}}"#),
            format!(r#"{{"b":"x","hash":{hash}}}"#),
            format!(r#"{{"b":"x","b":"x","hash":{hash}}}"#),
            format!(r#"{{"b":"x","a":1,"hash":{hash},"hash":{hash}}}"#),
            r#"{"b":"x","a":1,"hash":"short"}"#.to_owned(),
            format!(r#"{{"b":"x","a":1,"c":0,"hash":{hash}}}"#),
        ] {
            assert!(!is_canonical_with_hash(&bad, canonical), "{bad}");
        }
        // Whitespace between members is not part of the canonical form; an escaped
        // name or anything but an object sends the order to the reference path.
        let spaced = format!(r#"{{ "b" : "x" ,"a":1, "hash":{hash} }}"#);
        assert!(is_canonical_with_hash(&spaced, canonical));
        for other in [
            format!(r#"{{"\u0062":"x","a":1,"hash":{hash}}}"#),
            format!(r#"{{"b":"x","a":1.0,"hash":{hash}}}"#),
            format!("[{hash}]"),
            format!(r#"{{"b":"x","a":1,"hash":{hash}}} x"#),
        ] {
            assert!(!is_canonical_with_hash(&other, canonical), "{other}");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_verify_chain_on_intact_and_reformatted_histories() {
        let h = history("ORD-1");
        let s = stored(&h);
        assert!(fast_chain("ORD-1", &s).is_some());
        assert!(verify_chain(s.iter().map(|e| e.envelope.as_str())).is_empty());
        // Same values, other formatting: the fast path defers, verify_chain accepts it.
        let mut pretty = s.clone();
        pretty[0].envelope = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&s[0].envelope).unwrap(),
        )
        .unwrap();
        assert!(fast_chain("ORD-1", &pretty).is_none());
        let c = check_order("ORD-1", &pretty, Some(&row(&h[2].order)), ALL, false);
        assert_eq!(c, Checked::default());
    }
}
