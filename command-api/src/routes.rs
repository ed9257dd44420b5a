//! The endpoints, each described for OpenAPI by the same annotation that routes it, so the
//! served `/openapi.json` cannot drift from the router.

use axum::{
    Json,
    body::Body,
    extract::{FromRequestParts, Path, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use backend::emf::{Duplicate, Origin};
use events_schema::{Command, Envelope, Metadata, Order, OrderId};
use serde::Serialize;
use tracing::Instrument;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    App, body,
    idempotency::{self, Begin},
    metrics,
    problem::{ApiError, FieldError, Problem},
    reply::{Reply, WriteResponse, etag},
    request::{
        self, AsOf, CORRELATION_ID, EventsRequest, IfMatch, ListRequest, PlaceRequest, QueryParams,
        encode_cursor, encode_events_cursor,
    },
    service::{Idempotent, Write},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ordersource",
        description = "Event-sourced orders: commands append immutable events; reads return the state stored with an event.",
    ),
    components(schemas(Problem, FieldError))
)]
struct ApiDoc;

fn api() -> OpenApiRouter<App> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(place_order, list_orders))
        .routes(routes!(get_order, update_order))
        .routes(routes!(start_order))
        .routes(routes!(complete_order))
        .routes(routes!(cancel_order))
        .routes(routes!(order_events))
        .routes(routes!(order_documents))
        .routes(routes!(order_document))
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of every route [`router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// The whole HTTP API, ready to serve.
pub fn router(app: App) -> axum::Router {
    let (routes, _) = api().split_for_parts();
    let routes = if app.console.enabled {
        routes.merge(crate::console::routes())
    } else {
        routes
    };
    routes
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn(correlate))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(app)
}

/// Who sent the request, as an authenticated identity (in Lambda: the JWT authorizer's
/// `sub` claim), recorded in each event's `metadata.actor`. Only an entrypoint that has
/// authenticated the caller inserts it: a client cannot choose its own.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// The AWS X-Ray trace header the request ran under, recorded in each event's
/// `metadata.traceHeader` so that the trace continues through the bus to the handlers.
/// Only the Lambda entrypoint inserts it (from the invocation's trace context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeader(String);

impl TraceHeader {
    /// Longer than any X-Ray header (`Root=1-<8>-<24>;Parent=<16>;Sampled=1;Lineage=...`).
    const MAX_LEN: usize = 256;

    /// `value` if it looks like an X-Ray trace header: it is copied into every event of the
    /// request, so it is bounded and limited to the characters trace headers use.
    pub fn new(value: &str) -> Option<Self> {
        let plausible = value.starts_with("Root=")
            && value.len() <= Self::MAX_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=;:-_.".contains(&b));
        plausible.then(|| Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The request's correlation id: the client's `X-Correlation-Id`, or a fresh one.
#[derive(Debug, Clone)]
pub(crate) struct CorrelationId(pub(crate) String);

async fn correlate(mut req: axum::extract::Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(CorrelationId(id.clone()));
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        correlation_id = %id,
    );
    let mut response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "answered"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(CORRELATION_ID, v);
    }
    response
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let mut response =
        ApiError::Unavailable("internal error; a write may or may not have been applied: read the order, or retry with the same Idempotency-Key".into()).into_response();
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn wrong_method(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

/// The `{orderId}` path segment, validated. A segment axum cannot decode (not UTF-8) is a
/// problem document like any other bad input, not axum's plain-text 400.
pub(crate) struct OrderPath(OrderId);

impl<S: Send + Sync> FromRequestParts<S> for OrderPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::field(
                    "orderId",
                    format!("orderId in the path is not valid: {}", e.body_text()),
                )
            })?;
        request::order_id(&raw).map(OrderPath)
    }
}

/// `{orderId}` and a document `{name}`.
pub(crate) struct DocumentPath(OrderId, String);

impl<S: Send + Sync> FromRequestParts<S> for DocumentPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((raw, name)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::bad_request(format!("the path is not valid: {}", e.body_text()))
            })?;
        Ok(DocumentPath(request::order_id(&raw)?, name))
    }
}

/// What every write needs from the request line and headers.
pub(crate) struct WriteContext {
    method: Method,
    path: String,
    headers: HeaderMap,
    correlation_id: String,
    actor: Option<String>,
    trace_header: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for WriteContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Self {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            headers: parts.headers.clone(),
            correlation_id: parts
                .extensions
                .get::<CorrelationId>()
                .map(|c| c.0.clone())
                .unwrap_or_default(),
            actor: parts.extensions.get::<Actor>().map(|a| a.0.clone()),
            trace_header: parts.extensions.get::<TraceHeader>().map(|t| t.0.clone()),
        })
    }
}

impl WriteContext {
    /// The console's form post as an API write: `If-Match` is the version its page showed,
    /// so that a stale page is refused (412) instead of overwriting.
    pub(crate) fn expecting(mut self, version: u64) -> Self {
        if let Ok(v) = HeaderValue::from_str(&etag(version)) {
            self.headers.insert(header::IF_MATCH, v);
        }
        self
    }

    /// The request, for the metrics it causes.
    fn origin(&self) -> Origin<'_> {
        Origin {
            correlation_id: &self.correlation_id,
            trace_header: self.trace_header.as_deref(),
        }
    }
}

/// Runs one write and counts it in the `Commands` metric by kind and outcome (and, when
/// accepted, in the console's commands per second).
pub(crate) async fn write(
    app: &App,
    ctx: &WriteContext,
    raw_body: &[u8],
    order_id: &OrderId,
    command: &Command,
    success: StatusCode,
    placement: Option<&PlaceRequest>,
) -> Result<Response, ApiError> {
    let result = apply_write(app, ctx, raw_body, order_id, command, success, placement).await;
    let outcome = match &result {
        Ok(r) if r.headers().contains_key(crate::reply::IDEMPOTENT_REPLAYED) => "Replayed",
        Ok(_) => {
            app.console.hub.command_accepted();
            "Accepted"
        }
        Err(e) if e.status().is_server_error() => "Failed",
        Err(_) => "Rejected",
    };
    backend::emf::command(command_kind(command), outcome, ctx.origin());
    result
}

/// The `Command` dimension of the `Commands` metric.
pub(crate) fn command_kind(command: &Command) -> &'static str {
    match command {
        Command::Place(_) => "PlaceOrder",
        Command::Start => "StartOrder",
        Command::Complete => "CompleteOrder",
        Command::Cancel { .. } => "CancelOrder",
        Command::Update(_) => "UpdateOrder",
    }
}

/// Runs one write: `Idempotency-Key`, `If-Match`, the command service, the reply.
async fn apply_write(
    app: &App,
    ctx: &WriteContext,
    raw_body: &[u8],
    order_id: &OrderId,
    command: &Command,
    success: StatusCode,
    placement: Option<&PlaceRequest>,
) -> Result<Response, ApiError> {
    let if_match = IfMatch::from_headers(&ctx.headers)?;
    let key = request::idempotency_key(&ctx.headers)?;
    let fingerprint = || idempotency::fingerprint(ctx.method.as_str(), &ctx.path, raw_body);
    let guard = match idempotency::begin(
        &app.commands.idempotency,
        ctx.actor.as_deref(),
        key.as_ref(),
        fingerprint,
    )
    .await?
    {
        Begin::Replay(saved) => {
            backend::emf::duplicate(Duplicate::IdempotencyKey, order_id.as_str(), ctx.origin());
            return Ok(Reply::replayed(saved).into_response());
        }
        Begin::Proceed(guard) => guard,
    };
    let saved_reply = |order: &Order| Reply::order(success, order).saved();
    let run = Write {
        order_id,
        command,
        placement,
        if_match: if_match.as_ref(),
        metadata: Metadata {
            correlation_id: ctx.correlation_id.clone(),
            causation_id: None,
            channel: None,
            actor: ctx.actor.clone(),
            idempotency_key: key.map(|k| k.as_str().to_owned()),
            trace_header: ctx.trace_header.clone(),
        },
        idempotent: guard.as_ref().map(|g| Idempotent {
            claimed: &g.claimed,
            response: &saved_reply,
        }),
    };
    let order = app.commands.execute(run).await?;
    if let Some(guard) = guard {
        guard.completed();
    }
    Ok(Reply::order(success, &order).into_response())
}

/// Documents `POST /orders`; the body is parsed field by field (see `request`).
#[derive(ToSchema)]
#[schema(example = json!({"orderId": "ORD-001", "status": "received", "description": "Mantenimiento básico", "registerDate": "2025-01-31T08:00:00Z"}))]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct PlaceOrderBody {
    /// 1..128 of `[A-Za-z0-9._:-]`; the server makes a UUIDv7 when absent.
    order_id: Option<String>,
    /// 1..2000 characters, no bidirectional overrides or zero-width characters. Alias:
    /// `descripcion`.
    description: String,
    /// RFC 3339, at most 9 fractional-second digits, stored to the microsecond; defaults
    /// to now.
    register_date: Option<String>,
    /// `YYYY-MM-DD`, or RFC 3339 (at most 9 fractional-second digits, stored to the
    /// microsecond with its offset). Alias: `fecha_entrega` (also `DD/MM/YYYY`).
    delivery_date: Option<String>,
    /// 1..256 characters, no bidirectional overrides or zero-width characters.
    customer_id: Option<String>,
    /// Must be `received` if sent. Alias: `estado` (`recibida`).
    status: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct UpdateOrderBody {
    /// Must equal the path's when sent.
    order_id: Option<String>,
    /// The target status. Alias: `estado` (`recibida`, `en_proceso`, `completada`, `cancelada`).
    status: Option<String>,
    /// Required when the status becomes `canceled`; refused otherwise. 1..2000 characters.
    reason_for_cancellation: Option<String>,
    description: Option<String>,
    delivery_date: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct CancelOrderBody {
    reason_for_cancellation: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct OrderPage {
    items: Vec<Order>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct EventPage {
    /// The order's events in version order: envelopes with the hash chain.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Envelope>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Health {
    status: String,
    /// Events written but not yet projected into the read model and published; absent
    /// where Lambda drives the pipeline (see the IteratorAge metric there).
    #[serde(skip_serializing_if = "Option::is_none")]
    projector_lag: Option<u64>,
    /// Change feed records the projector parked after its retries (`orders parked list`);
    /// absent where Lambda drives the pipeline (its on-failure queue's depth is alarmed).
    #[serde(skip_serializing_if = "Option::is_none")]
    parked_records: Option<u64>,
    /// The route queues this process polls (empty where Lambda polls them).
    queues: Vec<QueueHealth>,
    /// The intake queue, where this process polls it (absent where Lambda does: see the
    /// `Duplicates` metric of kind `IntakeRequest` and the intake DLQ's alarm there).
    #[serde(skip_serializing_if = "Option::is_none")]
    intake: Option<IntakeHealth>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct IntakeHealth {
    #[serde(flatten)]
    queue: QueueHealth,
    /// What became of the messages since this process started.
    #[serde(flatten)]
    counts: crate::IntakeCounts,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct QueueHealth {
    queue: String,
    /// Waiting to be handled.
    depth: u64,
    /// Being handled (received, not yet deleted).
    in_flight: u64,
    /// In the queue's dead-letter queue.
    dead_letters: u64,
}

impl From<backend::QueueStats> for QueueHealth {
    fn from(s: backend::QueueStats) -> Self {
        QueueHealth {
            queue: s.queue,
            depth: s.visible,
            in_flight: s.in_flight,
            dead_letters: s.dead_letters,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct DocumentPage {
    items: Vec<DocumentItem>,
}

#[derive(Serialize, ToSchema)]
struct DocumentItem {
    name: String,
    size: u64,
    /// Where to fetch it.
    url: String,
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut r = (status, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => {
            ApiError::Unavailable(format!("could not encode the response: {e}")).into_response()
        }
    }
}

#[utoipa::path(post, path = "/orders", tag = "orders",
    request_body(content = PlaceOrderBody, description = "The new order"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = request::IDEMPOTENCY_KEY_DOC),
        ("X-Correlation-Id" = Option<String>, Header, description = "Carried into every event's metadata"),
    ),
    responses(
        (status = 201, description = "Placed (or a retry of the same placement)", body = WriteResponse),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The orderId exists with other content, or the key is in use", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body not sent as Content-Type: application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another request, or the event would be over the 64 KiB published-event limit", body = Problem, content_type = "application/problem+json"),
    ))]
async fn place_order(
    State(app): State<App>,
    ctx: WriteContext,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = body::read(&ctx.headers, body).await?;
    let place = PlaceRequest::parse(body::object(&bytes)?, crate::service::now())?;
    let order_id = place.order_id.clone().unwrap_or_else(OrderId::generate);
    let command = Command::Place(place.place.clone());
    write(
        &app,
        &ctx,
        &bytes,
        &order_id,
        &command,
        StatusCode::CREATED,
        Some(&place),
    )
    .await
}

#[utoipa::path(put, path = "/orders/{orderId}", tag = "orders",
    params(
        ("orderId" = String, Path, description = "The order"),
        ("If-Match" = Option<String>, Header, description = "The ETag read last: 412 if the order changed since"),
        ("Idempotency-Key" = Option<String>, Header, description = request::IDEMPOTENCY_KEY_DOC),
    ),
    request_body(content = UpdateOrderBody),
    responses(
        (status = 200, description = "Applied (or nothing to change)", body = WriteResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a legal transition", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body not sent as Content-Type: application/json", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_order(
    State(app): State<App>,
    OrderPath(order_id): OrderPath,
    ctx: WriteContext,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = body::read(&ctx.headers, body).await?;
    let command = request::parse_update(&order_id, body::object(&bytes)?)?;
    write(
        &app,
        &ctx,
        &bytes,
        &order_id,
        &command,
        StatusCode::OK,
        None,
    )
    .await
}

macro_rules! transition_endpoint {
    ($name:ident, $path:literal, $what:literal, $parse:expr) => {
        #[utoipa::path(post, path = $path, tag = "orders", description = $what,
            params(
                ("orderId" = String, Path),
                ("If-Match" = Option<String>, Header),
                ("Idempotency-Key" = Option<String>, Header, description = request::IDEMPOTENCY_KEY_DOC),
            ),
            responses(
                (status = 200, body = WriteResponse),
                (status = 400, body = Problem, content_type = "application/problem+json"),
                (status = 404, body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "Not a legal transition from the current status", body = Problem, content_type = "application/problem+json"),
                (status = 412, body = Problem, content_type = "application/problem+json"),
                (status = 415, description = "A non-empty body not sent as Content-Type: application/json", body = Problem, content_type = "application/problem+json"),
            ))]
        async fn $name(
            State(app): State<App>,
            OrderPath(order_id): OrderPath,
            ctx: WriteContext,
            body: Body,
        ) -> Result<Response, ApiError> {
            let bytes = body::read(&ctx.headers, body).await?;
            let command = ($parse)(body::object(&bytes)?)?;
            write(&app, &ctx, &bytes, &order_id, &command, StatusCode::OK, None).await
        }
    };
}

transition_endpoint!(
    start_order,
    "/orders/{orderId}/start",
    "received → inprocess",
    |b| request::parse_empty(b, Command::Start)
);
transition_endpoint!(
    complete_order,
    "/orders/{orderId}/complete",
    "inprocess → completed",
    |b| request::parse_empty(b, Command::Complete)
);
transition_endpoint!(
    cancel_order,
    "/orders/{orderId}/cancel",
    "received or inprocess → canceled; body {\"reasonForCancellation\": \"...\"}",
    request::parse_cancel
);

#[utoipa::path(get, path = "/orders/{orderId}", tag = "orders",
    description = "Strongly consistent: the state stored with the order's latest event. `version` returns the state stored with that event; `at` the state stored with the latest event (by version) that occurred at or before that instant.",
    params(
        ("orderId" = String, Path),
        ("version" = Option<u64>, Query, description = "The state after this version"),
        ("at" = Option<String>, Query, description = "The state at this RFC 3339 instant"),
    ),
    responses(
        (status = 200, body = Order, headers(("ETag" = String, description = "The version, quoted"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_order(
    State(app): State<App>,
    OrderPath(order_id): OrderPath,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let as_of = AsOf::parse(&QueryParams::parse(uri.query(), &["version", "at"])?)?;
    let events = &app.commands.events;
    // Each read is of one stored event; the head is read again only to word a 404.
    let found = match as_of {
        AsOf::Latest => events.head(&order_id).await?.map(|h| h.order),
        AsOf::Version(v) => events.at_version(&order_id, v).await?,
        AsOf::At(at) => events.at_time(&order_id, at).await?,
    };
    let order = match found {
        Some(order) => order,
        None => {
            let head = match as_of {
                AsOf::Latest => None,
                _ => events.head(&order_id).await?,
            };
            return Err(ApiError::NotFound(match (head, as_of) {
                (None, _) => format!("order {order_id} does not exist"),
                (Some(h), AsOf::Version(v)) => format!(
                    "order {order_id} has no version {v}; its latest is {}",
                    h.order.version
                ),
                (Some(_), _) => format!("order {order_id} did not exist yet at that time"),
            }));
        }
    };
    let mut response = json_response(StatusCode::OK, &order);
    if let Ok(v) = HeaderValue::from_str(&etag(order.version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/orders", tag = "orders",
    description = "From the read model: eventually consistent, ordered by creation time.",
    params(
        ("status" = Option<String>, Query, description = "received, inprocess, completed or canceled"),
        ("limit" = Option<usize>, Query, description = "1..100, default 20"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses(
        (status = 200, body = OrderPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_orders(State(app): State<App>, uri: axum::http::Uri) -> Result<Response, ApiError> {
    let q = QueryParams::parse(uri.query(), &["status", "limit", "cursor"])?;
    let req = ListRequest::parse(&q)?;
    let page = app
        .read_model
        .list(&backend::ListQuery {
            status: req.status,
            limit: req.limit,
            after: req.after,
            newest_first: false,
        })
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &OrderPage {
            items: page.items,
            next_cursor: page.next.as_ref().map(encode_cursor),
        },
    ))
}

#[utoipa::path(get, path = "/orders/{orderId}/events", tag = "orders",
    description = "The order's events in version order, a page at a time (an order has at most 1000).",
    params(
        ("orderId" = String, Path),
        ("limit" = Option<usize>, Query, description = "1..100, default 100"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses(
        (status = 200, body = EventPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn order_events(
    State(app): State<App>,
    OrderPath(order_id): OrderPath,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(uri.query(), &["limit", "cursor"])?;
    let req = EventsRequest::parse(&q, &order_id)?;
    let page = app
        .commands
        .events
        .events(&order_id, req.after, req.limit)
        .await?;
    if page.items.is_empty() && app.commands.events.head(&order_id).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "order {order_id} does not exist"
        )));
    }
    Ok(json_response(
        StatusCode::OK,
        &EventPage {
            next_cursor: page.next.map(|v| encode_events_cursor(v, &order_id)),
            items: page.items,
        },
    ))
}

#[utoipa::path(get, path = "/orders/{orderId}/documents", tag = "orders",
    description = "The documents the status handlers wrote for the order, in event order.",
    params(("orderId" = String, Path)),
    responses(
        (status = 200, body = DocumentPage),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn order_documents(
    State(app): State<App>,
    OrderPath(order_id): OrderPath,
) -> Result<Response, ApiError> {
    let docs = app.documents.list(&order_id).await?;
    if docs.is_empty() && app.commands.events.head(&order_id).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "order {order_id} does not exist"
        )));
    }
    let items = docs
        .into_iter()
        .map(|d| DocumentItem {
            url: format!("/orders/{order_id}/documents/{}", d.name),
            name: d.name,
            size: d.size,
        })
        .collect();
    Ok(json_response(StatusCode::OK, &DocumentPage { items }))
}

#[utoipa::path(get, path = "/orders/{orderId}/documents/{name}", tag = "orders",
    description = "The document as written (JSON, or the invoice as application/pdf); on AWS a redirect to a presigned S3 URL that expires, so the document never passes through the API.",
    params(("orderId" = String, Path), ("name" = String, Path)),
    responses(
        (status = 200, description = "The document, with the content type it was written with", content_type = "application/pdf"),
        (status = 307, description = "AWS: download it from the presigned S3 URL in Location (valid for the configured expiry, 15 minutes by default)"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn order_document(
    State(app): State<App>,
    DocumentPath(order_id, name): DocumentPath,
) -> Result<Response, ApiError> {
    if let Some(url) = app
        .documents
        .link(&order_id, &name, app.document_link_expiry)
        .await?
    {
        let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
        let location = HeaderValue::from_str(&url)
            .map_err(|e| backend::StoreError::new("presigning a document link", e))?;
        r.headers_mut().insert(header::LOCATION, location);
        // The link expires: a cached redirect would outlive it.
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(r);
    }
    let Some(doc) = app.documents.get(&order_id, &name).await? else {
        return Err(ApiError::NotFound(format!(
            "order {order_id} has no document {name:?}"
        )));
    };
    let mut r = (StatusCode::OK, doc.body).into_response();
    if let Ok(v) = HeaderValue::from_str(&doc.content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(r)
}

#[utoipa::path(get, path = "/health", tag = "operations",
    description = "The pipeline's state: projector lag, parked records and, per route queue, depth, in-flight and dead letters; where this process polls the intake queue, its depth, in-flight, dead letters and messages by outcome.",
    responses((status = 200, body = Health), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn health(State(app): State<App>) -> Result<Json<Health>, ApiError> {
    let intake = match &app.intake {
        Some(source) => Some(IntakeHealth {
            queue: QueueHealth::from(source.queues.stats(&source.queue).await?),
            counts: source.counters.read(),
        }),
        None => None,
    };
    let Some(pipeline) = &app.pipeline else {
        return Ok(Json(Health {
            status: "ok".into(),
            projector_lag: None,
            parked_records: None,
            queues: Vec::new(),
            intake,
        }));
    };
    let state = pipeline.state().await?;
    Ok(Json(Health {
        status: "ok".into(),
        projector_lag: Some(state.projector_lag),
        parked_records: Some(state.parked),
        queues: state.queues.into_iter().map(QueueHealth::from).collect(),
        intake,
    }))
}

/// The Prometheus text exposition format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

#[utoipa::path(get, path = "/metrics", tag = "operations",
    description = "Prometheus text exposition format 0.0.4: the backend's own counters, the projector lag and, per route queue and the intake queue, depth, in-flight and dead letters, intake messages by outcome (where this process drives the pipeline), and the process's CPU seconds.",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
async fn metrics(State(app): State<App>) -> Result<Response, ApiError> {
    let pipeline = match &app.pipeline {
        Some(p) => Some(p.state().await?),
        None => None,
    };
    let mut samples = metrics::samples(app.telemetry.metrics(), pipeline.as_ref());
    if let Some(source) = &app.intake {
        let queue = source.queues.stats(&source.queue).await?;
        samples.extend(metrics::intake_samples(&queue, source.counters.read()));
    }
    let mut r = metrics::render(&samples).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_TEXT),
    );
    Ok(r)
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json")))]
async fn openapi_json() -> Response {
    static DOC: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| openapi().to_json().unwrap_or_default());
    let mut r = DOC.as_str().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
