//! CI's check of the model: at the smoke bounds, every property of
//! Stockroom holds (every `sometimes` one reached), every broken variant is
//! caught with a counterexample, and the original system shows each race.

use stockroom_model::{Mutant, SMOKE_RUNS, check_naive, check_stockroom, naive};

#[test]
fn stockroom_keeps_every_property_and_every_broken_variant_is_caught() {
    let report = check_stockroom(&SMOKE_RUNS, 2, true);
    for verdict in &report.properties {
        assert!(
            verdict.holds,
            "{} ({}) does not hold: {:#?}",
            verdict.name, verdict.kind, verdict.counterexample
        );
    }
    assert_eq!(report.mutants.len(), Mutant::ALL.len());
    for mutant in &report.mutants {
        assert!(mutant.caught, "{} was not caught", mutant.name);
        let trace = mutant
            .counterexample
            .as_ref()
            .expect("a caught variant has a trace");
        assert!(trace.len() > 1, "{}: {trace:?}", mutant.name);
    }
    assert!(
        report.states > 10_000,
        "explored only {} states",
        report.states
    );
}

#[test]
fn the_original_system_shows_every_race() {
    let report = check_naive(&stockroom_model::Bounds::ONE_ORDER);
    let found: Vec<&str> = report
        .properties
        .iter()
        .filter(|verdict| !verdict.holds && verdict.counterexample.is_some())
        .map(|verdict| verdict.name)
        .collect();
    for (race, _) in naive::RACES {
        assert!(found.contains(&race), "{race} not found: {found:?}");
    }
}
