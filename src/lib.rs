//! mixpg: Mixed Policy Gradient (MPG) and its baselines, benchmark tasks and an asynchronous
//! multi-learner runtime, on burn (Flex backend inside Autodiff, f32).

pub mod algo;
pub mod analysis;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod env;
pub mod grid;
pub mod nn;
pub mod replay;
pub mod report;
pub mod runtime;
