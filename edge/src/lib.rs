//! Herald's edge: terminates client WebSockets, authenticates them, and fans
//! channel messages out to them.
//!
//! # Layout
//!
//! - [`backplane`]: the NATS and in-process backplanes behind one handle.
pub mod backplane;
