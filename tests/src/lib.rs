pub mod api;
pub mod cluster;
pub mod crash;
pub mod harness;
pub mod pg;
