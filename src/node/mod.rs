//! render node agent (stub)
