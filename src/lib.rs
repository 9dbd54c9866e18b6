//! gantry: Go programs to signed, multi-platform OCI images — Linux and WebAssembly in
//! one index — with no Dockerfile and no daemon.
//!
//! Stages, one module each: [`config`] (gantry.yaml / .ko.yaml), [`platform`],
//! [`gobuild`], [`image`] (layers, configs, manifests, indexes; no I/O beyond local
//! files), [`base`] (base images), [`publish`] (registry and OCI layout), [`sign`] and
//! [`attest`] (signatures, SBOMs, provenance), and [`pipeline`], which runs them in
//! order for `gantry build`. What a build reports is plain data in [`report`]; [`github`]
//! turns it into step outputs and a job summary; [`workflow`] (escaping, masking) and
//! [`secret`] sit below everything.

pub mod attest;
pub mod auth;
pub mod base;
pub mod cleanup;
pub mod config;
pub mod error;
pub mod git;
pub mod github;
pub mod gobuild;
pub mod image;
pub mod merge;
pub mod pipeline;
pub mod platform;
pub mod publish;
pub mod report;
pub mod resolve;
pub mod retry;
pub mod secret;
pub mod sign;
pub mod tags;
pub mod workflow;
