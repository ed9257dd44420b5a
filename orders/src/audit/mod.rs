//! Replay and audit, the operators' and auditors' commands: `orders replay` (an order's
//! event trail with its state after each event), `orders audit verify` (the stored history
//! checked end to end), `orders audit digest` (a root that makes truncation evident),
//! `orders rebuild` (the read model recomputed from the events) and
//! `orders republish` (past events sent to the bus again, marked `"replayed": true`).
//!
//! Each command works on a backend's data through the replay-and-audit ports
//! ([`backend::EventArchive`], [`backend::ProjectionScan`], [`backend::ProjectionRebuild`],
//! [`backend::EventPublisher`]): on the embedded backend it opens the data directory's
//! files directly, so it runs beside a running `orders dev`; on AWS (`--backend aws
//! [--endpoint URL]`) it reads and writes the deployment's tables and bus, beside the
//! running Lambdas (or `orders dev --backend aws`).

mod digest;
mod progress;
mod rebuild;
mod replay;
mod republish;
mod seed;
mod verify;

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use backend::{
    EventArchive, EventPublisher, ProjectionRebuild, ProjectionScan,
    aws::Aws,
    embedded::{DataDir, DetachedQueues, EmbeddedBus, SqliteArchive, SqliteRebuild, queue_configs},
};
use chrono::{DateTime, NaiveDate, Utc};

pub(crate) use crate::backend_args::{BackendArgs as Source, BackendKind};

pub use rebuild::{RebuildArgs, run as rebuild};
pub use replay::{ReplayArgs, run as replay};
pub use republish::{RepublishArgs, run as republish};
pub use seed::{SeedArgs, run as seed};
pub use verify::{AuditArgs, run as audit};

/// The chosen backend's data, opened for one of these commands.
pub(crate) enum Data {
    /// A data directory of `orders dev`.
    Embedded(PathBuf),
    /// An AWS deployment (or a rehearsal on an emulator).
    Aws(Box<Aws>),
}

/// Both read-only views of the data, behind their ports.
pub(crate) struct Views {
    pub archive: Arc<dyn EventArchive>,
    pub projection: Arc<dyn ProjectionScan>,
}

impl Data {
    pub async fn open(source: &Source) -> anyhow::Result<Self> {
        match source.backend {
            BackendKind::Embedded => Ok(Self::Embedded(source.data.clone())),
            BackendKind::Aws => Ok(Self::Aws(Box::new(source.connect_aws().await?))),
        }
    }

    pub fn views(&self) -> anyhow::Result<Views> {
        Ok(match self {
            Self::Embedded(dir) => {
                let archive = Arc::new(SqliteArchive::open(dir)?);
                Views {
                    archive: archive.clone(),
                    projection: archive,
                }
            }
            Self::Aws(aws) => {
                let archive = aws.archive();
                Views {
                    archive: archive.clone(),
                    projection: archive,
                }
            }
        })
    }

    pub fn rebuilder(&self) -> anyhow::Result<Arc<dyn ProjectionRebuild>> {
        Ok(match self {
            Self::Embedded(dir) => Arc::new(SqliteRebuild::open(dir)?),
            Self::Aws(aws) => Arc::new(aws.rebuilder()),
        })
    }

    /// The bus the projector publishes to, and the EventBridge `Source` of order events.
    pub fn publisher(&self) -> anyhow::Result<(Arc<dyn EventPublisher>, String)> {
        Ok(match self {
            Self::Embedded(dir) => {
                let routes = events_schema::route_table();
                let database = DataDir::new(dir).existing_database()?;
                let queues = Arc::new(
                    DetachedQueues::open(&database, queue_configs(routes))
                        .context("opening the queues")?,
                );
                (
                    Arc::new(EmbeddedBus::new(routes, queues)?),
                    routes.source.clone(),
                )
            }
            Self::Aws(aws) => (aws.publisher.clone(), aws.config.event_source.clone()),
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
