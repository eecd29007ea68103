//! The dialog layer: intake flows, the identity gate (the one place that reveals PHI: the types
//! are `crate::phi`), understanding, the turn engine.
//!
//! A shell (the live call pipeline, `carevoice call --text`, `carevoice flows preview`) builds a
//! [`Dialog`] once from the config, asks it for one [`Engine`] per call
//! ([`Dialog::engine`]), and drives that engine with [`call::settle`].

pub mod call;
pub mod engine;
pub mod flow;
pub mod identity;
#[cfg(feature = "llm")]
pub mod llm;
pub mod nlu;
pub mod parse;
pub mod reload;
pub mod understand;

use std::path::Path;
use std::sync::Arc;

use crate::config::{ClinicConfig, Config, DialogConfig};
use engine::Engine;
use flow::{Flow, FlowError};
use nlu::{KeywordNlu, Nlu};
use reload::FlowStore;

#[derive(Debug, thiserror::Error)]
pub enum DialogError {
    /// The flow file (`dialog.flow`) is missing or invalid; every problem has file:line:column.
    #[error("dialog.flow: {0}")]
    Flow(#[from] FlowError),
    /// The understanding model or tokenizer (`dialog.understanding_model` /
    /// `dialog.understanding_tokenizer`) is not installed.
    #[error("{0}")]
    Model(#[from] crate::speech::LocateError),
    #[cfg(feature = "llm")]
    #[error("dialog.understanding_model: {0}")]
    Llm(#[from] llm::LlmError),
}

/// Turns that may wait for the understanding service (beyond them a call waits for room).
const UNDERSTANDING_QUEUE: usize = 32;
/// A turn the service has not understood by then gets the keyword rules' answer: the caller
/// must not wait seconds on a queue of other calls' turns.
const UNDERSTANDING_LIMIT: std::time::Duration = std::time::Duration::from_millis(2500);

/// How turns are understood, shared by every call of a server.
#[derive(Clone)]
enum Understanding {
    Keyword,
    #[cfg(feature = "llm")]
    Model(Arc<std::sync::Mutex<llm::LlmNlu>>),
}

impl Understanding {
    fn from_config(config: &Config) -> Result<Understanding, DialogError> {
        let d = &config.dialog;
        if d.understanding_model.trim().is_empty() {
            return Ok(Understanding::Keyword);
        }
        #[cfg(feature = "llm")]
        {
            let dir = config.models.resolved_dir();
            let model =
                crate::speech::locate("dialog.understanding_model", &d.understanding_model, &dir)?;
            let tokenizer = crate::speech::locate(
                "dialog.understanding_tokenizer",
                &d.understanding_tokenizer,
                &dir,
            )?;
            let llm = llm::LlmNlu::load(&model, &tokenizer)?;
            Ok(Understanding::Model(Arc::new(std::sync::Mutex::new(llm))))
        }
        #[cfg(not(feature = "llm"))]
        {
            tracing::info!(
                model = %d.understanding_model,
                "built without the `llm` feature: dialog.understanding_model is not used; keyword understanding only"
            );
            Ok(Understanding::Keyword)
        }
    }

    fn nlu(&self) -> Box<dyn Nlu> {
        match self {
            Understanding::Keyword => Box::new(KeywordNlu),
            #[cfg(feature = "llm")]
            Understanding::Model(m) => Box::new(llm::SharedHybridNlu::new(m.clone())),
        }
    }
}

/// Everything a server needs to start dialog engines: the (reloadable) flow, the clinic facts,
/// the dialog settings and the understanding model, loaded once.
pub struct Dialog {
    flows: Arc<FlowStore>,
    clinic: ClinicConfig,
    dialog: DialogConfig,
    understanding: Understanding,
}

impl Dialog {
    /// Loads the flow at `dialog.flow` (an invalid flow is an error: the server must not start)
    /// and the understanding model the config names.
    pub fn from_config(config: &Config) -> Result<Dialog, DialogError> {
        Self::with_flows(config, Arc::new(FlowStore::load(&config.dialog.flow)?))
    }

    /// Like [`from_config`](Self::from_config), with another flow file (`--flow`).
    pub fn with_flow_file(config: &Config, flow: &Path) -> Result<Dialog, DialogError> {
        Self::with_flows(config, Arc::new(FlowStore::load(flow)?))
    }

    /// With a flow store the caller already holds (and reloads; see [`FlowStore::watch`]).
    pub fn with_flows(config: &Config, flows: Arc<FlowStore>) -> Result<Dialog, DialogError> {
        Ok(Dialog {
            flows,
            clinic: config.clinic.clone(),
            dialog: config.dialog.clone(),
            understanding: Understanding::from_config(config)?,
        })
    }

    /// The engine for one new call, on the current flow. `calling_number` (digits or E.164, as
    /// the SIP From/P-Asserted-Identity gave it) is an identity factor when the config uses it.
    pub fn engine(&self, calling_number: Option<String>) -> Engine {
        Engine::new(
            self.flows.current(),
            self.clinic.clone(),
            self.dialog.clone(),
            self.understanding.nlu(),
            calling_number,
        )
    }

    /// Starts the understanding service every call of a server shares: the configured
    /// understanding (keyword rules, or rules + model) on a worker thread of its own.
    pub fn understanding_service(
        &self,
        registry: Option<&mut prometheus_client::registry::Registry>,
    ) -> Result<understand::UnderstandingService, understand::UnderstandError> {
        understand::UnderstandingService::start(
            self.understanding.nlu(),
            UNDERSTANDING_QUEUE,
            UNDERSTANDING_LIMIT,
            self.dialog.max_turn_chars,
            registry,
        )
    }

    /// The flow store, to reload it or watch it ([`FlowStore::watch`]).
    pub fn flows(&self) -> &Arc<FlowStore> {
        &self.flows
    }
}

/// One engine from the config and a flow, with keyword understanding only (no model load): for
/// tools and tests. A server builds a [`Dialog`] once instead.
pub fn build_engine(config: &Config, flow: Arc<Flow>, calling_number: Option<String>) -> Engine {
    Engine::new(
        flow,
        config.clinic.clone(),
        config.dialog.clone(),
        Box::new(KeywordNlu),
        calling_number,
    )
}
