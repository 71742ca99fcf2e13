//! Weir wire types.
