//! Herald's edge: terminates client WebSockets and fans channel messages out
//! to them.
