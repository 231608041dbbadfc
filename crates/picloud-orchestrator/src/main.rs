//! `picloud-orchestrator`: the HTTP ingress: the in-memory routing table and script endpoints /{app}/{script}, as its own process in cluster mode.
//!
//! Cluster mode is not built yet. Everything this process will do runs today
//! inside the all-in-one `picloud serve`; this binary only says so, so that
//! packaging and deployment scripts can already refer to it.

use std::process::ExitCode;

const ROLE: &str = "orchestrator";
const WHAT: &str =
    "the HTTP ingress: the in-memory routing table and script endpoints /{app}/{script}";

fn main() -> ExitCode {
    let first = std::env::args().nth(1);
    match first.as_deref() {
        Some("--version" | "-V") => {
            println!("picloud-{ROLE} {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            println!("{}", message());
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{}", message());
            ExitCode::from(2)
        }
    }
}

fn message() -> String {
    let version = env!("CARGO_PKG_VERSION");
    [
        format!("picloud-{ROLE} {version}: {WHAT}."),
        String::new(),
        "Cluster mode (manager, orchestrators and executors as separate processes) is not".into(),
        "available yet: this binary only prints this message. Run everything in one".into(),
        "process instead:".into(),
        String::new(),
        "    picloud serve".into(),
        String::new(),
        "See docs/configuration.md.".into(),
    ]
    .join("\n")
}
