//! Property tests: whatever clients send, histories stay legal, gapless, chained and foldable.

use crate::support::*;
use events_schema::*;
use proptest::prelude::*;

fn status() -> impl Strategy<Value = Status> {
    prop::sample::select(Status::ALL.to_vec())
}

fn text() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "Mantenimiento", "ünïcødé ✓"]).prop_map(String::from)
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        text().prop_map(|d| place(&d)),
        Just(Command::Start),
        Just(Command::Complete),
        text().prop_map(|r| cancel(&r)),
        (
            prop::option::of(status()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(prop::sample::select(vec!["2030-01-01", "2031-02-03"])),
        )
            .prop_map(|(status, reason, description, date)| {
                Command::Update(UpdateOrder {
                    status,
                    reason_for_cancellation: reason.map(|r| Reason::parse(&r).expect("reason")),
                    description: description.map(|d| Description::parse(&d).expect("desc")),
                    delivery_date: date.map(|d| DeliveryDate::parse(d).expect("date")),
                })
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_command_sequence_yields_a_legal_gapless_chained_foldable_history(
        commands in prop::collection::vec(command(), 0..24)
    ) {
        let mut h = History::default();
        for c in &commands {
            let before = h.state().cloned();
            let n = h.recorded.len();
            match h.when(c) {
                Ok(_) => {
                    // Every status change is an edge of the status machine.
                    let mut status = before.as_ref().map(|o| o.status);
                    for r in &h.recorded[n..] {
                        if let Some(prev) = status {
                            prop_assert!(prev == r.order.status || prev.can_move_to(r.order.status),
                                "{prev} -> {}", r.order.status);
                        }
                        prop_assert_eq!(r.envelope.status, r.order.status);
                        status = Some(r.order.status);
                    }
                }
                Err(_) => prop_assert_eq!(h.recorded.len(), n, "a rejection records nothing"),
            }
        }
        let envelopes = h.envelopes();
        for (i, e) in envelopes.iter().enumerate() {
            prop_assert_eq!(e.version, i as u64 + 1);
        }
        let raw = h.raw();
        prop_assert_eq!(verify_chain(raw.iter().map(String::as_str)), vec![]);
        let folded = fold(&envelopes).expect("folds");
        prop_assert_eq!(folded.as_ref(), h.state());
        // Stored JSON parses back to the very same envelopes.
        for (json, e) in raw.iter().zip(&envelopes) {
            prop_assert_eq!(&serde_json::from_str::<Envelope>(json).expect("parses"), e);
        }
    }

    #[test]
    fn terminal_orders_never_change_again(commands in prop::collection::vec(command(), 0..16)) {
        let mut h = History::given(&[place("a"), Command::Start, Command::Complete]);
        let before = h.state().cloned();
        for c in &commands {
            let _ = h.when(c);
        }
        prop_assert_eq!(h.state().cloned(), before);
    }
}

fn any_text() -> impl Strategy<Value = String> {
    // Any characters at all, control characters, quotes and astral planes included.
    "\\PC{1,12}|[\\x00-\\x1f\"\\\\\u{7f}\u{2028}\u{1F600}a-z]{1,12}"
        .prop_filter("valid text", |s| Description::parse(s).is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_fast_canonical_form_equals_a_generic_rfc8785_encoding(
        description in any_text(),
        reason in any_text(),
        correlation in "\\PC{0,20}",
        actor in prop::option::of("\\PC{0,20}"),
    ) {
        let mut h = History::given(&[place(&description), Command::Start]);
        h.when(&cancel(&reason)).expect("cancel");
        for r in &mut h.recorded {
            r.envelope.metadata.correlation_id = correlation.clone();
            r.envelope.metadata.actor = actor.clone();
            let mut generic = serde_json::to_value(&r.envelope).expect("json");
            generic.as_object_mut().expect("object").remove("hash");
            let expected = serde_json_canonicalizer::to_vec(&generic).expect("jcs");
            let fast = canonical(&r.envelope);
            prop_assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&expected));
        }
    }
}
