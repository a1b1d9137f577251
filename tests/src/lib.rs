pub mod api;
pub mod browser;
pub mod cluster;
pub mod crash;
pub mod harness;
pub mod helm;
pub mod pg;
