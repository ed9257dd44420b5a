//! Commands and [`decide`]: the status machine applied to an order's current state.

use chrono::{DateTime, Utc};

use crate::{
    detail::EventDetailRef,
    event::{OrderCanceled, OrderDetailsRevised, OrderEvent, OrderPlaced, Recorded},
    order::Order,
    values::{CustomerId, DeliveryDate, Description, OrderId, Reason, Status},
};

/// What a client asks of an order. Field values are already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Place(PlaceOrder),
    Start,
    Complete,
    Cancel {
        reason: Reason,
    },
    /// Seed 000's PUT: any mix of a status change and revised details.
    Update(UpdateOrder),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrder {
    pub description: Description,
    pub register_date: DateTime<Utc>,
    pub delivery_date: Option<DeliveryDate>,
    pub customer_id: Option<CustomerId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateOrder {
    pub status: Option<Status>,
    pub reason_for_cancellation: Option<Reason>,
    pub description: Option<Description>,
    pub delivery_date: Option<DeliveryDate>,
}

/// Why a command was refused. Each message names what the client can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("order {0} does not exist")]
    NotFound(OrderId),
    #[error("order {0} already exists with different content")]
    AlreadyExists(OrderId),
    #[error("order {order_id} is {from}; {}", allowed_phrase(*from, *to))]
    IllegalTransition {
        order_id: OrderId,
        from: Status,
        to: Status,
    },
    #[error(
        "order {order_id} is {status}, a terminal status; its details can no longer be revised"
    )]
    RevisionOfTerminal { order_id: OrderId, status: Status },
    #[error("reasonForCancellation is required to cancel an order")]
    MissingReason,
    #[error("reasonForCancellation is only accepted together with status canceled")]
    ReasonWithoutCancel,
    #[error(
        "the event for order {order_id} would take {bytes} bytes as published (the event and the order after it), over the {limit} byte limit"
    )]
    TooLarge {
        order_id: OrderId,
        bytes: usize,
        limit: usize,
    },
    #[error(
        "order {order_id} has {events} events; a revision would leave it without room for its remaining status changes under the limit of {limit} events per order"
    )]
    HistoryFull {
        order_id: OrderId,
        events: u64,
        limit: u64,
    },
}

/// The most bytes one published event may take: the JSON of its [`EventDetail`] (the
/// envelope and the order state after it). 64 KiB leaves room to spare under EventBridge's
/// 256 KB entry (and SQS's message) limit for the entry's other fields and a subscriber's
/// own envelope.
pub const MAX_DETAIL_BYTES: usize = 64 * 1024;

/// The most events one order may have. Its history is read in pages, but the audit, a
/// rebuild and `orders replay` still walk all of it, and the AWS head read and the
/// embedded row scans grow with it: 1,000 events (at most ~64 MiB at the event size limit)
/// is far past any real order's lifecycle, which is three status changes and a few
/// revisions.
///
/// Only revisions count against it: room is always kept for the status changes the order
/// may still need (see [`transitions_left`]), so an order that reached the limit can still
/// be started, completed or canceled and never has more than this many events.
pub const MAX_EVENTS_PER_ORDER: u64 = 1_000;

/// The most status changes an order in `status` can still go through (received: start and
/// complete).
pub fn transitions_left(status: Status) -> u64 {
    status
        .allowed_next()
        .iter()
        .map(|next| 1 + transitions_left(*next))
        .max()
        .unwrap_or(0)
}

/// Checks, before anything is appended, that each recorded event stays under
/// [`MAX_DETAIL_BYTES`] as it will be published.
pub fn check_size(recorded: &[Recorded]) -> Result<(), Rejection> {
    for r in recorded {
        let bytes = EventDetailRef {
            event: &r.envelope,
            order: &r.order,
            replayed: false,
        }
        .json_len();
        if bytes > MAX_DETAIL_BYTES {
            return Err(Rejection::TooLarge {
                order_id: r.envelope.order_id.clone(),
                bytes,
                limit: MAX_DETAIL_BYTES,
            });
        }
    }
    Ok(())
}

