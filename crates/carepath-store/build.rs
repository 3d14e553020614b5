//! The migrations are embedded in the crate (`sqlx::migrate!`): a migration added or
//! changed must rebuild it.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
