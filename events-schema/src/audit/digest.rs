//! The store digest: a Merkle root over every order's head that makes truncation evident.
//!
//! A hash chain proves each event links to the one before it, but a history whose last
//! events were deleted is still a valid chain. The digest records, at a moment, every
//! order's head (order id, version, head event hash) and a root over them; kept elsewhere,
//! the root lets an auditor later prove that every event it covers is still stored, and
//! unchanged ([`check_covered`]).
//!
//! Encoding (RFC 6962's Merkle Tree Hash, SHA-256, over leaves sorted by order id bytewise):
//!
//! - leaf data: the UTF-8 bytes of `<orderId> <version> <hash>` (one space between; the
//!   version in decimal without leading zeros, the head event's `hash` as 64 lowercase hex
//!   digits), e.g. `ORD-1 3 5e9c…`;
//! - leaf hash: `SHA-256(0x00 || leaf data)`;
//! - node hash: `SHA-256(0x01 || left || right)` over the two 32-byte child hashes;
//! - the root of n > 1 leaves is the node over the root of the first k leaves and the root
//!   of the remaining n − k, where k is the largest power of two smaller than n (so an odd
//!   leaf is never duplicated); the root of one leaf is its leaf hash; the root of no
//!   leaves is `SHA-256("")`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Property, RawEvent, chain_findings};
use crate::chain::ChainHash;

/// What a digest file says it is, so that another JSON file is refused by name.
pub const DIGEST_FORMAT: &str = "ordersource-audit-digest";
/// The digest file's layout; a reader refuses versions it does not know.
pub const DIGEST_FORMAT_VERSION: u32 = 1;

/// One order's head at the moment of the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Leaf {
    pub order_id: String,
    /// The head's version: the digest covers versions `1..=version`.
    pub version: u64,
    /// The head event's `hash`.
    pub hash: ChainHash,
}

/// The leaf data: `<orderId> <version> <hash>` (see the module docs).
pub fn leaf_data(leaf: &Leaf) -> Vec<u8> {
    format!("{} {} {}", leaf.order_id, leaf.version, leaf.hash).into_bytes()
}

/// `SHA-256(0x00 || leaf data)`.
pub fn leaf_hash(leaf: &Leaf) -> ChainHash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf_data(leaf));
    ChainHash::from_bytes(h.finalize().into())
}

fn node_hash(left: &ChainHash, right: &ChainHash) -> ChainHash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.as_bytes());
    h.update(right.as_bytes());
    ChainHash::from_bytes(h.finalize().into())
}

/// The Merkle root over `leaves`, in the order given (a digest sorts them by order id).
pub fn merkle_root(leaves: &[Leaf]) -> ChainHash {
    fn root(hashes: &[ChainHash]) -> ChainHash {
        match hashes.len() {
            0 => ChainHash::from_bytes(Sha256::digest([]).into()),
            1 => hashes[0],
            n => {
                // The largest power of two below n.
                let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&root(&hashes[..k]), &root(&hashes[k..]))
            }
        }
    }
    let hashes: Vec<ChainHash> = leaves.iter().map(leaf_hash).collect();
    root(&hashes)
}

/// What a digest file holds: the root, the leaves it is computed from (so that a
/// verification can name the order where something is missing) and the counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DigestFile {
    /// [`DIGEST_FORMAT`].
    pub format: String,
    /// [`DIGEST_FORMAT_VERSION`].
    pub format_version: u32,
    /// When the reading of the store began.
    pub created_at: DateTime<Utc>,
    /// `embedded` or `aws`.
    pub backend: String,
    /// How long reading the store took.
    pub seconds: f64,
    /// The Merkle root over `leaves`.
    pub root: ChainHash,
    /// `leaves.len()`.
    pub orders: u64,
    /// The events covered: the sum of the leaves' versions.
    pub events: u64,
    /// Every order's head, sorted by order id (bytewise).
    pub leaves: Vec<Leaf>,
}

