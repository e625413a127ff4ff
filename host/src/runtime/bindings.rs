//! Host-side bindings generated from `wit/transform.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "transform",
    // Parameters borrow the host's buffers (`&[u8]`) instead of requiring owned
    // vectors, so handing a batch to the guest costs one copy into its memory.
    ownership: Borrowing { duplicate_if_necessary: true },
});

// `self::`: the generated module shares its name with this crate.
pub use self::sluice::transform::host::{Host, Level};
pub use self::sluice::transform::types::{BatchParam, Descriptor as WitDescriptor, Host as TypesHost};
