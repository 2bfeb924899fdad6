//! `RequireToken` in front of a tiny tonic service (gRPC statuses, claims in the handler, peer
//! address checks) and of a plain `http` service (HTTP statuses), with tokens from a real tokenmint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokenmint::proto::v1 as pb;
use tokenmint_verify::{Claims, OnlineVerifier, RequireToken};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::{Layer, ServiceExt, service_fn};

use crate::helpers::{TestApp, authed, strings};

/// A health service whose `Check` answers SERVING only for requests carrying `Claims` for
/// `alice` — i.e. the handler sees what the layer verified.
struct ClaimsHealth;

#[tonic::async_trait]
impl Health for ClaimsHealth {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        let claims = request
            .extensions()
            .get::<Claims>()
            .ok_or_else(|| tonic::Status::internal("no claims in the request extensions"))?;
        if claims.sub != "alice" {
            return Err(tonic::Status::internal(format!("claims of {}", claims.sub)));
        }
        Ok(tonic::Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    type WatchStream = tokio_stream::Empty<Result<HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }
}

/// Serves [`ClaimsHealth`] behind `layer` on a free port; returns a connected client.
async fn serve(layer: RequireToken) -> HealthClient<Channel> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(HealthServer::new(ClaimsHealth))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    HealthClient::new(channel)
}

async fn check(client: &HealthClient<Channel>, token: Option<&str>) -> Result<(), tonic::Status> {
    let request = match token {
        Some(token) => authed(token, HealthCheckRequest::default()),
        None => tonic::Request::new(HealthCheckRequest::default()),
    };
    let response = client.clone().check(request).await?.into_inner();
    assert_eq!(response.status, ServingStatus::Serving as i32);
    Ok(())
}

fn code(result: Result<(), tonic::Status>) -> Code {
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn grpc_layer_refuses_missing_invalid_and_underscoped_tokens_and_passes_claims() {
    let app = TestApp::spawn().await;
    let client = serve(RequireToken::new(app.verifier().await).scopes(&["wallet_view"])).await;
    let valid = app.bootstrap("alice", &["wallet_view"]).await;
    let other_scope = app.bootstrap("alice", &["trade_view"]).await;
    let local_only = app
        .bootstrap_with("alice", &["wallet_view"], |r| {
            r.ips = strings(&["127.0.0.1"])
        })
        .await;
    let elsewhere = app
        .bootstrap_with("alice", &["wallet_view"], |r| {
            r.ips = strings(&["10.0.0.0/8"])
        })
        .await;

    let missing = check(&client, None).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert_eq!(missing.message(), "missing bearer token");
    let garbage = check(&client, Some("garbage")).await.unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated);
    assert_eq!(garbage.message(), "invalid bearer token");
    assert_eq!(code(check(&client, Some(&valid)).await), Code::Ok);
    assert_eq!(
        code(check(&client, Some(&other_scope)).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(check(&client, Some(&local_only)).await),
        Code::Ok,
        "peer 127.0.0.1"
    );
    assert_eq!(
        code(check(&client, Some(&elsewhere)).await),
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn grpc_layer_with_online_check_refuses_revoked_tokens() {
    let app = TestApp::spawn().await;
    let manager = app.manager("alice").await;
    let online = OnlineVerifier::connect(app.url(), &manager, Duration::ZERO)
        .await
        .expect("online verifier connects");
    let client = serve(RequireToken::new(app.verifier().await).online(online)).await;
    let created = app
        .create_token(
            &manager,
            pb::CreateTokenRequest {
                label: "layer".into(),
                scopes: strings(&["wallet_view"]),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        code(check(&client, Some(&created.raw_token)).await),
        Code::Ok
    );

    let id = created.token.expect("token").id;
    app.client()
        .await
        .revoke_token(authed(
            &manager,
            pb::RevokeTokenRequest { id, cascade: false },
        ))
        .await
        .expect("RevokeToken");

    assert_eq!(
        code(check(&client, Some(&created.raw_token)).await),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn http_layer_answers_with_http_statuses_and_passes_claims() {
    let app = TestApp::spawn().await;
    let layer = RequireToken::new(app.verifier().await).scopes(&["wallet_view"]);
    let service = layer.layer(service_fn(|request: Request<String>| async move {
        let sub = request
            .extensions()
            .get::<Claims>()
            .map(|c| c.sub.clone())
            .unwrap_or_default();
        Ok::<_, Infallible>(Response::new(sub))
    }));
    let valid = app.bootstrap("alice", &["wallet_view"]).await;
    let other_scope = app.bootstrap("alice", &["trade_view"]).await;
    let call = |authorization: Option<String>| {
        let service = service.clone();
        async move {
            let mut request = Request::builder().uri("/wallet");
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            service
                .oneshot(request.body(String::new()).unwrap())
                .await
                .unwrap()
        }
    };

    let ok = call(Some(format!("Bearer {valid}"))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.body(), "alice");

    let missing = call(None).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert!(missing.headers().get("grpc-status").is_none());

    let invalid = call(Some("Bearer not.a.token".into())).await;
    assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        invalid.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );

    let basic = call(Some(format!("Basic {valid}"))).await;
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    let forbidden = call(Some(format!("Bearer {other_scope}"))).await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        forbidden.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"wallet_view\""
    );
    assert!(forbidden.body().is_empty());
}
