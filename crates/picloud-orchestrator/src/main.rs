//! `picloud-orchestrator`: the HTTP ingress: the in-memory routing table and script endpoints /{app}/{script}, as its own process in cluster mode.
//!
//! Cluster mode is not built yet. Everything this process will do runs today
//! inside the all-in-one `picloud serve`; this binary only says so, so that
//! packaging and deployment scripts can already refer to it.

const ROLE: &str = "orchestrator";
const WHAT: &str =
    "the HTTP ingress: the in-memory routing table and script endpoints /{app}/{script}";

include!("../../cluster_stub.rs");
