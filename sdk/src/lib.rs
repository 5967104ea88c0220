//! Herald's Rust SDK: a realtime client and an API publisher.
