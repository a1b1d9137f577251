//! Weir: a job dispatcher whose policies are WebAssembly component plugins.
//!
//! The life of a run, module by module (see ARCHITECTURE.md):
//! [`api`] receives it → [`dispatcher`] validates and stores it ([`store`]) →
//! [`scheduler`] releases it when priority and every [`domain::ConcurrencyLimit`] allow →
//! [`launcher`] renders its job ([`template`]) and hands it to a [`backend`] →
//! the outcome is written back through the [`domain::RunState`] transition table.

pub mod api;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod config;
pub mod dispatcher;
pub mod domain;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod registry;
pub mod replica;
pub mod resources;
pub mod run;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod template;
pub mod tls;
