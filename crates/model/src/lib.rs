//! Small convnets from one description.
pub mod checkpoint;
pub mod net;
pub mod pool;
pub mod spec;
pub mod summary;
pub use net::{ModelError, Net};
pub use spec::{ArchSpec, Block, Layer, SpecError};
pub use summary::Summary;
