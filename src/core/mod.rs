//! The pure core (stub; being written).
pub struct Config;
pub struct Ctx;
pub fn handle() {}
