//! [`BusError`]: why a bus operation failed.

/// Why a bus operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The bus is not connected, or did not accept the operation in
    /// time. The operation may be retried.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The bus refused the operation for good.
    #[error("bus error: {0}")]
    Failed(String),
    /// The channel's namespace keeps no history (no stream exists for it).
    #[error("no history: {0}")]
    NoHistory(String),
}
