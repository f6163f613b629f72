//! The agent against a scripted `AgentService` on a real socket, through its public API only.

mod helpers;
mod lifecycle;
mod mtls;
mod server;
mod session;
