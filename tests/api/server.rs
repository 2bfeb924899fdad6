//! The server around the API: health, reflection, the HTTP JWKS route, request ids, unknown
//! methods, and request limits (message size, deadlines).

use std::time::{Duration, Instant};

use tokenmint::proto::v1 as pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::helpers::{DatabaseLock, TestApp, authed, eventually, http_get};

#[tokio::test]
async fn health_reports_serving() {
    let app = TestApp::spawn().await;
    let channel = tonic::transport::Endpoint::from_shared(app.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let overall = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overall.status, ServingStatus::Serving as i32);
    let service = HealthCheckRequest {
        service: "tokenmint.v1.TokenService".into(),
    };
    assert_eq!(
        health.check(service).await.unwrap().into_inner().status,
        ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn reflection_lists_the_token_service_in_v1_and_v1alpha() {
    use tokio_stream::StreamExt;
    let app = TestApp::spawn().await;
    let channel = tonic::transport::Endpoint::from_shared(app.url())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut v1 = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
        channel.clone(),
    );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut stream = v1
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.next().await.unwrap().unwrap();
    let Some(
        tonic_reflection::pb::v1::server_reflection_response::MessageResponse::ListServicesResponse(
            list,
        ),
    ) = response.message_response
    else {
        panic!("unexpected reflection response");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "tokenmint.v1.TokenService")
    );

    let mut v1alpha =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(
            channel,
        );
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "tokenmint.v1.TokenService".into(),
            ),
        ),
    };
    let mut stream = v1alpha
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.next().await.unwrap().unwrap();
    assert!(matches!(
        response.message_response,
        Some(tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
}

#[tokio::test]
async fn jwks_is_served_over_plain_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let jwks: serde_json::Value = serde_json::from_str(body).unwrap();
    let grpc = app
        .client()
        .await
        .get_jwks(pb::GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), grpc.keys.len());
    assert_eq!(jwks["keys"][0]["kid"], grpc.keys[0].kid);
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    assert_eq!(jwks["keys"][0]["use"], "sig");
    assert!(jwks["keys"][0].get("y").is_none());
}

#[tokio::test]
async fn unknown_grpc_methods_are_unimplemented() {
    let app = TestApp::spawn().await;
    let status = app
        .call_raw("/tokenmint.v1.NoSuchService/Nope")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut request = authed(&caller, pb::ListTokensRequest::default());
    request
        .metadata_mut()
        .insert("x-request-id", "trace-123".parse().unwrap());
    let response = app.client().await.list_tokens(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "trace-123"
    );
    let response = app
        .client()
        .await
        .list_tokens(authed(&caller, pb::ListTokensRequest::default()))
        .await
        .unwrap();
    let generated = response
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
}

