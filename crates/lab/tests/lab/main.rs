//! The race lab's tests: each scenario reproduces on the naive system and not
//! on the fixed one, the checker fails on hand-made bad states, histories
//! round-trip, the live monitor catches an oversell, and each proposed fix
//! holds or breaks on each scenario as the fix lab says.

mod checker;
mod fixes;
mod history;
mod ledger_checker;
mod monitor;
mod scenarios;
mod sync;
