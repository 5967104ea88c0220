//! Herald's control plane: apps, API keys, tokens and publishing.
