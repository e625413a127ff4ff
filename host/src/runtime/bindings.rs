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

/// The `aggregate` world, sharing the `host` and `types` interfaces with the one above.
pub mod aggregate {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "aggregate",
        ownership: Borrowing { duplicate_if_necessary: true },
        with: {
            "sluice:transform/host": super::sluice::transform::host,
            "sluice:transform/types": super::sluice::transform::types,
        },
    });

    pub use self::sluice::transform::aggregate_types::Host as AggregateTypesHost;
}

/// The 0.2.0 `transform` world: typed columns in and out (`wit/v0.2/`).
pub mod columns {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "transform",
        ownership: Borrowing { duplicate_if_necessary: true },
    });

    pub use self::sluice::transform::columns::{ColumnParam, ColumnResult, ColumnsBatchParam, Host as ColumnsHost, InputType, OutputType};
    pub use self::sluice::transform::host::{Host, Level};
}
