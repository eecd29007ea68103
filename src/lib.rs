//! carevoice: a self-hosted, HIPAA-minded voice agent for a clinic's phone line.
//! See `DESIGN.md` for the architecture; each module's doc says what it owns.

pub mod admin;
pub mod audit;
pub mod call;
pub mod config;
pub mod console;
pub mod dialog;
pub mod emr;
pub mod inference;
pub mod media;
pub mod metrics;
pub mod models;
pub mod net;
pub mod phi;
pub mod server;
pub mod sip;
pub mod speech;
pub mod store;
pub mod telemetry;
pub mod words;
