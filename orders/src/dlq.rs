//! `orders dlq list|redrive --queue NAME`: what sits in a queue's dead-letter queue (a route
//! queue's, or the intake queue's), why, and sending it back for another try. Works beside
//! a running `orders dev` (embedded: its data directory) and on AWS (SQS).

use anyhow::{Context, bail};
use backend::{
    QueueMessage, Queues,
    embedded::{DataDir, DetachedQueues, queue_configs},
};

use crate::{audit::Data, backend_args::BackendArgs};

#[derive(clap::Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Print the dead letters, one JSON object per line: message id, when it was sent, how
    /// many times it was received, why it failed (`lastError`) and its body.
    List(Target),
    /// Move every dead letter (or the one named by --message) back to its queue.
    Redrive(RedriveArgs),
}

#[derive(clap::Args, Debug)]
struct Target {
    /// The queue (see events-schema/routes.json): a route queue such as order-received,
    /// or the intake queue order-intake.
    #[arg(long)]
    queue: Option<String>,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(clap::Args, Debug)]
struct RedriveArgs {
    /// Only this dead letter (its messageId, as `list` prints it).
    #[arg(long = "message", value_name = "MESSAGE_ID")]
    message_id: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// A queue's dead letters on either backend.
enum DeadLetters {
    /// The data directory of a (possibly running) `orders dev`.
    Embedded(DetachedQueues),
    Aws(Box<backend::aws::Aws>),
}

impl DeadLetters {
    async fn open(backend: &BackendArgs) -> anyhow::Result<Self> {
        Ok(match Data::open(backend).await? {
            Data::Embedded(dir) => {
                let database = DataDir::new(&dir).existing_database()?;
                Self::Embedded(
                    DetachedQueues::open(&database, queue_configs(events_schema::route_table()))
                        .context("opening the queues")?,
                )
            }
            Data::Aws(aws) => Self::Aws(aws),
        })
    }

    async fn list(&self, queue: &str) -> anyhow::Result<Vec<QueueMessage>> {
        Ok(match self {
            Self::Embedded(q) => q.dead_letters(queue).await?,
            Self::Aws(aws) => aws.queues.dead_letters(queue).await?,
        })
    }

    async fn redrive(&self, queue: &str) -> anyhow::Result<u64> {
        Ok(match self {
            Self::Embedded(q) => q.redrive(queue).await?,
            Self::Aws(aws) => aws.queues.redrive(queue).await?,
        })
    }

    async fn redrive_message(&self, queue: &str, message_id: &str) -> anyhow::Result<bool> {
        Ok(match self {
            Self::Embedded(q) => q.redrive_message(queue, message_id).await?,
            Self::Aws(aws) => aws.queues.redrive_message(queue, message_id).await?,
        })
    }
}

/// The queue `target` names, if the route table declares it.
fn queue(target: &Target) -> anyhow::Result<String> {
    let names: Vec<&str> = events_schema::route_table()
        .queues()
        .map(|q| q.queue)
        .collect();
    let Some(queue) = &target.queue else {
        bail!("--queue is required; one of: {}", names.join(", "));
    };
    if !names.contains(&queue.as_str()) {
        bail!("no queue named {queue:?}; one of: {}", names.join(", "));
    }
    Ok(queue.clone())
}

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    match args.action {
        Action::List(target) => {
            let queue = queue(&target)?;
            let dead = DeadLetters::open(&target.backend).await?;
            for m in dead.list(&queue).await? {
                let body: serde_json::Value =
                    serde_json::from_str(&m.body).unwrap_or(serde_json::Value::String(m.body));
                println!(
                    "{}",
                    serde_json::json!({
                        "messageId": m.message_id,
                        "sentAt": m.sent_at,
                        "receiveCount": m.receive_count,
                        "lastError": m.last_error,
                        "body": body,
                    })
                );
            }
        }
        Action::Redrive(args) => {
            let queue = queue(&args.target)?;
            let dead = DeadLetters::open(&args.target.backend).await?;
            match &args.message_id {
                Some(id) => {
                    if !dead.redrive_message(&queue, id).await? {
                        bail!(
                            "{queue}'s dead-letter queue has no message {id:?}; see `orders dlq list --queue {queue}`"
                        );
                    }
                    println!("moved message {id} from {queue}'s dead-letter queue back to {queue}");
                }
                None => {
                    let moved = dead.redrive(&queue).await?;
                    println!(
                        "moved {moved} message(s) from {queue}'s dead-letter queue back to {queue}"
                    );
                }
            }
        }
    }
    Ok(())
}
