//! `orders dev-seed --events N` (hidden): fills a fresh data directory with about N
//! realistic events, for measuring `audit verify` and `rebuild` on a large store.
//!
//! Orders go through the lifecycles clients drive (placed; sometimes revised; started;
//! completed or canceled; a few left open), decided by the real `decide` and sealed by the
//! real `record` (hash chain included), spread over the last 30 days, and appended through
//! the embedded event store's own append path (many appends in flight, so its writer
//! commits them in large groups). The read model then gets each order's state through the
//! read model port and the change feed is checkpointed at the end, as if the projector had
//! projected and published everything (no queue messages are made).

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, bail};
use backend::{
    Append, ChangeFeed, EventStore, ReadModel,
    embedded::{Embedded, SqliteChangeFeed},
};
use chrono::{Duration, Utc};
use events_schema::{
    Command, CustomerId, DeliveryDate, Description, EventContext, Metadata, Order, OrderId,
    PlaceOrder, Reason, Recorded, UpdateOrder, decide, record,
};
use tokio::task::JoinSet;

use super::{progress::Progress, rate, thousands};

#[derive(clap::Args, Debug)]
pub struct SeedArgs {
    /// A fresh (or empty) data directory to fill.
    #[arg(long, env = "ORDERS_DATA", default_value = "./.orders")]
    data: PathBuf,
    /// About how many events to write (whole orders: a few more may be written).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seed of the pseudo-random lifecycles (same seed, same shapes).
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Appends in flight at once: the store's writer commits up to 1024 per transaction.
const IN_FLIGHT: usize = 2048;

/// SplitMix64: small, fast, good enough to vary lifecycles.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const DESCRIPTIONS: [&str; 6] = [
    "Mantenimiento básico",
    "Cambio de aceite y filtros",
    "Annual boiler service",
    "Replace front brake pads",
    "Instalación de aire acondicionado",
    "Window cleaning, 3 floors",
];

/// One order's lifecycle as the commands a client would send, in order.
fn lifecycle(rng: &mut Rng, placed: chrono::DateTime<Utc>) -> Vec<Command> {
    let description = DESCRIPTIONS[(rng.next() % DESCRIPTIONS.len() as u64) as usize];
    let delivery = placed + Duration::days(3 + (rng.next() % 20) as i64);
    let mut commands = vec![Command::Place(PlaceOrder {
        description: Description::parse(description).expect("a valid description"),
        register_date: placed,
        delivery_date: rng
            .chance(60)
            .then(|| DeliveryDate::parse(&delivery.format("%Y-%m-%d").to_string()))
            .and_then(Result::ok),
        customer_id: rng
            .chance(50)
            .then(|| CustomerId::parse(&format!("CUST-{:05}", rng.next() % 20_000)))
            .and_then(Result::ok),
    })];
    if rng.chance(20) {
        commands.push(Command::Update(UpdateOrder {
            description: Description::parse(&format!("{description} (revised)")).ok(),
            ..UpdateOrder::default()
        }));
    }
    let cancel = || Command::Cancel {
        reason: Reason::parse("Customer no longer needs it").expect("a valid reason"),
    };
    match rng.next() % 100 {
        0..10 => {}
        10..20 => commands.push(cancel()),
        _ => {
            commands.push(Command::Start);
            match rng.next() % 100 {
                0..10 => {}
                10..25 => commands.push(cancel()),
                _ => commands.push(Command::Complete),
            }
        }
    }
    commands
}

/// The events of one order's lifecycle, sealed and chained, and its final state.
fn order_events(rng: &mut Rng, n: u64, placed: chrono::DateTime<Utc>) -> (Vec<Recorded>, Order) {
    let id = OrderId::generate();
    let mut recorded: Vec<Recorded> = Vec::new();
    let mut at = placed;
    for (step, command) in lifecycle(rng, placed).into_iter().enumerate() {
        let head = recorded.last().map(|r| (&r.order, &r.envelope.hash));
        let Ok(events) = decide(&id, head.map(|(o, _)| o), &command) else {
            continue; // a revision that changes nothing: no event, as over HTTP
        };
        let ctx = EventContext {
            occurred_at: at,
            metadata: Metadata {
                correlation_id: format!("seed-{n}-{step}"),
                ..Metadata::default()
            },
        };
        recorded.extend(
            record(&id, head, events, &ctx, uuid::Uuid::now_v7).expect("a legal lifecycle"),
        );
        at += Duration::minutes(5 + (rng.next() % 600) as i64);
    }
    let state = recorded
        .last()
        .map(|r| r.order.clone())
        .expect("a placed order");
    (recorded, state)
}

pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    let routes = events_schema::route_table();
    let embedded = Embedded::open(&args.data, routes)
        .with_context(|| format!("cannot open the data directory {}", args.data.display()))?;
    if embedded.committed() != 0 {
        bail!(
            "{} already has events; dev-seed fills a fresh data directory",
            args.data.display()
        );
    }
    let started = Instant::now();
    let progress = Progress::new("seed", Some(args.events));
    let mut rng = Rng(args.seed);
    // About 3.3 events per order; orders spread evenly over the last 30 days.
    let expected_orders = (args.events / 3).max(1);
    let span = Duration::days(30);
    let begin = Utc::now() - span - Duration::days(1);
    let step = span / i32::try_from(expected_orders).unwrap_or(i32::MAX);
    let mut tasks: JoinSet<anyhow::Result<u64>> = JoinSet::new();
    let mut states: Vec<Order> = Vec::with_capacity(expected_orders as usize);
    let (mut written, mut queued, mut n) = (0u64, 0u64, 0u64);
    while queued < args.events {
        let (events, state) = order_events(&mut rng, n, begin + step * (n as i32));
        n += 1;
        queued += events.len() as u64;
        states.push(state);
        let store = embedded.events.clone();
        tasks.spawn(async move {
            let count = events.len() as u64;
            store
                .append(Append {
                    order_id: events[0].envelope.order_id.clone(),
                    expected_version: 0,
                    events,
                    idempotency: None,
                })
                .await?;
            Ok(count)
        });
        while tasks.len() >= IN_FLIGHT {
            if let Some(done) = tasks.join_next().await {
                written += done??;
                progress.set(written);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        written += done??;
        progress.set(written);
    }
    progress.finish();
    let appended = started.elapsed().as_secs_f64();

    // The projector's part: every order's latest state, then the checkpoint at the end.
    for chunk in states.chunks(10_000) {
        embedded.read_model.apply(chunk).await?;
    }
    let last = embedded.committed();
    embedded
        .feed
        .checkpoint(&SqliteChangeFeed::at(last))
        .await?;
    let orders = states.len() as u64;
    println!(
        "dev-seed: {} events of {} orders in {} ({:.1} s to append, {} events/s; {:.1} s in all)",
        thousands(written),
        thousands(orders),
        args.data.display(),
        appended,
        thousands(rate(written, appended)),
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}
