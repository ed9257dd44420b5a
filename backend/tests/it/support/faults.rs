//! Fault injection into the AWS adapters' real requests: an SDK interceptor, installed
//! through [`backend::aws::AwsConfig::interceptor`], that turns chosen calls of chosen
//! operations into the failures AWS answers with under load: throttling, a failed
//! condition, a transaction conflict, a batch that leaves items unprocessed, a `PutEvents`
//! that refuses some entries.
//!
//! Faults are faithful to what AWS does, not only to what it says: a throttled or refused
//! attempt never reaches the emulator (its request is replaced by a harmless read, so it
//! changes nothing), and what a batch reports unprocessed or refused is really held back
//! from the request. A test that removes the handling it checks therefore sees the data
//! missing, not only a different answer.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use aws_sdk_dynamodb::{
    config::{ConfigBag, Intercept, RuntimeComponents, SharedInterceptor},
    operation::{
        batch_get_item::{BatchGetItemInput, BatchGetItemOutput},
        batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput},
    },
    types::{KeysAndAttributes, WriteRequest},
};
use aws_sdk_eventbridge::{
    operation::put_events::{PutEventsInput, PutEventsOutput},
    types::PutEventsResultEntry,
};
use aws_smithy_runtime_api::{
    box_error::BoxError,
    client::{
        interceptors::context::{
            BeforeDeserializationInterceptorContextMut, BeforeSerializationInterceptorContextMut,
            BeforeTransmitInterceptorContextMut, FinalizerInterceptorContextMut,
        },
        orchestrator::{HttpResponse, Metadata},
    },
    http::StatusCode,
};
use aws_smithy_types::{
    body::SdkBody,
    config_bag::{Storable, StoreReplace},
};

/// What an injected call gets.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Each attempt is answered `ThrottlingException` (HTTP 400), which the SDK retries.
    Throttle,
    /// Each attempt is answered `ConditionalCheckFailedException`.
    ConditionFailed,
    /// `TransactWriteItems`: `TransactionCanceledException` whose first item's reason is
    /// `TransactionConflict`; any other operation: `TransactionConflictException`.
    TransactionConflict,
    /// `BatchWriteItem` / `BatchGetItem`: the last `n` requests or keys of each table (one
    /// always goes through) are not sent and come back as `UnprocessedItems` /
    /// `UnprocessedKeys`.
    Unprocessed(usize),
    /// `PutEvents`: the entries at these indices are not sent, and their results carry this
    /// error code (`FailedEntryCount` counts them).
    FailEntries {
        indices: Vec<usize>,
        code: &'static str,
    },
}

impl Fault {
    /// Whether the fault replaces each attempt (and so meets the SDK's retries) rather than
    /// shaping one call's request and result.
    fn per_attempt(&self) -> bool {
        matches!(
            self,
            Fault::Throttle | Fault::ConditionFailed | Fault::TransactionConflict
        )
    }
}

#[derive(Debug)]
struct Rule {
    operation: &'static str,
    fault: Fault,
    remaining: u32,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    /// Attempts sent, by operation (every retry counts).
    attempts: BTreeMap<String, u32>,
    /// Calls (one `send()` each), by operation.
    calls: BTreeMap<String, u32>,
    /// Per call of a batch operation, how many entries, requests or keys it really sent.
    sent: BTreeMap<String, Vec<usize>>,
}

/// The interceptor; clones share their rules and counts.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

impl Faults {
    /// `fault` for the next `times` attempts (per-attempt faults) or calls (batch faults)
    /// of `operation` (e.g. `"PutItem"`), after any earlier rule for it has run out.
    pub fn inject(&self, operation: &'static str, fault: Fault, times: u32) -> &Self {
        self.lock().rules.push(Rule {
            operation,
            fault,
            remaining: times,
        });
        self
    }

    /// The interceptor, for [`backend::aws::AwsConfig::interceptor`].
    pub fn interceptor(&self) -> SharedInterceptor {
        SharedInterceptor::new(self.clone())
    }

    /// Attempts of `operation` sent so far, retries included.
    pub fn attempts(&self, operation: &str) -> u32 {
        self.lock().attempts.get(operation).copied().unwrap_or(0)
    }

    /// Calls of `operation` so far.
    pub fn calls(&self, operation: &str) -> u32 {
        self.lock().calls.get(operation).copied().unwrap_or(0)
    }

    /// For each call of a batch operation so far, the number of items it really sent.
    pub fn sent(&self, operation: &str) -> Vec<usize> {
        self.lock().sent.get(operation).cloned().unwrap_or_default()
    }

