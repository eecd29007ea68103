//! The dialog layer: intake flows, the identity gate, PHI handling, understanding, the turn engine.

pub mod phi;
