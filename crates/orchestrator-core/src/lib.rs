//! PiCloud orchestrator-core.
