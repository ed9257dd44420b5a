//! The command API Lambda: the same axum router `orders dev` serves, behind API Gateway's
//! HTTP API, on the AWS adapters. Clients are built once per execution environment.

use axum::extract::Request;
use backend::aws::{Aws, AwsConfig};
use command_api::{Actor, App, router};
use lambda_http::{RequestExt, request::RequestContext};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // JSON when the function's log format is JSON (AWS_LAMBDA_LOG_FORMAT).
    lambda_http::tracing::init_default_subscriber();
    let aws = Aws::connect(AwsConfig::from_env()).await?;
    // Lambda's event source mappings drive the projector and handlers, not this process.
    let app = App::new(&aws.ports(), events_schema::route_table()).without_pipeline();
    let router = router(app).layer(axum::middleware::map_request(with_actor));
    lambda_http::run(router).await
}

/// With the HTTP API's JWT authorizer on, API Gateway has verified the token and passes
/// its claims in the request context: the `sub` claim becomes the events' actor.
async fn with_actor(mut req: Request) -> Request {
    if let Some(sub) = jwt_subject(&req) {
        req.extensions_mut().insert(Actor(sub));
    }
    req
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
