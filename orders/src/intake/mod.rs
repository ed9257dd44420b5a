//! `orders intake send`: puts a command on the intake queue of either backend, as the web,
//! mobile and ATM channels do (for operators and tests). FILE holds the JSON body the HTTP
//! API takes for the command; the message around it is the documented intake message
//! (`events-schema/schema/intake-message.schema.json`). Works beside a running
//! `orders dev`, and on AWS beside the running intake Lambda.
//!
//! `orders dev` polls the intake queue with the route queues' poller
//! (`runtime::queue`), the intake being the queue's consumer.

use std::io::Read as _;

use anyhow::{Context, bail};
use backend::{
    Queues,
    embedded::{DataDir, DetachedQueues, MessageSink, queue_configs},
};
use events_schema::{Channel, IntakeCommand, IntakeMessage, RequestId};
use serde_json::value::RawValue;

use crate::backend_args::{BackendArgs, BackendKind};

#[derive(clap::Args, Debug)]
pub struct IntakeArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Send one command to the intake queue: a place (the body of POST /orders), or with
    /// --order and --action a transition or revision of an existing order.
    Send(SendArgs),
}

/// What `--action` takes: the commands on an existing order.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum OrderAction {
    Start,
    Complete,
    Cancel,
    /// The body of PUT /orders/{orderId}: a status and/or revised details.
    Revise,
}

impl From<OrderAction> for IntakeCommand {
    fn from(a: OrderAction) -> Self {
        match a {
            OrderAction::Start => IntakeCommand::Start,
            OrderAction::Complete => IntakeCommand::Complete,
            OrderAction::Cancel => IntakeCommand::Cancel,
            OrderAction::Revise => IntakeCommand::Revise,
        }
    }
}

#[derive(clap::Args, Debug)]
struct SendArgs {
    /// The channel the command comes from: web, mobile, atm, or another lowercase name.
    #[arg(long, required_unless_present = "raw")]
    channel: Option<String>,
    /// The channel's own id of the request; the same one again on the same channel is a
    /// duplicate (applied once).
    #[arg(long, required_unless_present = "raw")]
    request_id: Option<String>,
    /// The order a --action acts on.
    #[arg(long = "order", value_name = "ID", requires = "action")]
    order: Option<String>,
    /// What to do with --order (without both: place a new order).
    #[arg(long, value_enum, requires = "order")]
    action: Option<OrderAction>,
    /// Apply only if the order is at this version (the HTTP API's If-Match).
    #[arg(long, requires = "order")]
    expected_version: Option<u64>,
    /// FILE is a whole intake message, sent as it is (an archived `intake/` message, or a
    /// message of your own) instead of a body to wrap.
    #[arg(long, conflicts_with_all = ["channel", "request_id", "order", "action", "expected_version"])]
    raw: bool,
    /// The JSON body the HTTP API takes for the command (empty for start and complete);
    /// `-` reads standard input.
    #[arg(value_name = "FILE|-")]
    file: String,
    #[command(flatten)]
    backend: BackendArgs,
}

pub async fn run(args: IntakeArgs) -> anyhow::Result<()> {
    match args.action {
        Action::Send(send) => self::send(send).await,
    }
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    let content = read(&args.file)?;
    let message = if args.raw {
        content
    } else {
        wrap(&args, content)?
    };
    let routes = events_schema::route_table();
    let queue = &routes.intake.queue;
    match args.backend.backend {
        BackendKind::Embedded => {
            let database = DataDir::new(&args.backend.data).existing_database()?;
            let queues = DetachedQueues::open(&database, queue_configs(routes))
                .context("opening the queues")?;
            queues
                .send_many(vec![(queue.clone(), message)])
                .await
                .context("sending to the intake queue")?;
        }
        BackendKind::Aws => {
            let aws = args.backend.connect_aws().await?;
            aws.queues
                .send(queue, &[message])
                .await
                .context("sending to the intake queue")?;
        }
    }
    println!("sent to {queue}");
    Ok(())
}

fn read(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut content = String::new();
        std::io::stdin()
            .read_to_string(&mut content)
            .context("reading the body from standard input")?;
        Ok(content)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))
    }
}

/// The intake message that carries `body` for these arguments. Only the framing is checked
/// here; the intake service judges the command as the HTTP API would.
fn wrap(args: &SendArgs, body: String) -> anyhow::Result<String> {
    let (Some(channel), Some(request_id)) = (&args.channel, &args.request_id) else {
        bail!("--channel and --request-id are required (or --raw with a whole message)");
    };
    let body = if body.trim().is_empty() {
        None
    } else {
        Some(
            RawValue::from_string(body.trim().to_owned()).with_context(|| {
                format!(
                    "{} is not JSON; it must hold the body the HTTP API takes for the command",
                    args.file
                )
            })?,
        )
    };
    let message = IntakeMessage {
        channel: Channel::parse(channel).map_err(|e| anyhow::anyhow!("--channel: {e}"))?,
        request_id: RequestId::parse(request_id)
            .map_err(|e| anyhow::anyhow!("--request-id: {e}"))?,
        command: args
            .action
            .map_or(IntakeCommand::Place, IntakeCommand::from),
        order_id: args.order.clone(),
        expected_version: args.expected_version,
        body,
    };
    serde_json::to_string(&message).context("encoding the intake message")
}
