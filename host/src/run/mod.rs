//! A run's life after it is stored: its job is built here (`build.rs`).

pub(crate) mod build;
