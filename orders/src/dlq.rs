//! `orders dlq list|redrive --queue NAME`: what sits in a route queue's dead-letter queue,
//! and sending it back for another try. Works on the data directory of a running service.

use std::path::PathBuf;

use anyhow::{Context, bail};
use backend::embedded::{DataDir, DetachedQueues, queue_configs};

#[derive(clap::Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    action: Action,
    /// The route queue (see events-schema/routes.json), e.g. order-received.
    #[arg(long, global = true)]
    queue: Option<String>,
    /// Directory that holds the service's data.
    #[arg(long, global = true, env = "ORDERS_DATA", default_value = "./.orders")]
    data: PathBuf,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Print the dead letters, one JSON object per line.
    List,
    /// Move every dead letter back to its queue.
    Redrive,
}

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let routes = events_schema::route_table();
    let names: Vec<&str> = routes.routes.iter().map(|r| r.queue.as_str()).collect();
    let Some(queue) = args.queue else {
        bail!("--queue is required; one of: {}", names.join(", "));
    };
    if !names.contains(&queue.as_str()) {
        bail!(
            "no route queue named {queue:?}; one of: {}",
            names.join(", ")
        );
    }
    let database = DataDir::new(&args.data).existing_database()?;
    let queues =
        DetachedQueues::open(&database, queue_configs(routes)).context("opening the queues")?;
    match args.action {
        Action::List => {
            for m in queues.dead_letters(&queue).await? {
                let body: serde_json::Value =
                    serde_json::from_str(&m.body).unwrap_or(serde_json::Value::String(m.body));
                println!(
                    "{}",
                    serde_json::json!({ "messageId": m.message_id, "sentAt": m.sent_at, "body": body })
                );
            }
        }
        Action::Redrive => {
            let moved = queues.redrive(&queue).await?;
            println!("moved {moved} message(s) from {queue}'s dead-letter queue back to {queue}");
        }
    }
    Ok(())
}
