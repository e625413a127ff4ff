//! Helpers for the end-to-end tests: run the real binary, start the real
//! servers it talks to, read what landed. One module per kind of help; every
//! helper is re-exported here, so a test writes `use sluice_tests::*`.

pub mod clients;
pub mod configs;
pub mod landing;
pub mod process;
pub mod receiver;
pub mod servers;
pub mod tmpfs;
pub mod windows;

pub use clients::*;
pub use configs::*;
pub use landing::*;
pub use process::*;
pub use receiver::*;
pub use servers::*;
pub use tmpfs::*;
pub use windows::*;
