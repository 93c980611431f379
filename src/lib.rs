//! moonbot: a Buildbot-style build master configured by `master.cfg.lua`.
//!
//! `config` turns the user's Lua into a typed [`config::MasterConfig`]; `script` runs the
//! user's Lua callbacks and renderables; `model` holds the plain data both share.

pub mod bus;
pub mod changes;
pub mod config;
pub mod daemon;
pub mod data;
pub mod db;
pub mod engine;
pub mod master;
pub mod model;
pub mod process;
pub mod runtime;
pub mod schedulers;
pub mod script;
pub mod status;
pub mod steps;
pub mod workers;
pub mod www;
