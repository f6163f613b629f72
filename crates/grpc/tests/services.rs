//! Health, reflection and graceful shutdown over a real socket.

mod support;

use std::time::Duration;

use support::Server;
use switchyard_grpc::QUEUE_SERVICE;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_queue() {
    let server = Server::start().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", QUEUE_SERVICE] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "service {service:?}");
    }
    let err = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), tonic::Code::NotFound);
}

/// One reflection request over the bidirectional stream.
async fn reflect(server: &Server, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection stream")
        .into_inner();
    responses
        .message()
        .await
        .expect("reflection response")
        .expect("one response")
        .message_response
        .expect("a message")
}

#[tokio::test]
async fn reflection_lists_and_describes_the_api() {
    let server = Server::start().await;
    let MessageResponse::ListServicesResponse(list) =
        reflect(&server, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        QUEUE_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }

    // The file defining a method comes with its comments, so clients see the contract.
    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &server,
        MessageRequest::FileContainingSymbol(format!("{QUEUE_SERVICE}.CompleteJob")),
    )
    .await
    else {
        panic!("expected file descriptors");
    };
    use prost::Message;
    let decoded: Vec<_> = files
        .file_descriptor_proto
        .iter()
        .map(|raw| prost_types::FileDescriptorProto::decode(raw.as_slice()).expect("descriptor"))
        .collect();
    let queue = decoded
        .iter()
        .find(|f| f.name() == "switchyard/v1/queue.proto")
        .expect("queue.proto served");
    assert!(queue.source_code_info.is_some(), "comments are served");
}

#[tokio::test]
async fn shutdown_drains_and_returns() {
    let server = Server::start().await;
    let addr = server.addr;
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("shutdown within 10 s")
        .expect("clean shutdown");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn shutdown_waits_for_a_long_poll_in_flight() {
    let server = Server::start().await;
    let mut client = server.queue().await;
    let poll = tokio::spawn(async move {
        let request = switchyard_proto::v1::ClaimRequest {
            agent_id: "agent-1".into(),
            pool: "idle".into(),
            wait_seconds: 2,
            ..Default::default()
        };
        client.claim(request).await
    });
    // Let the claim reach the server before shutting down.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("shutdown within 10 s")
        .expect("clean shutdown");
    let claimed = poll
        .await
        .expect("task")
        .expect("the in-flight claim was answered");
    assert!(claimed.into_inner().jobs.is_empty());
}
