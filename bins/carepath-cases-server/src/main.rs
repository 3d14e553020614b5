//! Thin service binary (being written).
fn main() {}
