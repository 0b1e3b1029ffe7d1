//! Unit tests. `fake` is an in-memory filesystem for resolution tests that
//! need no kernel; `cow`, `listing` and `env` run on real files in a
//! tempdir.

mod bench;
mod cache;
mod cow;
mod diff;
mod env;
mod fake;
mod listing;
mod prop;
mod resolve;
mod rules_view;
mod sandbox;
mod share;
mod stage;
