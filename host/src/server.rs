//! `weir serve`: opens the store, applies the config file, recovers runs
//! that were in flight, then runs the scheduler and the HTTP API until
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api;
use crate::auth::{self, AuthError, AuthMode, Authenticator};
use crate::backend::kubernetes::{
    ClusterConfigs, ClusterSettings, DEFAULT_BURST, DEFAULT_QPS, KubeSettings,
};
use crate::backend::{Backends, KubernetesBackend, ProcessBackend, ProcessSettings};
use crate::config::{Config, ConfigError};
use crate::dispatcher::{DispatchError, Dispatcher, Settings};
use crate::domain::PoolType;
use crate::run::launch::Launcher;

use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Recorder};
use crate::plugin::{LoadError, PluginRuntime};
use crate::registry::Registry;
use crate::replica::{self, Bus, Election, ReplicaError, Signal};
use crate::scheduler;
use crate::store::{DatabaseUrl, SqlStore, Store, StoreError};
use crate::tls::{TlsError, TlsFiles, TlsListener};

pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:4680";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    DatabaseUrl(String),
    /// The URL is shown without its password.
    #[error("cannot open the PostgreSQL store at {url}: {source}")]
    Postgres {
        url: DatabaseUrl,
        source: StoreError,
    },
    #[error("cannot start the plugin runtime: {0}")]
    Plugins(#[from] LoadError),
    #[error("cannot recover runs: {0}")]
    Recover(#[from] DispatchError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot set up authentication: {0}")]
    Auth(#[from] AuthError),
}

/// Everything `serve` needs, resolved from flags, the config file and
/// defaults (flags win).
#[derive(Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Where state is kept (`--database-url`, `[server] database_url`).
    pub database: Database,
    /// The URL jobs get in `WEIR_API_URL`; `None`: `http://<bound address>`.
    pub api_url: Option<String>,
    pub late_after: chrono::Duration,
    pub process: ProcessSettings,
    /// Kubernetes cluster connections (`[kubernetes]`, flags win).
    pub kubernetes: ClusterConfigs,
    /// `--auth`, `[server] auth`; `auto` by default.
    pub auth: AuthMode,
    /// `--tls-cert`/`--tls-key`, `[server] tls_cert`/`tls_key`: serve HTTPS.
    pub tls: Option<TlsFiles>,
    pub config: Config,
}

/// The store `serve` opens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Database {
    /// The embedded SQLite file `weir.db` in the data directory.
    #[default]
    Embedded,
    /// A PostgreSQL database, possibly shared with other replicas.
    Postgres(DatabaseUrl),
}

impl Database {
    /// A `postgres://` URL; anything else is refused with the reason.
    pub fn from_url(url: &str) -> Result<Self, ServeError> {
        DatabaseUrl::parse(url)
            .map(Database::Postgres)
            .map_err(ServeError::DatabaseUrl)
    }

    /// How this replica comes to lead: alone on its data directory, or
    /// through the shared database's advisory lock.
    fn election(&self, data_dir: &Path) -> Result<Election, ServeError> {
        Ok(match self {
            Database::Embedded => Election::sole(data_dir)?,
            Database::Postgres(url) => {
                let options = url
                    .connect_options()
                    .map_err(|source| ServeError::Postgres {
                        url: url.clone(),
                        source,
                    })?;
                Election::Postgres(Box::new(options))
            }
        })
    }

    /// Opens (and migrates) the store; `weir token` uses this too.
    pub async fn open(&self, data_dir: &Path) -> Result<Arc<dyn Store>, ServeError> {
        Ok(match self {
            Database::Embedded => Arc::new(SqlStore::open_sqlite(&data_dir.join("weir.db")).await?),
            Database::Postgres(url) => {
                Arc::new(SqlStore::connect_postgres(url).await.map_err(|source| {
                    ServeError::Postgres {
                        url: url.clone(),
                        source,
                    }
                })?)
            }
        })
    }
}

