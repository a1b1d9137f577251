//! The plugin registry: uploads become content-addressed, versioned plugins;
//! bindings attach them to a pool (admission, mutators) or to the global
//! router chain. Loaded components are cached by digest, so a new version
//! takes effect at the next decision, with no restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use crate::domain::{
    BindingMode, OnError, PluginBinding, PluginVersion, ValidationError, World, validate_dns_label,
};
use crate::plugin::{Limits, LoadError, LoadedPlugin, PluginRuntime};
use crate::store::{Store, StoreError};

/// Uploads above this are refused.
pub(crate) const MAX_PLUGIN_BYTES: usize = 32 * 1024 * 1024;
pub(crate) const DEFAULT_DEADLINE_MS: u32 = 50;
pub(crate) const DEFAULT_MEMORY_MB: u32 = 64;
/// A decision sits on a run's path (routers and admission answer inside
/// `POST /runs`), and a call holds one of the runtime's slots until its
/// deadline: two seconds is far more than a policy needs and bounds what a
/// slow one costs.
pub(crate) const MAX_DEADLINE_MS: u32 = 2_000;
/// The runtime's per-instance ceiling (the pooling allocator's slot size);
/// more could not be given, so it is not promised.
pub(crate) const MAX_MEMORY_MB: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("not a usable plugin: {0}")]
    Load(#[from] LoadError),
    #[error("plugin {plugin:?} refused the config{}: {message}", binding.as_ref().map(|b| format!(" of its binding {b}")).unwrap_or_default())]
    Config {
        plugin: String,
        binding: Option<String>,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A binding request: `weir pool bind` / `weir router bind` and the API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingSpec {
    pub plugin: String,
    /// Pin a version; absent: follow the newest.
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub config: Option<Value>,
    #[serde(default)]
    pub order: Option<i32>,
    #[serde(default)]
    pub on_error: Option<OnError>,
    #[serde(default)]
    pub deadline_ms: Option<u32>,
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// `enforce` (default) or `shadow`. Binding in `enforce` a plugin that
    /// has a shadow binding here promotes the shadow: its version pin,
    /// config and limits (unless given) replace the plugin's bindings here.
    #[serde(default)]
    pub mode: Option<BindingMode>,
}

pub struct Registry {
    runtime: Arc<PluginRuntime>,
    store: Arc<dyn Store>,
    loaded: Mutex<HashMap<String, LoadedPlugin>>,
}

pub(crate) fn limits_of(b: &PluginBinding) -> Limits {
    Limits {
        deadline: Duration::from_millis(u64::from(b.deadline_ms)),
        memory_bytes: b.memory_mb as usize * 1024 * 1024,
        ..Limits::default()
    }
}

fn config_text(config: &Value) -> String {
    serde_json::to_string(config).unwrap_or_else(|_| "null".into())
}

impl Registry {
    pub fn new(runtime: Arc<PluginRuntime>, store: Arc<dyn Store>) -> Self {
        Self {
            runtime,
            store,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
    }

    fn cached(&self, digest: &str) -> Option<LoadedPlugin> {
        self.loaded.lock().ok().and_then(|m| m.get(digest).cloned())
    }

    fn remember(&self, plugin: &LoadedPlugin) {
        if let Ok(mut m) = self.loaded.lock() {
            m.insert(plugin.digest().to_owned(), plugin.clone());
        }
    }

    /// Stores a new version of `name` (or returns the newest if the bytes are
    /// the same). The bytes must load, and every binding that follows the
    /// newest version must accept its config under the new one: a version
    /// that would break a working binding never replaces it.
    pub async fn add(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(PluginVersion, bool), RegistryError> {
        validate_dns_label("name", name)?;
        if bytes.is_empty() {
            return Err(ValidationError::new("wasm", "the upload is empty").into());
        }
        if bytes.len() > MAX_PLUGIN_BYTES {
            return Err(
                ValidationError::new("wasm", format!("at most {MAX_PLUGIN_BYTES} bytes")).into(),
            );
        }
        let loaded = self.runtime.load(bytes).await?;
        let following: Vec<PluginBinding> = match self.store.bindings_of_plugin(name).await {
            Ok(b) => b
                .into_iter()
                .filter(|b| b.pinned_version.is_none())
                .collect(),
            Err(StoreError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        for b in &following {
            let (result, _) = loaded
                .validate_config(&config_text(&b.config), &limits_of(b))
                .await;
            if let Err(e) = result {
                return Err(RegistryError::Config {
                    plugin: name.to_owned(),
                    binding: Some(match &b.pool {
                        Some(p) => format!("to pool {p:?}"),
                        None => "as a router".into(),
                    }),
                    message: e.to_string(),
                });
            }
        }
        let (version, created) = self
            .store
            .add_plugin_version(
                name,
                loaded.digest(),
                bytes,
                loaded.world(),
                loaded.wit_version(),
            )
            .await?;
        self.remember(&loaded);
        Ok((version, created))
    }

    /// The version a binding uses now (its pin, or the newest) and the
    /// loaded component.
    pub async fn resolve(
        &self,
        binding: &PluginBinding,
    ) -> Result<(PluginVersion, LoadedPlugin), String> {
        let versions = self
            .store
            .plugin_versions(&binding.plugin)
            .await
            .map_err(|e| e.to_string())?;
        let version = match binding.pinned_version {
            Some(v) => versions.into_iter().find(|pv| pv.version == v),
            None => versions.into_iter().last(),
        }
        .ok_or_else(|| format!("plugin {:?} has no such version", binding.plugin))?;
        let plugin = self.load_digest(&version.digest).await?;
        Ok((version, plugin))
    }

    /// Version `version` of `name`, loaded (from the cache or the store).
    pub async fn version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<(PluginVersion, LoadedPlugin), RegistryError> {
        let found = self
            .store
            .plugin_versions(name)
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| StoreError::NotFound {
                kind: "plugin version",
                name: format!("{name}@{version}"),
            })?;
        let plugin = self
            .load_digest(&found.digest)
            .await
            .map_err(|e| ValidationError::new("version", e))?;
        Ok((found, plugin))
    }

    /// Loads a component that is not stored (a replay's `--file`), bounded
    /// as an upload is.
    pub async fn load_unstored(&self, bytes: &[u8]) -> Result<LoadedPlugin, RegistryError> {
        if bytes.is_empty() {
            return Err(ValidationError::new("wasm", "the upload is empty").into());
        }
        if bytes.len() > MAX_PLUGIN_BYTES {
            return Err(
                ValidationError::new("wasm", format!("at most {MAX_PLUGIN_BYTES} bytes")).into(),
            );
        }
        Ok(self.runtime.load(bytes).await?)
    }

    /// What the plugin version with this digest says about itself (0.2.0
    /// on; `Ok(None)` for 0.1.0), under the default limits.
    pub async fn describe(
        &self,
        digest: &str,
    ) -> Result<Option<crate::plugin::Description>, String> {
        let plugin = self.load_digest(digest).await?;
        let (described, _) = plugin.describe(&crate::plugin::Limits::default()).await;
        described.map_err(|e| e.to_string())
    }

    async fn load_digest(&self, digest: &str) -> Result<LoadedPlugin, String> {
        if let Some(p) = self.cached(digest) {
            return Ok(p);
        }
        let bytes = self
            .store
            .plugin_bytes(digest)
            .await
            .map_err(|e| e.to_string())?;
        let loaded = self
            .runtime
            .load(&bytes)
            .await
            .map_err(|e| format!("stored plugin {digest} does not load: {e}"))?;
        self.remember(&loaded);
        Ok(loaded)
    }

    /// Binds a plugin to a pool (`Some`) or as a router (`None`), after the
    /// plugin accepted the config.
    pub async fn bind(
        &self,
        pool: Option<&str>,
        spec: BindingSpec,
    ) -> Result<PluginBinding, RegistryError> {
        self.bind_as(pool, spec, true).await
    }

    /// Like [`Registry::bind`], never promoting a shadow binding: the
    /// config file's bindings are exactly what it says.
    pub async fn bind_exactly(
        &self,
        pool: Option<&str>,
        spec: BindingSpec,
    ) -> Result<PluginBinding, RegistryError> {
        self.bind_as(pool, spec, false).await
    }

    async fn bind_as(
        &self,
        pool: Option<&str>,
        mut spec: BindingSpec,
        may_promote: bool,
    ) -> Result<PluginBinding, RegistryError> {
        if let Some(p) = pool {
            self.store.get_pool(p).await?;
        }
        let mode = spec.mode.unwrap_or_default();
        let here: Vec<PluginBinding> = self
            .store
            .list_bindings(pool)
            .await?
            .into_iter()
            .filter(|b| b.plugin == spec.plugin)
            .collect();
        let shadow = here.iter().find(|b| b.mode == BindingMode::Shadow).cloned();
        let promoted = match (mode, shadow) {
            (BindingMode::Enforce, Some(shadow)) if may_promote => {
                let enforced_order = here
                    .iter()
                    .find(|b| b.mode == BindingMode::Enforce)
                    .map(|b| b.order);
                spec = BindingSpec {
                    version: spec.version.or(shadow.pinned_version),
                    config: spec.config.or(Some(shadow.config.clone())),
                    order: spec.order.or(enforced_order).or(Some(shadow.order)),
                    on_error: spec.on_error.or(Some(shadow.on_error)),
                    deadline_ms: spec.deadline_ms.or(Some(shadow.deadline_ms)),
                    memory_mb: spec.memory_mb.or(Some(shadow.memory_mb)),
                    ..spec
                };
                true
            }
            _ => false,
        };
        let versions = match self.store.plugin_versions(&spec.plugin).await {
            Err(StoreError::NotFound { .. }) => {
                return Err(ValidationError::new(
                    "plugin",
                    format!(
                        "plugin {:?} does not exist; add it with `weir plugin add`",
                        spec.plugin
                    ),
                )
                .into());
            }
            other => other?,
        };
        let version = match spec.version {
            Some(v) => versions.iter().find(|pv| pv.version == v).ok_or_else(|| {
                ValidationError::new(
                    "version",
                    format!("plugin {:?} has no version {v}", spec.plugin),
                )
            })?,
            None => versions
                .last()
                .ok_or_else(|| ValidationError::new("plugin", "plugin has no version"))?,
        };
        match (pool, version.world) {
            (None, World::Router) | (Some(_), World::Admission | World::Mutator) => {}
            (None, w) => {
                return Err(ValidationError::new(
                    "plugin",
                    format!(
                        "{:?} is a {w} plugin; only router plugins bind as routers",
                        spec.plugin
                    ),
                )
                .into());
            }
            (Some(_), World::Router) => {
                return Err(ValidationError::new(
                    "plugin",
                    format!(
                        "{:?} is a router plugin; bind it with `weir router bind`",
                        spec.plugin
                    ),
                )
                .into());
            }
        }
        let deadline_ms = spec.deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS);
        if deadline_ms == 0 || deadline_ms > MAX_DEADLINE_MS {
            return Err(ValidationError::new(
                "deadline_ms",
                format!("must be between 1 and {MAX_DEADLINE_MS}"),
            )
            .into());
        }
        let memory_mb = spec.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
        if memory_mb == 0 || memory_mb > MAX_MEMORY_MB {
            return Err(ValidationError::new(
                "memory_mb",
                format!("must be between 1 and {MAX_MEMORY_MB}"),
            )
            .into());
        }
        let order = match spec.order {
            Some(o) => o,
            None => self
                .store
                .list_bindings(pool)
                .await?
                .iter()
                .map(|b| b.order)
                .max()
                .map(|m| m.saturating_add(10))
                .unwrap_or(10),
        };
        let binding = PluginBinding {
            id: 0,
            pool: pool.map(str::to_owned),
            plugin: spec.plugin.clone(),
            pinned_version: spec.version,
            config: spec.config.unwrap_or(Value::Object(Default::default())),
            order,
            on_error: spec.on_error.unwrap_or_default(),
            deadline_ms,
            memory_mb,
            created_at: Utc::now(),
            mode,
        };
        let plugin = self
            .load_digest(&version.digest)
            .await
            .map_err(|e| ValidationError::new("plugin", e))?;
        let (result, _) = plugin
            .validate_config(&config_text(&binding.config), &limits_of(&binding))
            .await;
        if let Err(e) = result {
            return Err(RegistryError::Config {
                plugin: spec.plugin,
                binding: None,
                message: e.to_string(),
            });
        }
        if promoted {
            return Ok(self.store.replace_bindings(&binding).await?);
        }
        Ok(self.store.create_binding(&binding).await?)
    }
}