    /// Injections not used yet (a test that expected them all to be used checks this).
    pub fn unused(&self) -> u32 {
        self.lock().rules.iter().map(|r| r.remaining).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one use of the first live rule for `operation` of the given kind.
    fn take(&self, operation: &str, per_attempt: bool) -> Option<Fault> {
        let mut state = self.lock();
        let rule = state.rules.iter_mut().find(|r| {
            r.operation == operation && r.remaining > 0 && r.fault.per_attempt() == per_attempt
        })?;
        rule.remaining -= 1;
        Some(rule.fault.clone())
    }
}

/// `(service, operation)` of the call the config bag belongs to.
fn operation(cfg: &ConfigBag) -> (String, String) {
    let m = cfg
        .load::<Metadata>()
        .expect("every SDK operation has metadata");
    (m.service().to_owned(), m.name().to_owned())
}

/// This attempt's injected answer (status and JSON body), if any; replaced every attempt.
#[derive(Debug, Clone)]
struct Answer(Option<(String, String)>);

impl Storable for Answer {
    type Storer = StoreReplace<Self>;
}

/// Everything of this call was held back: its attempts send a harmless request.
#[derive(Debug, Clone)]
struct NothingToSend;

impl Storable for NothingToSend {
    type Storer = StoreReplace<Self>;
}

/// What this call held back from its request, to be reported in its result.
#[derive(Debug, Clone)]
enum HeldBack {
    Writes(HashMap<String, Vec<WriteRequest>>),
    Keys(HashMap<String, KeysAndAttributes>),
    Entries { indices: Vec<usize>, code: String },
}

impl Storable for HeldBack {
    type Storer = StoreReplace<Self>;
}

/// The request that replaces an answered attempt: a read of the same service, so that
/// the attempt changes nothing on the server.
fn harmless_target(service: &str) -> &'static str {
    match service {
        "DynamoDB" => "DynamoDB_20120810.ListTables",
        "EventBridge" => "AWSEvents.ListEventBuses",
        other => panic!("no harmless request known for {other}"),
    }
}

/// The error `fault` answers an attempt of `operation` with (the request is still intact,
/// for the number of a transaction's items).
fn error_body(service: &str, operation: &str, fault: &Fault, request: &[u8]) -> (String, String) {
    let namespace = match service {
        "DynamoDB" => "com.amazonaws.dynamodb.v20120810#",
        _ => "",
    };
    let error = |code: &str, message: &str| {
        (
            code.to_owned(),
            serde_json::json!({ "__type": format!("{namespace}{code}"), "message": message })
                .to_string(),
        )
    };
    match fault {
        Fault::Throttle => error("ThrottlingException", "Rate exceeded (injected)"),
        Fault::ConditionFailed => error(
            "ConditionalCheckFailedException",
            "The conditional request failed (injected)",
        ),
        Fault::TransactionConflict if operation == "TransactWriteItems" => {
            let items = serde_json::from_slice::<serde_json::Value>(request)
                .ok()
                .and_then(|v| v["TransactItems"].as_array().map(Vec::len))
                .unwrap_or(1);
            let reasons: Vec<_> = (0..items)
                .map(|i| match i {
                    0 => serde_json::json!({
                        "Code": "TransactionConflict",
                        "Message": "Transaction is ongoing for the item (injected)",
                    }),
                    _ => serde_json::json!({ "Code": "None" }),
                })
                .collect();
            let code = "TransactionCanceledException";
            (
                code.to_owned(),
                serde_json::json!({
                    "__type": format!("{namespace}{code}"),
                    "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons (injected)",
                    "CancellationReasons": reasons,
                })
                .to_string(),
            )
        }
        Fault::TransactionConflict => error(
            "TransactionConflictException",
            "Transaction is ongoing for the item (injected)",
        ),
        Fault::Unprocessed(_) | Fault::FailEntries { .. } => {
            unreachable!("batch faults shape the call, not the attempt")
        }
    }
}

