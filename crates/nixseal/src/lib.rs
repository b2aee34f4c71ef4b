//! lib

pub mod store_path;
