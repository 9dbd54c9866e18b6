//! gantry: Go programs to signed, multi-platform OCI images — Linux and WebAssembly in
//! one index — with no Dockerfile and no daemon.
//!
//! Stages, one module each: [`config`] (gantry.yaml / .ko.yaml), [`platform`],
//! [`gobuild`], [`image`] (layers, configs, manifests, indexes; no I/O beyond local
//! files), [`base`] (base images), [`publish`] (registry and OCI layout), and
//! [`pipeline`], which runs them in order for `gantry build`.

pub mod attest;
pub mod auth;
pub mod base;
pub mod cleanup;
pub mod config;
pub mod github;
pub mod gobuild;
pub mod image;
pub mod pipeline;
pub mod platform;
pub mod publish;
pub mod retry;
pub mod sign;
pub mod tags;
