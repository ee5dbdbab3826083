//! The report of a run as a person reads it: the runs, every property
//! with its counterexample, and the broken variants.

use crate::Report;

impl Report {
    /// The report for a person: runs, properties, counterexamples,
    /// variants.
    pub fn render(&self) -> String {
        let mut lines = vec![format!(
            "model {}: {} distinct states, deepest execution {} steps, {:.1} s",
            self.model, self.states, self.max_depth, self.seconds
        )];
        for run in &self.runs {
            lines.push(format!(
                "  run {:<24} {:>9} states  depth {:>3}  {:>6.1} s",
                run.name, run.states, run.max_depth, run.seconds
            ));
        }
        lines.push(String::new());
        for verdict in &self.properties {
            let outcome = match (verdict.kind, verdict.holds) {
                ("sometimes", true) => "reached",
                ("sometimes", false) => "NOT REACHED",
                (_, true) => "holds",
                (_, false) => "VIOLATED",
            };
            lines.push(format!(
                "{:<10} {:<32} {outcome}",
                verdict.kind, verdict.name
            ));
            if let Some(trace) = &verdict.counterexample {
                lines.extend(trace.iter().map(|line| format!("    {line}")));
            }
        }
        if !self.mutants.is_empty() {
            lines.push(String::new());
            lines.push("broken variants:".into());
        }
        for mutant in &self.mutants {
            let caught = match mutant.property {
                Some(property) => format!("caught by {property}"),
                None => "NOT CAUGHT".into(),
            };
            lines.push(format!("  {:<30} {caught}", mutant.name));
            if let Some(trace) = &mutant.counterexample {
                lines.extend(trace.iter().map(|line| format!("      {line}")));
            }
        }
        lines.join("\n")
    }
}