impl ServeOptions {
    pub fn resolve(
        config_path: Option<&Path>,
        data_dir: Option<PathBuf>,
        listen: Option<SocketAddr>,
        api_url: Option<String>,
    ) -> Result<Self, ServeError> {
        let config = match config_path {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        let default_listen: SocketAddr = DEFAULT_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4680)));
        let listen = listen.or(config.server.listen).unwrap_or(default_listen);
        let data_dir = data_dir
            .or_else(|| {
                config.server.data_dir.as_ref().map(|d| {
                    if d.is_relative() {
                        config.base_dir.join(d)
                    } else {
                        d.clone()
                    }
                })
            })
            .unwrap_or_else(|| PathBuf::from(".weir"));
        let database = match &config.server.database_url {
            Some(url) => Database::from_url(url)?,
            None => Database::Embedded,
        };
        let api_url = api_url.or_else(|| config.server.api_url.clone());
        let late_after =
            chrono::Duration::seconds(i64::from(config.server.late_after_seconds.unwrap_or(15)));
        let process = ProcessSettings {
            grace: Duration::from_secs(u64::from(
                config.server.process_grace_seconds.unwrap_or(10),
            )),
            supervisor: None,
        };
        let kubernetes = cluster_configs(&config);
        let auth = config.server.auth.unwrap_or_default();
        let relative = |p: &PathBuf| {
            if p.is_relative() {
                config.base_dir.join(p)
            } else {
                p.clone()
            }
        };
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: relative(cert),
                key: relative(key),
            }),
            (None, None) => None,
            _ => {
                return Err(TlsError::Incomplete.into());
            }
        };
        Ok(Self {
            auth,
            tls,
            listen,
            data_dir,
            database,
            api_url,
            late_after,
            process,
            kubernetes,
            config,
        })
    }
}

