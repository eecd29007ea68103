//! The dialog layer: intake flows, the identity gate, PHI handling, understanding, the turn engine.

pub mod call;
pub mod engine;
pub mod flow;
pub mod identity;
#[cfg(feature = "llm")]
pub mod llm;
pub mod nlu;
pub mod parse;
pub mod phi;
