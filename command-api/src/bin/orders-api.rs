//! The command API Lambda: the same axum router `orders dev` serves, behind API Gateway's
//! HTTP API, on the AWS adapters. Clients are built once per execution environment.

use axum::extract::Request;
use backend::aws::{Aws, AwsConfig};
use command_api::{Actor, App, TraceHeader, router};
use lambda_http::{RequestExt, request::RequestContext};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // JSON when the function's log format is JSON (AWS_LAMBDA_LOG_FORMAT); metrics as EMF.
    lambda_http::tracing::init_default_subscriber();
    backend::emf::emit_to_stdout();
    let link_expiry = match std::env::var(command_api::ENV_DOCUMENT_LINK_EXPIRY) {
        Ok(seconds) => command_api::parse_document_link_expiry(&seconds)
            .map_err(|e| format!("{}: {e}", command_api::ENV_DOCUMENT_LINK_EXPIRY))?,
        Err(_) => command_api::DEFAULT_DOCUMENT_LINK_EXPIRY,
    };
    let aws = Aws::connect(AwsConfig::from_env()).await?;
    // Lambda's event source mappings drive the projector and handlers, not this process.
    let app = App::new(&aws.ports(), events_schema::route_table())
        .without_pipeline()
        .with_document_link_expiry(link_expiry);
    // The operator console is off unless the deployment turns it on (then behind the same
    // authorizer as the API; its event stream answers one event per request here).
    let app = match std::env::var(command_api::ENV_CONSOLE).as_deref() {
        Ok("enabled") => app,
        _ => app.without_console(),
    };
    let router = router(app).layer(axum::middleware::map_request(with_caller));
    lambda_http::run(router).await
}

/// With the HTTP API's JWT authorizer on, API Gateway has verified the token and passes
/// its claims in the request context: the `sub` claim becomes the events' actor. The
/// invocation's X-Ray trace header goes into the events too, to be continued by the bus.
async fn with_caller(mut req: Request) -> Request {
    if let Some(sub) = jwt_subject(&req) {
        req.extensions_mut().insert(Actor(sub));
    }
    if let Some(trace) = trace_header(&req) {
        req.extensions_mut().insert(trace);
    }
    req
}

/// The trace this invocation runs in: Lambda's (with active tracing, its segment is the
/// function's; HTTP APIs have no X-Ray support of their own), else the `X-Amzn-Trace-Id`
/// header API Gateway forwarded. Not read from the process environment: `_X_AMZN_TRACE_ID`
/// is shared by concurrent invocations.
fn trace_header<B>(req: &http::Request<B>) -> Option<TraceHeader> {
    let from_lambda = req
        .lambda_context_ref()
        .and_then(|c| c.xray_trace_id.as_deref())
        .and_then(TraceHeader::new);
    from_lambda.or_else(|| {
        req.headers()
            .get("x-amzn-trace-id")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceHeader::new)
    })
}

fn jwt_subject<B>(req: &http::Request<B>) -> Option<String> {
    let RequestContext::ApiGatewayV2(context) = req.request_context_ref()? else {
        return None;
    };
    let sub = context
        .authorizer
        .as_ref()?
        .jwt
        .as_ref()?
        .claims
        .get("sub")?;
    (!sub.is_empty()).then(|| sub.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::aws_lambda_events::apigw::{
        ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerJwtDescription,
        ApiGatewayV2httpRequestContext,
    };

    fn request_with_claims(claims: &[(&str, &str)]) -> Request {
        let mut jwt = ApiGatewayRequestAuthorizerJwtDescription::default();
        jwt.claims = claims
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.jwt = Some(jwt);
        let mut context = ApiGatewayV2httpRequestContext::default();
        context.authorizer = Some(authorizer);
        Request::new(axum::body::Body::empty())
            .with_request_context(RequestContext::ApiGatewayV2(context))
    }

    const TRACE: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    const FORWARDED: &str = "Root=1-67891233-abcdef012345678912345678";

    fn request_in_trace(lambda: Option<&str>, header: Option<&str>) -> Request {
        let mut req = Request::new(axum::body::Body::empty());
        if let Some(header) = header {
            req.headers_mut()
                .insert("x-amzn-trace-id", header.parse().expect("header value"));
        }
        if let Some(trace) = lambda {
            let mut context = lambda_http::Context::default();
            context.xray_trace_id = Some(trace.to_owned());
            req = req.with_lambda_context(context);
        }
        req
    }

    fn traced(req: &Request) -> Option<String> {
        trace_header(req).map(|t| t.as_str().to_owned())
    }

    #[test]
    fn the_invocations_trace_is_preferred_to_the_forwarded_header() {
        let both = request_in_trace(Some(TRACE), Some(FORWARDED));
        assert_eq!(traced(&both).as_deref(), Some(TRACE));
        let header_only = request_in_trace(None, Some(FORWARDED));
        assert_eq!(traced(&header_only).as_deref(), Some(FORWARDED));
        assert_eq!(traced(&request_in_trace(None, None)), None);
    }

    #[test]
    fn a_value_that_is_not_a_trace_header_is_not_recorded() {
        let long = format!("Root=1-{}", "a".repeat(300));
        for bad in ["", "Sampled=1", "Root=1-a;<script>", long.as_str()] {
            assert_eq!(traced(&request_in_trace(None, Some(bad))), None, "{bad}");
        }
        // A bad forwarded header does not hide Lambda's own trace.
        let req = request_in_trace(Some(TRACE), Some("Sampled=1"));
        assert_eq!(traced(&req).as_deref(), Some(TRACE));
    }

    #[tokio::test]
    async fn the_caller_layer_inserts_the_trace_header_for_the_router() {
        let req = with_caller(request_in_trace(Some(TRACE), None)).await;
        assert_eq!(
            req.extensions()
                .get::<TraceHeader>()
                .map(TraceHeader::as_str),
            Some(TRACE)
        );
    }

    #[test]
    fn the_jwt_sub_claim_is_the_actor() {
        let req = request_with_claims(&[("sub", "user-42"), ("scope", "orders")]);
        assert_eq!(jwt_subject(&req).as_deref(), Some("user-42"));
    }

    #[test]
    fn without_an_authorizer_or_sub_there_is_no_actor() {
        assert_eq!(jwt_subject(&Request::new(axum::body::Body::empty())), None);
        assert_eq!(
            jwt_subject(&request_with_claims(&[("scope", "orders")])),
            None
        );
        assert_eq!(jwt_subject(&request_with_claims(&[("sub", "")])), None);
    }
}