impl Intercept for Faults {
    fn name(&self) -> &'static str {
        "Faults"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (_, op) = operation(cfg);
        *self.lock().calls.entry(op.clone()).or_default() += 1;
        let fault = self.take(&op, false);
        let input = context.input_mut();
        let (held, sent) = if let Some(input) = input.downcast_mut::<BatchWriteItemInput>() {
            let mut held = HashMap::new();
            for (table, requests) in input.request_items.iter_mut().flatten() {
                if let Some(Fault::Unprocessed(n)) = fault {
                    let keep = requests.len().saturating_sub(n).max(1);
                    held.insert(table.clone(), requests.split_off(keep));
                }
            }
            let sent = input.request_items.iter().flatten().map(|(_, r)| r.len());
            (HeldBack::Writes(held), sent.sum())
        } else if let Some(input) = input.downcast_mut::<BatchGetItemInput>() {
            let mut held = HashMap::new();
            for (table, request) in input.request_items.iter_mut().flatten() {
                if let Some(Fault::Unprocessed(n)) = fault {
                    let keep = request.keys.len().saturating_sub(n).max(1);
                    let mut rest = request.clone();
                    rest.keys = request.keys.split_off(keep);
                    held.insert(table.clone(), rest);
                }
            }
            let sent = input
                .request_items
                .iter()
                .flatten()
                .map(|(_, r)| r.keys.len());
            (HeldBack::Keys(held), sent.sum())
        } else if let Some(input) = input.downcast_mut::<PutEventsInput>() {
            let entries = input.entries.get_or_insert_default();
            let mut failed = Vec::new();
            let mut code = String::new();
            if let Some(Fault::FailEntries { indices, code: c }) = fault {
                failed = indices.into_iter().filter(|&i| i < entries.len()).collect();
                failed.sort_unstable();
                failed.dedup();
                for &i in failed.iter().rev() {
                    entries.remove(i);
                }
                code = c.to_owned();
            }
            let sent = entries.len();
            if sent == 0 {
                // EventBridge refuses an empty request: send a harmless one instead; its
                // answer reads as an empty PutEvents result, completed with the refusals.
                cfg.interceptor_state().store_put(NothingToSend);
            }
            (
                HeldBack::Entries {
                    indices: failed,
                    code,
                },
                sent,
            )
        } else {
            return Ok(());
        };
        self.lock().sent.entry(op).or_default().push(sent);
        cfg.interceptor_state().store_put(held);
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, op) = operation(cfg);
        *self.lock().attempts.entry(op.clone()).or_default() += 1;
        let request = context.request_mut();
        let answer = self.take(&op, true).map(|fault| {
            let body = request.body().bytes().unwrap_or_default();
            error_body(&service, &op, &fault, body)
        });
        if answer.is_some() || cfg.load::<NothingToSend>().is_some() {
            request
                .headers_mut()
                .insert("x-amz-target", harmless_target(&service));
            request.headers_mut().insert("content-length", "2");
            *request.body_mut() = SdkBody::from("{}");
        }
        cfg.interceptor_state().store_put(Answer(answer));
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Answer(Some((code, body)))) = cfg.load::<Answer>() {
            let mut response = HttpResponse::new(
                StatusCode::try_from(400).expect("a status"),
                SdkBody::from(body.clone()),
            );
            let headers = response.headers_mut();
            headers.insert("content-type", "application/x-amz-json-1.0");
            headers.insert("x-amzn-errortype", code.clone());
            *context.response_mut() = response;
        }
        Ok(())
    }

    fn modify_before_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(held) = cfg.load::<HeldBack>().cloned() else {
            return Ok(());
        };
        let Some(Ok(output)) = context.output_or_error_mut() else {
            return Ok(());
        };
        match held {
            HeldBack::Writes(held) => {
                if let Some(out) = output.downcast_mut::<BatchWriteItemOutput>() {
                    let unprocessed = out.unprocessed_items.get_or_insert_default();
                    for (table, requests) in held.into_iter().filter(|(_, r)| !r.is_empty()) {
                        unprocessed.entry(table).or_default().extend(requests);
                    }
                }
            }
            HeldBack::Keys(held) => {
                if let Some(out) = output.downcast_mut::<BatchGetItemOutput>() {
                    let unprocessed = out.unprocessed_keys.get_or_insert_default();
                    for (table, keys) in held.into_iter().filter(|(_, k)| !k.keys.is_empty()) {
                        match unprocessed.get_mut(&table) {
                            Some(already) => already.keys.extend(keys.keys),
                            None => {
                                unprocessed.insert(table, keys);
                            }
                        }
                    }
                }
            }
            HeldBack::Entries { indices, code } => {
                if let Some(out) = output.downcast_mut::<PutEventsOutput>() {
                    let results = out.entries.get_or_insert_default();
                    for &i in &indices {
                        let refused = PutEventsResultEntry::builder()
                            .error_code(&code)
                            .error_message("refused (injected)")
                            .build();
                        results.insert(i.min(results.len()), refused);
                    }
                    out.failed_entry_count += i32::try_from(indices.len()).unwrap_or(i32::MAX);
                }
            }
        }
        Ok(())
    }
}
