//! Real parts for the integration tests: Debian's docker-registry on a loopback port,
//! skopeo to read back, and the built programs run natively, under qemu-user, or
//! under node:wasi. A missing tool fails the test with how to install it.
//!
//! One concern per submodule, all re-exported here so that tests only need
//! `use common::*;`.
#![allow(dead_code)] // each test binary uses a different part of this module

mod clients;
mod env;
mod go;
mod net;
mod registry;
mod runners;
mod servers;
mod sigstore;

// Not every test binary uses every module: an unused re-export is not a mistake.
#[allow(unused_imports)]
pub use self::{
    clients::*, env::*, go::*, net::*, registry::*, runners::*, servers::*, sigstore::*,
};
