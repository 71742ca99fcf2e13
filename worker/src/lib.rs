//! Weir worker.
