//! `sqlx::migrate!` embeds the migration files at compile time; rebuild this
//! crate whenever one of them changes.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}