fn allowed_phrase(from: Status, to: Status) -> String {
    match from.allowed_next() {
        [] => format!("it is terminal and cannot move to {to}"),
        next => {
            let names: Vec<&str> = next.iter().map(|s| s.as_str()).collect();
            format!("it can move to {} but not to {to}", names.join(" or "))
        }
    }
}

/// The events `command` produces against `state` (`None`: no such order yet), or why not.
/// An empty list means the command asks for nothing that is not already true.
pub fn decide(
    order_id: &OrderId,
    state: Option<&Order>,
    command: &Command,
) -> Result<Vec<OrderEvent>, Rejection> {
    match (state, command) {
        (None, Command::Place(place)) => Ok(vec![OrderEvent::OrderPlaced(OrderPlaced {
            description: place.description.clone(),
            register_date: place.register_date,
            delivery_date: place.delivery_date.clone(),
            customer_id: place.customer_id.clone(),
        })]),
        (Some(_), Command::Place(_)) => Err(Rejection::AlreadyExists(order_id.clone())),
        (None, _) => Err(Rejection::NotFound(order_id.clone())),
        (Some(order), Command::Start) => {
            transition(order, Status::Inprocess, None).map(|e| vec![e])
        }
        (Some(order), Command::Complete) => {
            transition(order, Status::Completed, None).map(|e| vec![e])
        }
        (Some(order), Command::Cancel { reason }) => {
            transition(order, Status::Canceled, Some(reason)).map(|e| vec![e])
        }
        (Some(order), Command::Update(update)) => decide_update(order, update),
    }
}

fn transition(order: &Order, to: Status, reason: Option<&Reason>) -> Result<OrderEvent, Rejection> {
    if !order.status.can_move_to(to) {
        return Err(Rejection::IllegalTransition {
            order_id: order.order_id.clone(),
            from: order.status,
            to,
        });
    }
    match (to, reason) {
        (Status::Canceled, Some(reason)) => Ok(OrderEvent::OrderCanceled(OrderCanceled {
            reason_for_cancellation: reason.clone(),
        })),
        (Status::Canceled, None) => Err(Rejection::MissingReason),
        (Status::Completed, _) => Ok(OrderEvent::OrderCompleted {}),
        // `can_move_to` admits no other target: only inprocess is left.
        _ => Ok(OrderEvent::OrderStarted {}),
    }
}

/// Revisions come before the status change, so that details can be corrected in the same
/// request that makes the order terminal.
fn decide_update(order: &Order, update: &UpdateOrder) -> Result<Vec<OrderEvent>, Rejection> {
    let target = update.status.unwrap_or(order.status);
    if update.reason_for_cancellation.is_some() && target != Status::Canceled {
        return Err(Rejection::ReasonWithoutCancel);
    }
    let revised = OrderDetailsRevised {
        description: update
            .description
            .clone()
            .filter(|d| *d != order.description),
        delivery_date: update
            .delivery_date
            .clone()
            .filter(|d| order.delivery_date.as_ref() != Some(d)),
    };
    let mut events = Vec::new();
    if revised.description.is_some() || revised.delivery_date.is_some() {
        if order.status.is_terminal() {
            return Err(Rejection::RevisionOfTerminal {
                order_id: order.order_id.clone(),
                status: order.status,
            });
        }
        // The revision plus a status change in the same request, and then every status
        // change the order may still need, must fit under the limit.
        let changes = u64::from(target != order.status);
        if order.version + 1 + changes + transitions_left(target) > MAX_EVENTS_PER_ORDER {
            return Err(Rejection::HistoryFull {
                order_id: order.order_id.clone(),
                events: order.version,
                limit: MAX_EVENTS_PER_ORDER,
            });
        }
        events.push(OrderEvent::OrderDetailsRevised(revised));
    }
    if target != order.status {
        events.push(transition(
            order,
            target,
            update.reason_for_cancellation.as_ref(),
        )?);
    } else if target == Status::Canceled
        && update.reason_for_cancellation.is_some()
        && update.reason_for_cancellation != order.reason_for_cancellation
    {
        return Err(Rejection::RevisionOfTerminal {
            order_id: order.order_id.clone(),
            status: order.status,
        });
    }
    Ok(events)
}
