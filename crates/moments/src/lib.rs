#![doc = include_str!("../README.md")]

pub mod commands;
pub mod config;
pub mod wiring;
