//! The isotrace library: what programs use to drive running groups.
//!
//! [`api`] is the per-group control socket: the server the supervisor runs
//! and the client the CLI verbs (`ps`, `env rm`, `env show`) are built on.
//! The protocol is documented in docs/API.md.
//!
//! [`config`] is the settings in force (files, per-env and per-app
//! overrides, with their sources) behind `isotrace config` and `rules`.

pub mod api;
pub mod config;
