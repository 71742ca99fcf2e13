//! placeholder: loader (being written).
