//! Replay and audit, the operators' and auditors' commands: `orders replay` (an order's
//! event trail with its state after each event), `orders audit verify` (the stored history
//! checked end to end), `orders rebuild` (the read model recomputed from the events) and
//! `orders republish` (past events sent to the bus again, marked `"replayed": true`).
//!
//! Each command works on a backend's data through the replay-and-audit ports
//! ([`backend::EventArchive`], [`backend::ProjectionScan`], [`backend::ProjectionRebuild`],
//! [`backend::EventPublisher`]); on the embedded backend it opens the data directory's
//! files directly, so it runs beside a running `orders dev`.

mod progress;
mod rebuild;
mod replay;
mod republish;
mod seed;
mod verify;

use std::sync::Arc;

use anyhow::bail;
use backend::{EventArchive, ProjectionScan, embedded::SqliteArchive};
use chrono::{DateTime, NaiveDate, Utc};

pub(crate) use crate::backend_args::{BackendArgs as Source, BackendKind};

pub use rebuild::{RebuildArgs, run as rebuild};
pub use replay::{ReplayArgs, run as replay};
pub use republish::{RepublishArgs, run as republish};
pub use seed::{SeedArgs, run as seed};
pub use verify::{AuditArgs, run as audit};

/// Refuses the AWS backend for `command` until its adapters implement `port`.
fn embedded_only(source: &Source, command: &str, port: &str) -> anyhow::Result<()> {
    if source.backend == BackendKind::Aws {
        bail!(
            "`orders {command}` is not yet available on the AWS backend: its adapters do not \
             implement backend::{port} yet; use the embedded backend (--backend embedded \
             --data DIR)"
        );
    }
    Ok(())
}

/// The event archive and the read model of the data, read-only.
fn archive(source: &Source, command: &str) -> anyhow::Result<Arc<SqliteArchive>> {
    embedded_only(source, command, "EventArchive")?;
    Ok(Arc::new(SqliteArchive::open(&source.data)?))
}

/// Both read-only views of the data, behind their ports.
pub(crate) struct Views {
    pub archive: Arc<dyn EventArchive>,
    pub projection: Arc<dyn ProjectionScan>,
}

impl Views {
    fn open(source: &Source, command: &str) -> anyhow::Result<Self> {
        let archive = archive(source, command)?;
        Ok(Self {
            archive: archive.clone(),
            projection: archive,
        })
    }
}

/// An RFC 3339 date-time, or a date (midnight UTC).
pub(crate) fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.to_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    Err(format!(
        "{raw:?} is not an RFC 3339 date-time (2026-01-31T08:00:00Z) or a date (2026-01-31)"
    ))
}

/// Events per second, as a whole number.
pub(crate) fn rate(events: u64, seconds: f64) -> u64 {
    if seconds > 0.0 {
        (events as f64 / seconds) as u64
    } else {
        0
    }
}

/// 1234567 → "1,234,567".
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_dates() {
        assert_eq!(
            parse_time("2026-01-31T08:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-01-31T07:00:00+00:00"
        );
        assert_eq!(
            parse_time("2026-01-31").unwrap().to_rfc3339(),
            "2026-01-31T00:00:00+00:00"
        );
        assert!(parse_time("31/01/2026").is_err());
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
