//! End-to-end tests of the real `switchyard` binary over real sockets: REST and gRPC on
//! PostgreSQL and SQLite, readiness, configuration failures, and bad input.

mod agent_states;
mod agents;
mod agents_mtls;
mod artifact_store;
mod auth;
mod cli;
mod config;
mod deploy_cli;
mod deployment_notifications;
mod deployments;
mod grpc;
mod ingest;
mod ingest_agent;
mod ingest_cli;
mod log_tail;
mod promises;
mod rest;
mod retention;
mod support;
mod ws;
