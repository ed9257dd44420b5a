//! The status machine and revisions, command by command.

use crate::support::*;
use events_schema::*;

fn update(u: UpdateOrder) -> Command {
    Command::Update(u)
}

#[test]
fn placing_a_new_order_records_order_placed_in_status_received() {
    let mut h = History::default();
    assert_eq!(h.when(&place("fix the boiler")), Ok(vec!["OrderPlaced"]));
    let order = h.state().expect("placed");
    assert_eq!(order.status, Status::Received);
    assert_eq!(order.version, 1);
    assert_eq!(order.description.as_str(), "fix the boiler");
}

#[test]
fn placing_an_existing_order_again_is_rejected() {
    let mut h = History::given(&[place("a")]);
    assert_eq!(
        h.when(&place("a")),
        Err(Rejection::AlreadyExists(id("ORD-1")))
    );
}

#[test]
fn commands_on_a_missing_order_are_not_found() {
    for c in [
        Command::Start,
        Command::Complete,
        cancel("x"),
        update(UpdateOrder::default()),
    ] {
        assert_eq!(
            History::default().when(&c),
            Err(Rejection::NotFound(id("ORD-1")))
        );
    }
}

#[test]
fn the_happy_path_runs_received_inprocess_completed() {
    let mut h = History::given(&[place("a")]);
    assert_eq!(h.when(&Command::Start), Ok(vec!["OrderStarted"]));
    assert_eq!(h.when(&Command::Complete), Ok(vec!["OrderCompleted"]));
    assert_eq!(
        h.state().map(|o| (o.status, o.version)),
        Some((Status::Completed, 3))
    );
}

#[test]
fn starting_an_order_already_in_process_is_an_illegal_transition_naming_the_allowed_ones() {
    let mut h = History::given(&[place("a"), Command::Start]);
    let err = h.when(&Command::Start).expect_err("illegal");
    assert_eq!(
        err.to_string(),
        "order ORD-1 is inprocess; it can move to completed or canceled but not to inprocess"
    );
}

#[test]
fn completing_a_received_order_is_illegal() {
    let mut h = History::given(&[place("a")]);
    assert!(matches!(
        h.when(&Command::Complete),
        Err(Rejection::IllegalTransition {
            from: Status::Received,
            to: Status::Completed,
            ..
        })
    ));
}

#[test]
fn terminal_orders_accept_no_transition() {
    for end in [Command::Complete, cancel("no longer needed")] {
        let mut given = vec![place("a"), Command::Start];
        given.push(end);
        let mut h = History::given(&given);
        for c in [Command::Start, Command::Complete, cancel("again")] {
            let err = h.when(&c).expect_err("terminal");
            assert!(err.to_string().contains("it is terminal"), "{err}");
        }
    }
}

#[test]
fn canceling_records_the_reason() {
    let mut h = History::given(&[place("a")]);
    assert_eq!(h.when(&cancel("Motivo X")), Ok(vec!["OrderCanceled"]));
    let order = h.state().expect("state");
    assert_eq!(order.status, Status::Canceled);
    assert_eq!(
        order.reason_for_cancellation.as_ref().map(|r| r.as_str()),
        Some("Motivo X")
    );
}

#[test]
fn seed_000_put_revises_the_description_then_cancels() {
    let mut h = History::given(&[place("Mantenimiento básico")]);
    let events = h.when(&update(UpdateOrder {
        status: Some(Status::Canceled),
        reason_for_cancellation: Some(Reason::parse("Motivo X").expect("reason")),
        description: Some(Description::parse("Cliente se retracta").expect("desc")),
        delivery_date: None,
    }));
    assert_eq!(events, Ok(vec!["OrderDetailsRevised", "OrderCanceled"]));
    let order = h.state().expect("state");
    assert_eq!(order.description.as_str(), "Cliente se retracta");
    assert_eq!((order.status, order.version), (Status::Canceled, 3));
}

#[test]
fn a_put_that_changes_nothing_records_nothing() {
    let mut h = History::given(&[place("a"), Command::Start]);
    let same = update(UpdateOrder {
        status: Some(Status::Inprocess),
        description: Some(Description::parse("a").expect("desc")),
        ..UpdateOrder::default()
    });
    assert_eq!(h.when(&same), Ok(vec![]));
    assert_eq!(h.state().map(|o| o.version), Some(2));
}

#[test]
fn a_reason_without_a_cancel_is_rejected() {
    let mut h = History::given(&[place("a")]);
    let err = h.when(&update(UpdateOrder {
        reason_for_cancellation: Some(Reason::parse("why").expect("reason")),
        ..UpdateOrder::default()
    }));
    assert_eq!(err, Err(Rejection::ReasonWithoutCancel));
}

#[test]
fn canceling_without_a_reason_is_rejected() {
    let mut h = History::given(&[place("a")]);
    let err = h.when(&update(UpdateOrder {
        status: Some(Status::Canceled),
        ..UpdateOrder::default()
    }));
    assert_eq!(err, Err(Rejection::MissingReason));
}

#[test]
fn terminal_orders_cannot_be_revised() {
    let mut h = History::given(&[place("a"), Command::Start, Command::Complete]);
    let err = h.when(&update(UpdateOrder {
        delivery_date: Some(DeliveryDate::parse("2030-01-01").expect("date")),
        ..UpdateOrder::default()
    }));
    assert!(matches!(
        err,
        Err(Rejection::RevisionOfTerminal {
            status: Status::Completed,
            ..
        })
    ));
}