/// Why a digest file cannot be trusted, or cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("not a digest file: {0}")]
    Unreadable(String),
    #[error("not a digest file: its format is {found:?}, not {DIGEST_FORMAT:?}")]
    Format { found: String },
    #[error(
        "digest format version {found} is not supported (this program reads version {DIGEST_FORMAT_VERSION})"
    )]
    FormatVersion { found: u32 },
    #[error(
        "the digest's leaves are not sorted by order id at leaf {index} (order {order_id}): the file was changed"
    )]
    Unsorted { index: usize, order_id: String },
    #[error("leaf {index} (order {order_id}) has version 0: the file was changed")]
    VersionZero { index: usize, order_id: String },
    #[error("the digest says {stated} {what}, its leaves make {counted}: the file was changed")]
    Count {
        what: &'static str,
        stated: u64,
        counted: u64,
    },
    #[error(
        "the digest's leaves hash to root {computed}, not to the root {stated} it states: the file was changed"
    )]
    Root {
        stated: ChainHash,
        computed: ChainHash,
    },
    #[error(
        "the digest's root {stated} is not the root {given} you kept: the file is not the one that root was taken from"
    )]
    Kept { stated: ChainHash, given: ChainHash },
}

impl DigestFile {
    /// A digest of `leaves` (sorted here), read from the store from `created_at` on.
    pub fn new(
        mut leaves: Vec<Leaf>,
        created_at: DateTime<Utc>,
        backend: &str,
        seconds: f64,
    ) -> Self {
        leaves.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
        Self {
            format: DIGEST_FORMAT.to_owned(),
            format_version: DIGEST_FORMAT_VERSION,
            created_at,
            backend: backend.to_owned(),
            seconds,
            root: merkle_root(&leaves),
            orders: leaves.len() as u64,
            events: leaves.iter().map(|l| l.version).sum(),
            leaves,
        }
    }

    /// Reads a digest file's text, refusing other formats and versions by name.
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Header {
            format: String,
            format_version: u32,
        }
        let header: Header =
            serde_json::from_str(text).map_err(|e| DigestError::Unreadable(e.to_string()))?;
        if header.format != DIGEST_FORMAT {
            return Err(DigestError::Format {
                found: header.format,
            });
        }
        if header.format_version != DIGEST_FORMAT_VERSION {
            return Err(DigestError::FormatVersion {
                found: header.format_version,
            });
        }
        serde_json::from_str(text).map_err(|e| DigestError::Unreadable(e.to_string()))
    }

    /// Checks that the leaves are the ones the root was computed from (sorted, counted,
    /// hashing to `root`), and that `root` is `kept` when the auditor gives the root kept
    /// elsewhere.
    pub fn check(&self, kept: Option<&ChainHash>) -> Result<(), DigestError> {
        for (index, pair) in self.leaves.windows(2).enumerate() {
            if pair[0].order_id >= pair[1].order_id {
                return Err(DigestError::Unsorted {
                    index: index + 1,
                    order_id: pair[1].order_id.clone(),
                });
            }
        }
        if let Some((index, leaf)) = self.leaves.iter().enumerate().find(|(_, l)| l.version == 0) {
            return Err(DigestError::VersionZero {
                index,
                order_id: leaf.order_id.clone(),
            });
        }
        let counted = self.leaves.len() as u64;
        if self.orders != counted {
            return Err(DigestError::Count {
                what: "orders",
                stated: self.orders,
                counted,
            });
        }
        let counted = self.leaves.iter().map(|l| l.version).sum();
        if self.events != counted {
            return Err(DigestError::Count {
                what: "events",
                stated: self.events,
                counted,
            });
        }
        let computed = merkle_root(&self.leaves);
        if computed != self.root {
            return Err(DigestError::Root {
                stated: self.root,
                computed,
            });
        }
        match kept {
            Some(given) if *given != self.root => Err(DigestError::Kept {
                stated: self.root,
                given: *given,
            }),
            _ => Ok(()),
        }
    }
}

/// An order's head as the digest takes it, or why it cannot be taken.
pub type Head = Result<Leaf, String>;

/// The head of one order's stored events (in version order): the last event's key version
/// and its envelope's `hash` member, as stored. `None` for an order without events.
pub fn head_of(order_id: &str, events: &[RawEvent]) -> Option<Head> {
    #[derive(Deserialize)]
    struct Hashed {
        hash: ChainHash,
    }
    let last = events.last()?;
    Some(
        serde_json::from_str::<Hashed>(&last.envelope)
            .map(|h| Leaf {
                order_id: order_id.to_owned(),
                version: last.version,
                hash: h.hash,
            })
            .map_err(|e| format!("version {}: no readable hash: {e}", last.version)),
    )
}

/// What a verification against a digest found wrong with a covered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigestProblem {
    /// Covered versions the store no longer holds.
    Missing,
    /// A covered event whose stored bytes are not the ones the digest sealed.
    Changed,
}

