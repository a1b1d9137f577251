pub mod api;
pub mod cluster;
pub mod harness;
pub mod pg;
