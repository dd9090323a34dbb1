//! Test support shared by the scenario tests: the fake GitHub, payload
//! builders, and a harness that runs the real bot against them.

#![allow(dead_code)]

pub mod bot;
pub mod fake_github;
pub mod postgres;
pub mod temp_dir;
pub mod webhooks;
