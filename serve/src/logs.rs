//! A server's log: a size-capped file with one rotated copy, its tail, and following it.
