//! Turning results into what people and machines read.

pub mod html;
pub mod prometheus;
pub mod table;
