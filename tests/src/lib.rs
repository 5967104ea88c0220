//! Herald's end-to-end test harness.