/// `[kubernetes]` as connection settings; relative kubeconfig paths are
/// resolved against the config file's directory.
fn cluster_configs(config: &Config) -> ClusterConfigs {
    let k = &config.kubernetes;
    let path = |p: &Option<PathBuf>| {
        p.as_ref().map(|p| {
            if p.is_relative() {
                config.base_dir.join(p)
            } else {
                p.clone()
            }
        })
    };
    ClusterConfigs {
        default: ClusterSettings {
            kubeconfig: path(&k.kubeconfig),
            in_cluster: false,
            context: k.context.clone(),
            qps: k.qps.unwrap_or(DEFAULT_QPS),
            burst: k.burst.unwrap_or(DEFAULT_BURST),
        },
        named: k
            .clusters
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    ClusterSettings {
                        kubeconfig: path(&c.kubeconfig),
                        in_cluster: c.in_cluster,
                        context: c.context.clone(),
                        qps: c.qps.unwrap_or(DEFAULT_QPS),
                        burst: c.burst.unwrap_or(DEFAULT_BURST),
                    },
                )
            })
            .collect(),
    }
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A running Weir: the parts tests and embedders need.
pub struct Server {
    pub addr: SocketAddr,
    dispatcher: Arc<Dispatcher>,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Server {
    /// Starts Weir and returns once it is listening.
    pub async fn start(options: ServeOptions) -> Result<Self, ServeError> {
        let log_dir = options.data_dir.join("logs");
        std::fs::create_dir_all(&log_dir).map_err(|source| ServeError::DataDir {
            path: log_dir.clone(),
            source,
        })?;
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: options.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(ServeError::Serve)?;
        // Read the certificate before anything else starts.
        let tls = options
            .tls
            .as_ref()
            .map(TlsFiles::server_config)
            .transpose()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let api_url = options
            .api_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"));
        let election = options.database.election(&options.data_dir)?;
        let store = options.database.open(&options.data_dir).await?;
        let auth_on = options.auth.enabled(options.listen);
        let (authenticator, run_tokens) = if auth_on {
            let key = auth::run_token_key(store.as_ref()).await?;
            let live = store
                .list_tokens()
                .await?
                .iter()
                .filter(|t| t.revoked_at.is_none())
                .count();
            if live == 0 {
                warn!(
                    "auth is on and no token exists: every API request will be refused. \
                     Create the first admin token on this host with \
                     `weir token create --role admin` (same --data-dir/--database-url/--config \
                     as this server)"
                );
            }
            info!(
                tokens = live,
                "auth is on: API requests need a bearer token"
            );
            (
                Some(Arc::new(Authenticator::new(store.clone(), key.clone()))),
                Some(key),
            )
        } else {
            info!("auth is off: the API is open to anyone who can reach it");
            (None, None)
        };
        let runtime = PluginRuntime::new(Some(options.data_dir.join("plugin-cache")), 64)?;
        let registry = Arc::new(Registry::new(runtime, store.clone()));
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let recorder = Recorder::start(
            store.clone(),
            options.config.server.retention(),
            metrics.clone(),
            shutdown.clone(),
        );
        let pipeline = Arc::new(
            Pipeline::new(registry, store.clone(), metrics.clone()).with_recorder(recorder),
        );
        let backends = Backends::default()
            .with(
                PoolType::Process,
                Arc::new(ProcessBackend::new(
                    options.process.clone(),
                    options.data_dir.join("runs"),
                )),
            )
            .with(
                PoolType::Kubernetes,
                Arc::new(KubernetesBackend::new(
                    options.kubernetes.clone(),
                    KubeSettings::default(),
                )),
            );
        let bus = match &election {
            Election::Postgres(pg) => Bus::postgres((**pg).clone()),
            Election::Sole(_) => Bus::local(),
        };
        let dispatcher = Arc::new(
            Dispatcher::new(
                store,
                pipeline,
                Settings {
                    api_url,
                    late_after: options.late_after,
                    log_dir,
                    clusters: options.kubernetes.named.keys().cloned().collect(),
                    run_tokens: run_tokens.clone(),
                    schedules: options.config.server.schedules(),
                },
                metrics,
                backends.clone(),
            )
            .with_replicas(bus),
        );
        apply_config(&options.config, &dispatcher, election.is_replicated())
            .await
            .inspect_err(|_| shutdown.cancel())?;
        // Idle until this replica leads: only the leader launches.
        let launcher = Launcher::new(dispatcher.clone(), shutdown.clone()).ok_or_else(|| {
            ServeError::Serve(std::io::Error::other("a dispatcher has one launcher"))
        })?;
        if !election.is_replicated() {
            // The sole replica takes over its runs before it answers anyone.
            recover(&launcher).await?;
            dispatcher.metrics.set_leader(true);
        }
        let leading = tokio::spawn(lead(election, launcher, shutdown.clone()));
        let app = api::router_with_auth(dispatcher.clone(), authenticator);
        let stop = shutdown.clone();
        let handle = tokio::spawn(async move {
            let served = match tls {
                None => axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
                    .map_err(ServeError::Serve),
                Some(config) => match TlsListener::new(listener, config) {
                    Ok(listener) => axum::serve(listener, app)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await
                        .map_err(ServeError::Serve),
                    Err(e) => Err(ServeError::Serve(e)),
                },
            };
            // A lost leadership is why the server stopped: say that.
            match leading.await {
                Ok(Err(e)) => Err(e),
                _ => served,
            }
        });
        info!(%addr, scheme, "weir is listening");
        Ok(Self {
            addr,
            dispatcher,
            shutdown,
            handle,
        })
    }

    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// The server's store, for benchmarks that read or fill it directly.
    pub fn store(&self) -> Arc<dyn Store> {
        self.dispatcher.store.clone()
    }

    pub async fn wait(self) -> Result<(), ServeError> {
        self.handle
            .await
            .map_err(|e| ServeError::Serve(std::io::Error::other(e)))?
    }
}

/// Applies the config file. Replicas starting together may race to create
/// the same pool; the loser sees it exist on its next try and updates it.
async fn apply_config(
    config: &Config,
    dispatcher: &Dispatcher,
    replicated: bool,
) -> Result<(), ServeError> {
    let tries = if replicated { 3 } else { 1 };
    let mut attempt = 1;
    loop {
        match config.apply(dispatcher).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < tries => {
                info!("applying the config file raced another replica, again: {e}");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn recover(launcher: &Arc<Launcher>) -> Result<(), ServeError> {
    let recovered = crate::run::recover::recover(launcher).await?;
    if recovered > 0 {
        info!(
            recovered,
            "recovered runs that were in flight when weir stopped"
        );
    }
    Ok(())
}

/// The leader's half: waits to lead, takes over the runs in flight (after
/// [`replica::SETTLE`], so a deposed leader has stopped), then runs the
/// scheduler until shutdown, or until leadership is lost, which stops this
/// replica with an error (its supervisor restarts it as a standby).
async fn lead(
    election: Election,
    launcher: Arc<Launcher>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let dispatcher = launcher.dispatcher().clone();
    let Some(leader) = election.acquire(&shutdown).await else {
        return Ok(());
    };
    let stop = shutdown.child_token();
    let _stop_helpers = stop.clone().drop_guard();
    if election.is_replicated() {
        info!(
            "this replica now leads; taking over runs in flight in {:?}",
            replica::SETTLE
        );
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            e = leader.lost() => return Err(lost(e, &shutdown)),
            () = tokio::time::sleep(replica::SETTLE) => {}
        }
        // Listen before taking over, so no cancel asked meanwhile is missed.
        let bus = dispatcher.replicas().clone();
        let l = launcher.clone();
        let listen_stop = stop.clone();
        tokio::spawn(async move {
            bus.listen(listen_stop, |signal| match signal {
                Signal::Wake => l.dispatcher().wake_local(),
                Signal::Cancel(id) => {
                    l.cancel(id);
                }
            })
            .await;
        });
        tokio::select! {
            e = leader.lost() => return Err(lost(e, &shutdown)),
            r = recover(&launcher) => r?,
        }
        dispatcher.replicas().set_leader(true);
        dispatcher.metrics.set_leader(true);
        dispatcher.wake_local();
    }
    // The safety net for cancels: Cancelling runs whose stop was missed
    // (a lost notification, a launch that never came).
    let l = launcher.clone();
    let sweep_stop = stop.clone();
    tokio::spawn(async move {
        let mut orphans = std::collections::HashSet::new();
        loop {
            tokio::select! {
                () = sweep_stop.cancelled() => return,
                () = tokio::time::sleep(crate::replica::bus::SWEEP) => {}
            }
            if let Err(e) = crate::run::recover::sweep_cancelling(&l, &mut orphans).await {
                tracing::warn!("cannot sweep Cancelling runs: {e}");
            }
        }
    });
    // Schedules become runs on the leader only (each time's run is keyed, so
    // a deposed leader still finishing a pass creates no second one).
    let schedules = scheduler::run_schedules(dispatcher.clone(), stop.clone());
    tokio::select! {
        () = scheduler::run(launcher, shutdown.clone()) => Ok(()),
        () = schedules => Ok(()),
        e = leader.lost() => Err(lost(e, &shutdown)),
    }
}

fn lost(e: ReplicaError, shutdown: &CancellationToken) -> ServeError {
    tracing::error!("{e}; stopping this replica so that it cannot act as a second leader");
    shutdown.cancel();
    e.into()
}

/// Runs until SIGINT or SIGTERM.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let server = Server::start(options).await?;
    let shutdown = server.shutdown.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        shutdown.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        info!("shutting down");
        shutdown.cancel();
    });
    server.wait().await
}