/// One covered event (or run of missing events) that is not as the digest sealed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestFinding {
    pub order_id: String,
    pub problem: DigestProblem,
    /// The (first) version concerned.
    pub version: u64,
    /// The last version of a run of missing versions, when more than one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub through: Option<u64>,
    /// The versions the digest covers: `1..=covered`.
    pub covered: u64,
    pub detail: String,
}

/// `order X: version 7 missing (digest covers 1..=9)`, `order X: version 3 changed: ...`.
impl fmt::Display for DigestFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.problem, self.through) {
            (DigestProblem::Missing, Some(through)) => write!(
                f,
                "order {}: versions {}..={through} missing (digest covers 1..={})",
                self.order_id, self.version, self.covered
            ),
            (DigestProblem::Missing, None) => write!(
                f,
                "order {}: version {} missing (digest covers 1..={})",
                self.order_id, self.version, self.covered
            ),
            (DigestProblem::Changed, _) => write!(
                f,
                "order {}: version {} changed: {}",
                self.order_id, self.version, self.detail
            ),
        }
    }
}

/// The verdict on one order covered by a digest.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Covered {
    pub findings: Vec<DigestFinding>,
    /// Events stored past the digest's version (appended since: not a problem).
    pub appended: u64,
}

/// Checks that the store still holds versions `1..=leaf.version` of the leaf's order with
/// a valid chain ending at the leaf's hash. `events` is the order's whole stored history in
/// version order (empty if it has none); events past the leaf's version are only counted.
pub fn check_covered(leaf: &Leaf, events: &[RawEvent]) -> Covered {
    let covered_events = &events[..events.partition_point(|e| e.version <= leaf.version)];
    let mut out = Covered {
        findings: Vec::new(),
        appended: (events.len() - covered_events.len()) as u64,
    };
    let finding = |problem, version, through, detail: String| DigestFinding {
        order_id: leaf.order_id.clone(),
        problem,
        version,
        through,
        covered: leaf.version,
        detail,
    };

    // Missing versions, as runs.
    let mut missing_after: Vec<u64> = Vec::new(); // the versions right after a missing run
    let mut expected = 1;
    for version in covered_events
        .iter()
        .map(|e| e.version)
        .chain(std::iter::once(leaf.version + 1))
    {
        if version > expected {
            let through = version - 1;
            out.findings.push(finding(
                DigestProblem::Missing,
                expected,
                (through > expected).then_some(through),
                format!("the store no longer holds versions {expected}..={through}"),
            ));
            missing_after.push(version);
        }
        expected = expected.max(version + 1);
    }

    // The chain over what is left; a gap's own consequences (versions out of place, the
    // link of the event after it) are the missing finding above, not changes.
    let gaps = !missing_after.is_empty();
    let mut changed: Vec<u64> = Vec::new();
    for f in chain_findings(&leaf.order_id, covered_events) {
        let consequence = match f.property {
            Property::VersionGap => gaps,
            Property::PrevHash => f.version.is_some_and(|v| missing_after.contains(&v)),
            _ => false,
        };
        let version = f.version.unwrap_or(1);
        if consequence || changed.contains(&version) {
            continue;
        }
        changed.push(version);
        out.findings.push(finding(
            DigestProblem::Changed,
            version,
            None,
            format!("{}: {}", f.property.name(), f.detail),
        ));
    }

    // The head: a valid chain that does not end at the sealed hash was rewritten (or
    // re-chained) since the digest.
    if let Some(Ok(head)) = head_of(&leaf.order_id, covered_events)
        && head.version == leaf.version
        && head.hash != leaf.hash
        && !changed.contains(&leaf.version)
    {
        out.findings.push(finding(
            DigestProblem::Changed,
            leaf.version,
            None,
            format!(
                "its hash {} is not the digest's {}: this event, or the history up to it, was rewritten",
                head.hash, leaf.hash
            ),
        ));
    }
    out.findings.sort_by_key(|f| f.version);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::fixtures::{history, stored};

    fn leaf(order_id: &str, version: u64, hex_byte: &str) -> Leaf {
        Leaf {
            order_id: order_id.to_owned(),
            version,
            hash: ChainHash::parse(&hex_byte.repeat(32)).unwrap(),
        }
    }

    fn sha(parts: &[&[u8]]) -> ChainHash {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        ChainHash::from_bytes(h.finalize().into())
    }

    /// The leaf hash written out from the documented encoding, not through `leaf_data`.
    fn by_hand(order_id: &str, version: u64, hex_byte: &str) -> ChainHash {
        let data = format!("{order_id} {version} {}", hex_byte.repeat(32));
        sha(&[&[0x00], data.as_bytes()])
    }

    fn node(a: ChainHash, b: ChainHash) -> ChainHash {
        sha(&[&[0x01], a.as_bytes(), b.as_bytes()])
    }

    #[test]
    fn the_root_follows_the_documented_encoding_for_known_vectors() {
        // Independently computed (Python's hashlib) from the encoding in the module docs.
        let one = [leaf("A", 1, "11")];
        assert_eq!(
            merkle_root(&one).to_string(),
            "83656ab2e6608ac59840ed4d37b702377fd1a59b1478cf153d624a6461b8e397"
        );
        let three = [leaf("A", 1, "11"), leaf("B", 2, "22"), leaf("C", 3, "33")];
        assert_eq!(
            merkle_root(&three).to_string(),
            "d7aacbf9590ae74ae4b92872d8fde974f4452280cbe7ec9169a118d04e95a5f0"
        );
        // The same, from sha256 of the encoding here.
        let (a, b, c) = (
            by_hand("A", 1, "11"),
            by_hand("B", 2, "22"),
            by_hand("C", 3, "33"),
        );
        assert_eq!(merkle_root(&one), a);
        assert_eq!(merkle_root(&three[..2]), node(a, b));
        assert_eq!(merkle_root(&three), node(node(a, b), c));
    }

    #[test]
    fn an_odd_leaf_is_carried_up_not_duplicated() {
        let five: Vec<Leaf> = ["A", "B", "C", "D", "E"]
            .iter()
            .enumerate()
            .map(|(i, id)| leaf(id, i as u64 + 1, "ab"))
            .collect();
        let h: Vec<ChainHash> = five
            .iter()
            .map(|l| by_hand(&l.order_id, l.version, "ab"))
            .collect();
        assert_eq!(
            merkle_root(&five),
            node(node(node(h[0], h[1]), node(h[2], h[3])), h[4])
        );
        let mut six = five.clone();
        six.push(leaf("F", 6, "ab"));
        let f = by_hand("F", 6, "ab");
        assert_eq!(
            merkle_root(&six),
            node(node(node(h[0], h[1]), node(h[2], h[3])), node(h[4], f))
        );
        // A duplicated last leaf is another tree (RFC 6962, unlike Bitcoin's).
        let mut dup = five.clone();
        dup.push(five[4].clone());
        assert_ne!(merkle_root(&dup), merkle_root(&five));
    }

    #[test]
    fn an_empty_store_has_the_hash_of_nothing_as_its_root() {
        assert_eq!(
            merkle_root(&[]).to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let digest = DigestFile::new(Vec::new(), Utc::now(), "embedded", 0.0);
        assert_eq!((digest.orders, digest.events), (0, 0));
        assert_eq!(digest.check(None), Ok(()));
    }

    #[test]
    fn a_digest_file_round_trips_and_its_leaves_are_sorted_and_counted() {
        let digest = DigestFile::new(
            vec![leaf("B", 2, "22"), leaf("A", 1, "11")],
            Utc::now(),
            "embedded",
            0.5,
        );
        assert_eq!(digest.leaves[0].order_id, "A");
        assert_eq!((digest.orders, digest.events), (2, 3));
        let text = serde_json::to_string(&digest).unwrap();
        assert!(text.contains(r#""formatVersion":1"#), "{text}");
        let read = DigestFile::parse(&text).unwrap();
        assert_eq!(read, digest);
        assert_eq!(read.check(Some(&digest.root)), Ok(()));
    }

    #[test]
    fn an_edited_leaf_fails_the_root_check() {
        let digest = DigestFile::new(
            vec![leaf("A", 3, "11"), leaf("B", 2, "22")],
            Utc::now(),
            "embedded",
            0.0,
        );
        let mut edited = digest.clone();
        edited.leaves[0].version = 2;
        edited.events = 4; // counts fixed up too: only the root can tell
        assert!(matches!(edited.check(None), Err(DigestError::Root { .. })));
        let mut edited = digest.clone();
        edited.leaves[1].hash = ChainHash::GENESIS;
        assert!(matches!(edited.check(None), Err(DigestError::Root { .. })));
        // Leaves and root both recomputed by the editor: only the root kept elsewhere tells.
        let forged = DigestFile::new(edited.leaves.clone(), Utc::now(), "embedded", 0.0);
        assert_eq!(forged.check(None), Ok(()));
        assert!(matches!(
            forged.check(Some(&digest.root)),
            Err(DigestError::Kept { .. })
        ));
    }

    #[test]
    fn unsorted_repeated_or_miscounted_leaves_are_refused() {
        let digest = DigestFile::new(
            vec![leaf("A", 1, "11"), leaf("B", 2, "22")],
            Utc::now(),
            "embedded",
            0.0,
        );
        let mut swapped = digest.clone();
        swapped.leaves.swap(0, 1);
        assert!(matches!(
            swapped.check(None),
            Err(DigestError::Unsorted { .. })
        ));
        let mut repeated = digest.clone();
        repeated.leaves[1].order_id = "A".into();
        assert!(matches!(
            repeated.check(None),
            Err(DigestError::Unsorted { .. })
        ));
        let mut miscounted = digest.clone();
        miscounted.orders = 3;
        assert!(matches!(
            miscounted.check(None),
            Err(DigestError::Count { .. })
        ));
    }

    #[test]
    fn other_files_and_format_versions_are_refused_by_name() {
        assert!(matches!(
            DigestFile::parse("{}"),
            Err(DigestError::Unreadable(_))
        ));
        assert!(matches!(
            DigestFile::parse(r#"{"format":"other","formatVersion":1}"#),
            Err(DigestError::Format { .. })
        ));
        let e = DigestFile::parse(&format!(
            r#"{{"format":"{DIGEST_FORMAT}","formatVersion":2}}"#
        ))
        .unwrap_err();
        assert_eq!(e, DigestError::FormatVersion { found: 2 });
        assert!(e.to_string().contains("version 2 is not supported"), "{e}");
    }

    fn leaf_of(events: &[RawEvent]) -> Leaf {
        head_of(&events[0].order_id, events).unwrap().unwrap()
    }

    #[test]
    fn an_intact_history_passes_and_events_appended_since_are_counted() {
        let s = stored(&history("ORD-1"));
        assert_eq!(check_covered(&leaf_of(&s), &s), Covered::default());
        let at_two = leaf_of(&s[..2]);
        let c = check_covered(&at_two, &s);
        assert_eq!((c.findings, c.appended), (vec![], 1));
    }

    #[test]
    fn a_deleted_last_event_is_missing_at_its_version() {
        let s = stored(&history("ORD-1"));
        let c = check_covered(&leaf_of(&s), &s[..2]);
        assert_eq!(c.findings.len(), 1, "{:?}", c.findings);
        assert_eq!(
            c.findings[0].to_string(),
            "order ORD-1: version 3 missing (digest covers 1..=3)"
        );
        let c = check_covered(&leaf_of(&s), &[]);
        assert_eq!(
            c.findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["order ORD-1: versions 1..=3 missing (digest covers 1..=3)"]
        );
    }

    #[test]
    fn a_deleted_middle_event_is_missing_without_calling_the_next_one_changed() {
        let s = stored(&history("ORD-1"));
        let gapped = [s[0].clone(), s[2].clone()];
        let c = check_covered(&leaf_of(&s), &gapped);
        assert_eq!(
            c.findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["order ORD-1: version 2 missing (digest covers 1..=3)"]
        );
    }

    #[test]
    fn a_changed_byte_is_named_at_its_version() {
        let s = stored(&history("ORD-1"));
        let mut changed = s.clone();
        changed[1].envelope = changed[1].envelope.replace("c-1", "c-2");
        let c = check_covered(&leaf_of(&s), &changed);
        assert_eq!(c.findings.len(), 1, "{:?}", c.findings);
        let f = &c.findings[0];
        assert_eq!((f.problem, f.version), (DigestProblem::Changed, 2));
        assert!(
            f.to_string()
                .starts_with("order ORD-1: version 2 changed: hash:"),
            "{f}"
        );
    }

    #[test]
    fn a_history_rewritten_with_a_valid_chain_is_changed_at_the_head() {
        let sealed = stored(&history("ORD-1"));
        let rewritten = stored(&history("ORD-1")); // other event ids: another valid chain
        let c = check_covered(&leaf_of(&sealed), &rewritten);
        assert_eq!(c.findings.len(), 1, "{:?}", c.findings);
        assert_eq!(
            (c.findings[0].problem, c.findings[0].version),
            (DigestProblem::Changed, 3)
        );
        assert!(
            c.findings[0].detail.contains("not the digest's"),
            "{:?}",
            c.findings
        );
    }
}
