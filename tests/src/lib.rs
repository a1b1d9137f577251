pub mod api;
pub mod harness;
