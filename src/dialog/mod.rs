//! The dialog layer: intake flows, the identity gate, PHI handling, understanding, the turn engine.

pub mod engine;
pub mod flow;
pub mod identity;
pub mod nlu;
pub mod parse;
pub mod phi;
