//! `picloud-manager`: the control plane: the store (PostgreSQL) and the management API under /api/v1, as its own process in cluster mode.
//!
//! Cluster mode is not built yet. Everything this process will do runs today
//! inside the all-in-one `picloud serve`; this binary only says so, so that
//! packaging and deployment scripts can already refer to it.

const ROLE: &str = "manager";
const WHAT: &str = "the control plane: the store (PostgreSQL) and the management API under /api/v1";

include!("../../cluster_stub.rs");
