//! Assembles the server from the config and runs it until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{self, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("admin.port: cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Sip(#[from] crate::sip::SipError),
    #[error("speech engines: {0}")]
    Speech(#[from] crate::speech::SpeechError),
    #[error(transparent)]
    Dialog(#[from] crate::dialog::DialogError),
    #[error("dialog.flow: cannot watch the flow file for edits: {0}")]
    FlowWatch(std::io::Error),
    #[error("live call pipeline: {0}")]
    Pipeline(String),
    #[error("emr: {0}")]
    Emr(#[from] crate::emr::EmrError),
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
}

/// Everything `serve` needs, assembled and ready.
pub struct Server {
    config: Config,
    store: Store,
    admin_listener: TcpListener,
    metrics: Arc<Metrics>,
    audit: crate::audit::Audit,
    sip: Option<crate::sip::transport::SipServer>,
    /// The speech engines, when `speech.enabled`.
    speech: Option<Arc<crate::speech::Engines>>,
    /// Call progress, served on the admin port.
    call_events: Arc<crate::call::events::CallEvents>,
    /// The staff console, when `console.enabled`.
    console: Option<crate::console::Console>,
}

impl Server {
    /// Checks the data dir, opens and migrates the store, binds the admin port.
    pub async fn assemble(config: Config) -> Result<Server, ServerError> {
        store::ensure_writable_dir(&config.server.data_dir)?;
        let store = Store::open(&config.store, &config.server.data_dir).await?;
        let instance = store.instance_id().await?;
        let audit = crate::audit::Audit::open(&store, &config, true).await?;
        record_config_change(&store, &audit, &config).await?;
        let mut metrics = Metrics::new(store.engine().name());
        let speech = if config.speech.enabled {
            let engines = crate::speech::Engines::load(
                &config.speech,
                &config.models.resolved_dir(),
                Some(metrics.registry_mut()),
            )?;
            tracing::info!(
                asr = %config.speech.asr_model,
                voice = %config.speech.tts_voice,
                vad = if engines.silero.is_some() { "silero" } else { "energy (fallback)" },
                "speech engines loaded"
            );
            Some(Arc::new(engines))
        } else {
            None
        };
        let addr = SocketAddr::new(config.admin.bind, config.admin.port);
        let admin_listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Listen { addr, source })?;
        tracing::info!(
            %instance,
            engine = store.engine().name(),
            "store ready"
        );
        let mut sip = if config.sip.enabled {
            Some(
                crate::sip::transport::SipServer::bind(config.sip.clone(), config.media.clone())
                    .await?,
            )
        } else {
            None
        };
        let call_events = Arc::new(crate::call::events::CallEvents::default());
        // With speech on, SIP calls get the live pipeline; otherwise the greeting WAV.
        if let (Some(sip), Some(engines)) = (sip.as_mut(), speech.as_ref()) {
            let dialog = Arc::new(crate::dialog::Dialog::from_config(&config)?);
            let understanding = dialog
                .understanding_service(Some(metrics.registry_mut()))
                .map_err(|e| ServerError::Pipeline(e.to_string()))?;
            let services = Arc::new(crate::call::CallServices {
                engines: engines.clone(),
                emr: Arc::new(crate::emr::fhir::FhirEmr::new(
                    &config.emr,
                    Arc::new(audit.log.clone()),
                )?),
                dialog,
                understanding,
                call: config.call.clone(),
                store: store.clone(),
                audit: audit.clone(),
                metrics: crate::call::metrics::CallMetrics::new(Some(metrics.registry_mut())),
                events: call_events.clone(),
                instance: instance.clone(),
            });
            let warm = services.clone();
            let started = std::time::Instant::now();
            tokio::task::spawn_blocking(move || warm.warm_up())
                .await
                .map_err(|e| ServerError::Pipeline(e.to_string()))?;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "live call pipeline ready (fixed prompts synthesized)"
            );
            // Flow edits take effect for new calls; an invalid edit keeps the last valid flow.
            services
                .dialog
                .flows()
                .clone()
                .watch(Duration::from_secs(2))
                .map_err(ServerError::FlowWatch)?;
            sip.set_handler(Arc::new(crate::call::LivePipeline::new(services)));
        }
        let console = if config.console.enabled {
            Some(
                crate::console::Console::bind(
                    &config,
                    store.clone(),
                    audit.clone(),
                    Some(metrics.registry_mut()),
                )
                .await?,
            )
        } else {
            None
        };
        Ok(Server {
            config,
            store,
            admin_listener,
            metrics: Arc::new(metrics),
            audit,
            sip,
            speech,
            call_events,
            console,
        })
    }

    /// The audit log and the at-rest encryption, for the parts that write through them.
    pub fn audit(&self) -> &crate::audit::Audit {
        &self.audit
    }

    /// The loaded speech engines (`speech.enabled`).
    pub fn speech(&self) -> Option<Arc<crate::speech::Engines>> {
        self.speech.clone()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener.local_addr().ok()
    }

    /// The console's address, when it is enabled.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console.as_ref().and_then(|c| c.local_addr())
    }

    /// Serves until `shutdown` resolves, then lets in-flight work finish within the grace period.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let grace = Duration::from_secs(self.config.server.shutdown_grace_secs);
        let router = admin::router(AdminState {
            metrics: self.metrics.clone(),
            store: self.store.clone(),
            call_events: self.call_events.clone(),
        });
        if let Some(addr) = self.admin_addr() {
            tracing::info!(%addr, "admin HTTP listening (/metrics, /healthz)");
        }
        let (sip_stop_tx, sip_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sip = self.sip.map(|sip| {
            tokio::spawn(sip.run(
                async {
                    let _ = sip_stop_rx.await;
                },
                grace,
            ))
        });
        let (console_stop_tx, console_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let console = self.console.map(|console| {
            tokio::spawn(console.run(async {
                let _ = console_stop_rx.await;
            }))
        });
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let http = tokio::spawn(
            axum::serve(self.admin_listener, router)
                .with_graceful_shutdown(async move {
                    shutdown.await;
                    let _ = stopping_tx.send(());
                })
                .into_future(),
        );
        let _ = stopping_rx.await;
        tracing::info!(grace_secs = grace.as_secs(), "shutting down");
        let _ = sip_stop_tx.send(());
        let _ = console_stop_tx.send(());
        if let Some(console) = console {
            // Open live-update streams end with the server; a short grace is plenty for pages.
            match tokio::time::timeout(Duration::from_secs(2), console).await {
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "console stopped with an error"),
                Ok(Err(join)) => tracing::error!(error = %join, "console task failed"),
                _ => {}
            }
        }
        if let Some(sip) = sip {
            // SIP drains for `grace` itself, then sends its BYEs and waits a moment for answers.
            let _ = tokio::time::timeout(grace + Duration::from_secs(3), sip).await;
        }
        match tokio::time::timeout(grace, http).await {
            Ok(Ok(result)) => result.map_err(ServerError::Http)?,
            Ok(Err(join)) => tracing::error!(error = %join, "admin HTTP task failed"),
            Err(_) => tracing::warn!("grace period over; stopping with work in flight"),
        }
        if let Err(e) = self.audit.log.shutdown().await {
            tracing::error!(error = %e, "audit log did not close cleanly");
        }
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Records a `config_change` audit record when the effective config differs from the one the
/// last start recorded (compared by SHA-256 of the masked TOML).
async fn record_config_change(
    store: &Store,
    audit: &crate::audit::Audit,
    config: &Config,
) -> Result<(), ServerError> {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(config.to_masked_toml().as_bytes()));
    if store.meta_get("audit_config_sha256").await?.as_deref() == Some(digest.as_str()) {
        return Ok(());
    }
    audit
        .log
        .append(crate::audit::AuditEvent::ConfigChange(
            crate::audit::ConfigChange {
                actor: "serve".into(),
                target: crate::audit::ConfigTarget::Config,
                name: "effective config".into(),
                version: None,
                sha256: Some(digest.clone()),
            },
        ))
        .await?;
    store.meta_set("audit_config_sha256", &digest).await?;
    Ok(())
}
