#![allow(unused_imports)]
/// Not a #[tool] function.
fn helper() {}

airlock_sdk::export_tools!(helper);

fn main() {}
