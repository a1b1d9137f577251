use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{BaseJobTemplate, TemplateKind};

/// Which backend executes a pool's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolType {
    Process,
    Kubernetes,
}

impl PoolType {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolType::Process => "process",
            PoolType::Kubernetes => "kubernetes",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "process" => Some(PoolType::Process),
            "kubernetes" => Some(PoolType::Kubernetes),
            _ => None,
        }
    }

    pub fn template_kind(self) -> TemplateKind {
        match self {
            PoolType::Process => TemplateKind::Process,
            PoolType::Kubernetes => TemplateKind::Kubernetes,
        }
    }
}

/// A work pool: one kind of infrastructure, one base job template, its queues.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pool {
    pub name: String,
    #[serde(rename = "type")]
    pub pool_type: PoolType,
    pub base_job_template: BaseJobTemplate,
    /// Kubernetes pools: the cluster connection, by name, from the server's
    /// configuration; `None` is the default connection.
    pub cluster: Option<String>,
    pub concurrency_limit: Option<u32>,
    pub paused: bool,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
