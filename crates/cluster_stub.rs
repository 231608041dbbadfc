// The behaviour shared by the three cluster binaries while cluster mode is
// not built: each `main.rs` defines `ROLE` and `WHAT` and includes this file.

use std::process::ExitCode;

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
