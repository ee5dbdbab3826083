//! The race lab's tests: each scenario reproduces on the naive system and not
//! on the fixed one, the checker fails on hand-made bad states, histories
//! round-trip, and the live monitor catches an oversell.

mod checker;
mod history;
mod monitor;
mod scenarios;
