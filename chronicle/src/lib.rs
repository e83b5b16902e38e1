//! The `chronicle` command's library: what its subcommands do, callable from tests.

pub mod dev;
pub mod export;
pub mod keygen;
pub mod openapi;