#[test]
fn moving_back_to_received_is_illegal() {
    let mut h = History::given(&[place("a"), Command::Start]);
    let err = h.when(&update(UpdateOrder {
        status: Some(Status::Received),
        ..UpdateOrder::default()
    }));
    assert!(matches!(
        err,
        Err(Rejection::IllegalTransition {
            to: Status::Received,
            ..
        })
    ));
}

#[test]
fn fold_of_recorded_events_equals_the_state_after_each_event() {
    let h = History::given(&[place("a"), Command::Start, cancel("r")]);
    for n in 1..=h.recorded.len() {
        let envelopes = h.envelopes();
        assert_eq!(
            fold(&envelopes[..n]).expect("folds").as_ref(),
            Some(&h.recorded[n - 1].order)
        );
    }
}

#[test]
fn a_history_that_does_not_start_with_placement_cannot_be_folded() {
    let h = History::given(&[place("a"), Command::Start]);
    let envelopes = h.envelopes();
    assert!(fold(&envelopes[1..]).is_err());
}

#[test]
fn an_event_over_the_published_size_limit_is_refused_naming_the_limit() {
    let order_id = id("ORD-1");
    let placed = OrderEvent::OrderPlaced(OrderPlaced {
        description: Description::parse("a").expect("text"),
        register_date: chrono::DateTime::UNIX_EPOCH,
        delivery_date: None,
        customer_id: None,
    });
    let ctx = |actor: usize| EventContext {
        occurred_at: chrono::DateTime::UNIX_EPOCH,
        metadata: Metadata {
            correlation_id: "c".into(),
            causation_id: None,
            channel: None,
            actor: Some("x".repeat(actor)),
            idempotency_key: None,
            trace_header: None,
        },
    };
    let small = record(
        &order_id,
        None,
        vec![placed.clone()],
        &ctx(10),
        uuid::Uuid::nil,
    )
    .expect("recorded");
    assert_eq!(check_size(&small), Ok(()));
    let big = record(
        &order_id,
        None,
        vec![placed],
        &ctx(MAX_DETAIL_BYTES),
        uuid::Uuid::nil,
    )
    .expect("recorded");
    let e = check_size(&big).expect_err("too large");
    assert!(matches!(
        e,
        Rejection::TooLarge {
            limit: MAX_DETAIL_BYTES,
            ..
        }
    ));
    assert!(e.to_string().contains("65536 byte limit"), "{e}");
}

fn revise(n: u64) -> Command {
    update(UpdateOrder {
        description: Some(Description::parse(&format!("revision {n}")).expect("desc")),
        ..UpdateOrder::default()
    })
}

/// Revises the order until a revision is refused; returns the refusal.
fn revise_until_refused(h: &mut History) -> Rejection {
    for n in 0..=MAX_EVENTS_PER_ORDER {
        if let Err(e) = h.when(&revise(n)) {
            return e;
        }
    }
    panic!("{} revisions were all accepted", MAX_EVENTS_PER_ORDER + 1);
}

#[test]
fn the_status_changes_left_are_counted_along_the_longest_path() {
    assert_eq!(transitions_left(Status::Received), 2);
    assert_eq!(transitions_left(Status::Inprocess), 1);
    assert_eq!(transitions_left(Status::Completed), 0);
    assert_eq!(transitions_left(Status::Canceled), 0);
}

#[test]
fn revisions_are_refused_where_only_room_for_the_remaining_status_changes_is_left() {
    let mut h = History::given(&[place("a")]);
    let refused = revise_until_refused(&mut h);
    let last = MAX_EVENTS_PER_ORDER - 2;
    assert_eq!(
        refused,
        Rejection::HistoryFull {
            order_id: id("ORD-1"),
            events: last,
            limit: MAX_EVENTS_PER_ORDER,
        }
    );
    assert!(
        refused
            .to_string()
            .contains("limit of 1000 events per order"),
        "{refused}"
    );
    assert_eq!(h.state().map(|o| o.version), Some(last), "nothing recorded");
    // The order can still finish its lifecycle, and ends exactly at the limit.
    assert_eq!(h.when(&Command::Start), Ok(vec!["OrderStarted"]));
    assert!(matches!(
        h.when(&revise(0)),
        Err(Rejection::HistoryFull { .. })
    ));
    assert_eq!(h.when(&Command::Complete), Ok(vec!["OrderCompleted"]));
    assert_eq!(h.recorded.len() as u64, MAX_EVENTS_PER_ORDER);
}

#[test]
fn at_the_limit_a_revision_that_also_cancels_still_fits() {
    let mut h = History::given(&[place("a")]);
    revise_until_refused(&mut h);
    let revise_and_cancel = update(UpdateOrder {
        status: Some(Status::Canceled),
        reason_for_cancellation: Some(Reason::parse("no longer needed").expect("reason")),
        description: Some(Description::parse("last words").expect("desc")),
        ..UpdateOrder::default()
    });
    assert_eq!(
        h.when(&revise_and_cancel),
        Ok(vec!["OrderDetailsRevised", "OrderCanceled"])
    );
    assert_eq!(h.recorded.len() as u64, MAX_EVENTS_PER_ORDER);
}

#[test]
fn status_changes_and_commands_that_change_nothing_are_not_limited() {
    let mut h = History::given(&[place("a")]);
    revise_until_refused(&mut h);
    let unchanged = h.state().map(|o| o.description.clone());
    let same = update(UpdateOrder {
        description: unchanged,
        status: Some(Status::Received),
        ..UpdateOrder::default()
    });
    assert_eq!(h.when(&same), Ok(vec![]));
    assert_eq!(
        h.when(&cancel("changed my mind")),
        Ok(vec!["OrderCanceled"])
    );
}