#[tokio::test]
async fn oversized_requests_are_refused_with_resource_exhausted() {
    let app = TestApp::spawn_with(|s| s.server.max_message_bytes = 4096).await;
    let caller = app
        .bootstrap("alice", &["user_manage", "wallet_view"])
        .await;
    let mut client = app.client().await;
    let status = client
        .create_token(authed(
            &caller,
            pb::CreateTokenRequest {
                label: "big".into(),
                description: "x".repeat(8192),
                scopes: vec!["wallet_view".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("4096"), "{}", status.message());
    let listed = client
        .list_tokens(authed(&caller, pb::ListTokensRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !listed.tokens.iter().any(|t| t.label == "big"),
        "nothing was created"
    );
}

/// CreateToken for a `wallet_view` token labelled `label`, as `caller`.
fn wallet_view_request(caller: &str, label: &str) -> tonic::Request<pb::CreateTokenRequest> {
    authed(
        caller,
        pb::CreateTokenRequest {
            label: label.into(),
            scopes: vec!["wallet_view".into()],
            ..Default::default()
        },
    )
}

/// Waits until `/metrics` reports `n` gRPC requests running (at most 5 s).
async fn wait_for_in_flight(app: &TestApp, n: usize) {
    let series = format!("tokenmint_rpc_in_flight {n}");
    let reached = eventually(Duration::from_secs(5), || {
        let series = series.clone();
        async move {
            let (_, _, metrics) = http_get(app.addr, "/metrics").await;
            metrics.lines().any(|l| l == series).then_some(())
        }
    })
    .await;
    assert!(reached.is_some(), "never saw {series}");
}

#[tokio::test]
async fn a_callers_deadline_ends_an_rpc_stuck_on_the_database() {
    let app = TestApp::spawn().await;
    let caller = app
        .bootstrap("alice", &["user_manage", "wallet_view"])
        .await;
    let mut client = app.client().await;
    let lock = DatabaseLock::take(&app).await;
    let mut request = wallet_view_request(&caller, "late");
    request.set_timeout(Duration::from_millis(300)); // sent as `grpc-timeout: 300m`
    let started = Instant::now();
    let status = client.create_token(request).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // tonic answers an expired deadline with CANCELLED ("Timeout expired").
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");

    // The server gave up on the RPC too, and counts it.
    let series = r#"tokenmint_rpc_requests_total{service="tokenmint.v1.TokenService",method="CreateToken",code="CANCELLED"} 1"#;
    let counted = eventually(Duration::from_secs(5), || async {
        let (_, _, metrics) = http_get(app.addr, "/metrics").await;
        metrics.lines().any(|l| l == series).then_some(())
    })
    .await;
    lock.release().await;
    assert!(
        counted.is_some(),
        "the abandoned RPC is counted as CANCELLED"
    );
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_rpcs_and_keeps_what_they_wrote() {
    let mut app = TestApp::spawn().await;
    let caller = app
        .bootstrap("alice", &["user_manage", "wallet_view"])
        .await;
    let mut client = app.client().await;
    let lock = DatabaseLock::take(&app).await;
    let request = wallet_view_request(&caller, "in flight");
    let in_flight = tokio::spawn(async move { client.create_token(request).await });
    wait_for_in_flight(&app, 1).await;
    let stop = app.begin_stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stop.is_finished(),
        "the server waits for the RPC in flight"
    );
    lock.release().await;
    let created = in_flight
        .await
        .unwrap()
        .expect("the in-flight RPC completes");
    stop.await.unwrap().expect("a clean stop");

    app.restart().await;
    let id = created.into_inner().token.unwrap().id;
    let got = app
        .client()
        .await
        .get_token(authed(&caller, pb::GetTokenRequest { id }))
        .await;
    assert!(got.is_ok(), "what the drained RPC wrote is kept: {got:?}");
}

#[tokio::test]
async fn beyond_max_in_flight_requests_the_server_sheds_load_but_stays_observable() {
    let app = TestApp::spawn_with(|s| {
        s.server.max_in_flight_requests = std::num::NonZeroUsize::new(1).expect("nonzero")
    })
    .await;
    let caller = app
        .bootstrap("alice", &["user_manage", "wallet_view"])
        .await;
    let mut client = app.client().await;
    let lock = DatabaseLock::take(&app).await;
    let request = wallet_view_request(&caller, "holds the only slot");
    let mut holder = client.clone();
    let in_flight = tokio::spawn(async move { holder.create_token(request).await });
    wait_for_in_flight(&app, 1).await;

    let shed = eventually(Duration::from_secs(5), || {
        let mut client = client.clone();
        let caller = caller.clone();
        async move {
            let status = client
                .list_scopes(authed(&caller, pb::ListScopesRequest {}))
                .await
                .err()?;
            (status.code() == Code::Unavailable).then_some(status)
        }
    })
    .await
    .expect("a second request is shed while the first holds the only slot");
    assert!(shed.message().contains("overloaded"), "{shed:?}");

    // Health checks and metrics are never shed.
    let health = HealthClient::new(
        tonic::transport::Endpoint::from_shared(app.url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
    .check(HealthCheckRequest::default())
    .await;
    assert!(health.is_ok(), "{health:?}");
    let (status_line, _, metrics) = http_get(app.addr, "/metrics").await;
    assert!(status_line.contains("200"));
    let series = r#"tokenmint_rpc_requests_total{service="tokenmint.v1.TokenService",method="ListScopes",code="UNAVAILABLE"}"#;
    assert!(metrics.contains(series), "shed requests are counted");

    lock.release().await;
    in_flight.await.unwrap().expect("the slot holder completes");
    client
        .list_scopes(authed(&caller, pb::ListScopesRequest {}))
        .await
        .expect("with the slot free, requests are served again");
}

#[tokio::test]
async fn a_stream_holds_its_in_flight_slot_until_it_ends() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_response};

    let app = TestApp::spawn_with(|s| {
        s.server.max_in_flight_requests = std::num::NonZeroUsize::new(1).expect("nonzero")
    })
    .await;
    let caller = app.bootstrap("alice", &["user_manage"]).await;
    let mut client = app.client().await;
    let channel = tonic::transport::Endpoint::from_shared(app.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (send, requests) = tokio::sync::mpsc::channel(1);
    let list_services = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    send.send(list_services).await.unwrap();
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .expect("the stream opens")
        .into_inner();
    let first = stream.message().await.unwrap().expect("one answer");
    assert!(matches!(
        first.message_response,
        Some(server_reflection_response::MessageResponse::ListServicesResponse(_))
    ));

    // The stream's headers and first message are out; the stream is still open.
    wait_for_in_flight(&app, 1).await;
    let status = client
        .list_scopes(authed(&caller, pb::ListScopesRequest {}))
        .await
        .expect_err("the open stream holds the only slot");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    drop(send);
    assert!(stream.message().await.unwrap().is_none(), "the stream ends");
    wait_for_in_flight(&app, 0).await;
    client
        .list_scopes(authed(&caller, pb::ListScopesRequest {}))
        .await
        .expect("the slot is free once the stream has ended");
}
