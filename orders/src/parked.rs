//! `orders parked list|replay`: the change feed records the projector gave up on after its
//! retries (embedded: the data directory's `parked` table; AWS: the stream's on-failure
//! queue), and projecting them again once the cause is fixed. Works beside a running
//! `orders dev`, and on AWS beside the running Lambdas.

use std::sync::Arc;

use anyhow::{Context, bail};
use backend::{
    EventPublisher, ParkedRecord, ParkedRecords, ReadModel, embedded::DetachedProjection,
};
use projector::Projector;

use crate::{
    audit::Data,
    backend_args::{BackendArgs, BackendKind},
};

#[derive(clap::Args, Debug)]
pub struct ParkedArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Print the parked records, one JSON object per line, oldest first.
    List(BackendArgs),
    /// Project parked records again (read model and bus); each one that succeeds is no
    /// longer parked. Exits non-zero if any fails again.
    Replay(ReplayArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
struct ReplayArgs {
    /// The parked record's id, as `orders parked list` prints it.
    id: Option<String>,
    /// Every parked record.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

/// What a replay projects with.
struct Projection {
    read_model: Arc<dyn ReadModel>,
    publisher: Arc<dyn EventPublisher>,
    source: String,
    parked: Arc<dyn ParkedRecords>,
    /// Keeps the embedded writer (or the AWS clients) alive.
    _keep: Box<dyn std::any::Any + Send>,
}

async fn open(backend: &BackendArgs) -> anyhow::Result<Projection> {
    let data = Data::open(backend).await?;
    let (publisher, source) = data.publisher()?;
    Ok(match data {
        Data::Embedded(dir) => {
            let detached = DetachedProjection::open(&dir)
                .with_context(|| format!("opening the data directory {}", dir.display()))?;
            Projection {
                read_model: detached.read_model.clone(),
                parked: detached.parked.clone(),
                publisher,
                source,
                _keep: Box::new(detached),
            }
        }
        Data::Aws(aws) => Projection {
            read_model: aws.read_model.clone(),
            parked: aws.parked.clone(),
            publisher,
            source,
            _keep: aws,
        },
    })
}

pub async fn run(args: ParkedArgs) -> anyhow::Result<()> {
    let backend = match &args.action {
        Action::List(backend) => backend,
        Action::Replay(replay) => &replay.backend,
    };
    let projection = open(backend).await?;
    let parked = projection
        .parked
        .list()
        .await
        .context("listing the parked records")?;
    match args.action {
        Action::List(_) => {
            if parked.is_empty() {
                eprintln!("no parked records");
            }
            for p in &parked {
                println!("{}", line(p));
            }
            Ok(())
        }
        Action::Replay(ReplayArgs { id, all, backend }) => {
            let chosen: Vec<&ParkedRecord> = match (&id, all) {
                (_, true) => parked.iter().collect(),
                (Some(id), false) => {
                    let Some(p) = parked.iter().find(|p| &p.id == id) else {
                        bail!("no parked record {id:?}; `orders parked list` shows them");
                    };
                    vec![p]
                }
                (None, false) => bail!("name a parked record's id, or --all"),
            };
            replay(&projection, &chosen, backend.backend).await
        }
    }
}

async fn replay(
    projection: &Projection,
    chosen: &[&ParkedRecord],
    backend: BackendKind,
) -> anyhow::Result<()> {
    let projector = Projector {
        read_model: projection.read_model.as_ref(),
        publisher: projection.publisher.as_ref(),
        source: &projection.source,
    };
    let mut failed = 0;
    for p in chosen {
        let outcome = async {
            let records = projection.parked.records(p).await?;
            projector
                .project(&records)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            projection.parked.remove(p).await?;
            anyhow::Ok(records.len())
        }
        .await;
        match outcome {
            Ok(n) => println!("replayed {} ({n} record(s)); no longer parked", describe(p)),
            Err(e) => {
                failed += 1;
                eprintln!("{} failed again, still parked: {e:#}", describe(p));
            }
        }
    }
    if chosen.is_empty() {
        eprintln!("no parked records");
    }
    if failed > 0 {
        bail!(
            "{failed} of {} parked record(s) failed again ({backend:?} backend); they stay parked",
            chosen.len()
        );
    }
    Ok(())
}

fn describe(p: &ParkedRecord) -> String {
    match (&p.order_id, p.version) {
        (Some(order), Some(version)) => format!("{} (order {order} version {version})", p.id),
        _ => format!("{} (at {})", p.id, p.position),
    }
}

fn line(p: &ParkedRecord) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "position": p.position,
        "orderId": p.order_id,
        "version": p.version,
        "eventId": p.event_id,
        "attempts": p.attempts,
        "error": p.error,
        "parkedAt": p.parked_at.to_rfc3339(),
    })
}
