//! PiCloud's benchmarks; see docs/benchmarks.md.
